"""Serve mode: vLLM's real Scheduler / AsyncScheduler driven on the CPU.

Small pools and short prompts so the whole file runs in a few seconds after vLLM's
import. Every replay here runs with verify_pool=True: after each record the mirror the
pool deltas build is compared to a full scan of vLLM's pool.
"""

from __future__ import annotations

import argparse
from collections import deque
from types import SimpleNamespace

import pytest

from engine.replay.history import History
from engine.model import BlockState, Outcome
from engine.replay.common import synth_output_tokens
from engine.replay.sequential import SequentialReplay
from engine.backends.vllm_v1.imports import V
from engine.backends.vllm_v1.internals import AdapterMismatch, check_scheduler, ensure
from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.backends.vllm_v1.serve_config import import_scheduler
from engine.options import add_engine_arguments, serve_settings_from_args
from engine.replay.serve import ServeReplay
from engine.replay.steps import next_arrival, next_finish, prev_arrival
from engine.settings import EngineSettings, ServeSettings
from tests.conftest import req

BS = 16


def check_sched_internals(sched) -> list[str]:
    """The adapter's scheduler check, with the probes it makes at start-up."""
    s = import_scheduler()
    probe = V.Request("probe", [1], V.SamplingParams(max_tokens=1), None)
    return check_scheduler(sched, probe, s.ModelRunnerOutput)
MODES = pytest.mark.parametrize("async_sched", [False, True], ids=["sync", "async"])


def backend(num_blocks: int = 64, *, async_sched: bool | None = None, **serve) -> V1Scheduler:
    return V1Scheduler(
        EngineSettings(block_size=BS, num_blocks=num_blocks),
        ServeSettings(async_scheduling=async_sched, **serve),
    )


def run(b: V1Scheduler, requests, **kw):
    replay = ServeReplay(b, requests, verify_pool=True, **kw)
    records = list(replay)
    assert [r.error for r in records if r.error] == []
    return replay, records


def chat_trace(n: int = 8, spacing: float = 1000.0, out: int = 9):
    """Turns of two conversations plus a shared system prompt: hits of every kind."""
    system = list(range(5000, 5000 + 40))
    reqs = []
    history = {0: [], 1: []}
    for i in range(n):
        conv = i % 2
        history[conv] = history[conv] + list(range(100 * i, 100 * i + 21))
        reqs.append(req(i, system + history[conv], output_len=out, arrival=i * spacing))
    return reqs


# -- the adapter ----------------------------------------------------------------------------
def test_sched_internals_present_on_a_live_scheduler():
    b = backend()
    assert check_sched_internals(b.scheduler) == []
    assert b.scheduler_name == "AsyncScheduler"  # vLLM 0.33's default
    assert b.is_async and b.batch_queue_size == 2


def test_a_moved_scheduler_attribute_is_reported_with_the_version():
    broken = SimpleNamespace(kv_cache_manager=backend().manager, running=[])
    problems = check_sched_internals(broken)
    assert problems and any("waiting" in p or "requests" in p for p in problems)
    with pytest.raises(AdapterMismatch, match=r"vLLM 9\.9\.9"):
        ensure(problems, "scheduler", "9.9.9", "0.33.0")


def test_flags_reach_vllm():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args([
        "--mode", "serve", "--max-num-seqs", "3", "--max-num-batched-tokens", "64",
        "--no-enable-chunked-prefill", "--no-async-scheduling",
    ])
    serve = serve_settings_from_args(args)
    b = V1Scheduler(EngineSettings(block_size=BS, num_blocks=64, max_model_len=64), serve)
    d = b.info()
    assert (d.scheduler, d.max_num_seqs, d.max_num_batched_tokens) == ("Scheduler", 3, 64)
    assert d.enable_chunked_prefill is False
    defaults = serve_settings_from_args(parser.parse_args([]))
    assert defaults == ServeSettings()


# -- equivalence with sequential mode ------------------------------------------------------
@MODES
def test_one_request_at_a_time_hits_as_sequential(async_sched):
    reqs = chat_trace()
    seq = [r.request for r in SequentialReplay(V1Manager(EngineSettings(block_size=BS, num_blocks=64)), reqs)]
    replay, records = run(backend(64, async_sched=async_sched), reqs)
    admitted = [r for rec in records for r in rec.admitted]
    assert [r.hit_tokens for r in admitted] == [r.hit_tokens for r in seq]
    assert [r.hit_blocks for r in admitted] == [r.hit_blocks for r in seq]
    assert sum(r.hit_tokens for r in seq) > 0
    s = replay.summary()
    assert records[-1].totals.preemptions == 0 and s.finished == len(reqs)
    assert records[-1].totals.hits == sum(r.hit_tokens for r in seq)
    # far-apart arrivals: the clock jumped to each one
    assert [rec.clock for rec in records if rec.serve.arrived] == [r.arrival_time for r in reqs]


# -- concurrency -------------------------------------------------------------------------------
@MODES
def test_shared_prefix_blocks_have_ref_count_two_while_both_run(async_sched):
    prefix = list(range(48))  # three full blocks
    reqs = [req(0, prefix + [1000, 1001, 1002], output_len=20, arrival=0.0),
            req(1, prefix + [2000, 2001], output_len=20, arrival=0.0)]
    b = backend(64, async_sched=async_sched)
    replay = ServeReplay(b, reqs, verify_pool=True)
    history = History(64)
    seen_both = 0
    for rec in replay:
        history.append(rec)
        history.seek(rec.index)
        if {"0", "1"} <= set(rec.serve.running):
            views = {s.seq_id: s for s in rec.seqs}
            shared = views["0"].block_ids[:3]
            assert views["1"].block_ids[:3] == shared
            assert [b.slot(bid)[0] for bid in shared] == [2, 2, 2]  # vLLM's pool
            assert [history.slot(bid)[0] for bid in shared] == [2, 2, 2]  # the records
            seen_both += 1
    assert seen_both > 5
    first = replay_first_admissions(history.records)
    assert first["0"].hit_tokens == 0 and first["1"].hit_tokens == 48
    admitted_at = next(r for r in history.records if any(a.seq_id == "1" for a in r.admitted))
    states = {s.seq_id: s.states for s in admitted_at.seqs}["1"]
    assert states[:3] == (BlockState.HIT_SHARED,) * 3
    held = history.records[admitted_at.index + 1].seqs[0].states
    assert set(held[:3]) == {BlockState.HELD}


def replay_first_admissions(records):
    return {r.seq_id: r for rec in records for r in rec.admitted}


@MODES
def test_small_pool_preempts_and_every_request_still_finishes(async_sched):
    reqs = [req(i, list(range(1000 * i, 1000 * i + 40)), output=range(7000 + 100 * i, 7000 + 100 * i + 40),
                arrival=0.0) for i in range(6)]
    replay, records = run(backend(20, async_sched=async_sched), reqs)
    preempting = [r for r in records if r.serve.preempted]
    assert preempting and records[-1].totals.preemptions == replay.preemptions > 0
    for rec in preempting:
        assert not set(rec.serve.preempted) & set(rec.serve.running)
        assert set(rec.serve.preempted) <= set(rec.serve.waiting)
    assert any(rec.serve.resumed for rec in records)
    assert replay.backend.cache.preempted_requests > 0  # vLLM counted the re-lookups apart
    assert len(replay.results) == len(reqs)
    for r in replay.results.values():
        assert r.outcome is Outcome.OK and r.output_tokens == 40
    assert records[-1].serve.used_blocks == 0 and not replay.backend.has_work()
    # measured after each schedule() and update: the pool ran (nearly) full
    assert 15 <= replay.summary().peak_kv_blocks <= 19


@MODES
def test_chunked_prefill_samples_nothing_mid_prompt(async_sched):
    reqs = [req(0, list(range(200)), output_len=5, arrival=0.0)]
    replay, records = run(backend(64, async_sched=async_sched, max_num_batched_tokens=64), reqs)
    chunks = [r.serve.scheduled_tokens for r in records]
    assert chunks[:4] == [64, 64, 64, 8]  # 200 tokens in chunks of the token budget
    assert replay.results["0"].output_tokens == 5
    assert replay.cached_tokens == {"0": 0}


def test_too_long_prompts_are_rejected_and_long_outputs_capped_as_in_sequential_mode():
    # 4 usable blocks: max_model_len 64. A 64-token prompt leaves no room for an output
    # token (too long); 60 + 10 is capped at 60 + 4, as the sequential replay does.
    reqs = [req(0, list(range(64)), output_len=1), req(1, list(range(60)), output_len=10, arrival=1),
            req(2, list(range(100, 110)), output_len=4, arrival=2)]
    replay, records = run(backend(5, async_sched=False), reqs)
    r0, r1, r2 = (replay.results[k] for k in "012")
    assert r0.outcome is Outcome.TOO_LONG and records[0].serve.arrived == ()
    assert (r1.outcome, r1.output_tokens) == (Outcome.TRUNCATED, 4)
    assert r1.message == "output capped at 4 of 10 tokens by max_model_len 64"
    assert r2.outcome is Outcome.OK
    t = records[-1].totals
    assert (t.not_fitted, t.too_long, t.truncated) == (1, 1, 1)
    seq = list(SequentialReplay(V1Manager(EngineSettings(block_size=BS, num_blocks=5)), reqs))
    assert [r.request.outcome for r in seq] == [r0.outcome, r1.outcome, r2.outcome]
    assert seq[1].request.message == r1.message and seq[-1].totals.truncated == 1


@MODES
def test_an_eviction_counts_for_the_request_whose_allocation_caused_it(async_sched):
    # 7 usable blocks of 16 tokens. A caches 3 prompt blocks and finishes; B needs 5 new
    # blocks: the 4 never used, then the oldest of A's cached-free blocks (1 eviction). C,
    # after B finished, needs 3: A's other 2 and the first of B's 5 (3 evictions).
    reqs = [req(0, range(48), output_len=1, arrival=0.0),
            req(1, range(100, 180), output_len=1, arrival=1.0),
            req(2, range(200, 248), output_len=1, arrival=2.0)]
    _, records = run(backend(8, async_sched=async_sched), reqs)
    rows = {r.request_id: r for rec in records for r in rec.rows}
    assert [rows[k].evicted_blocks for k in ("r0", "r1", "r2")] == [0, 1, 3]
    assert records[-1].totals.evictions == 4


def test_serve_rows_carry_queue_wait_ttft_preemptions_and_finish():
    # One sequence at a time, 0.02 s an iteration (sync): r0 prefills and samples its
    # first token in iteration 1 (ends at 0.02), its 3rd in iteration 3 (0.06); r1 waits
    # until then, samples its first token at the end of iteration 4 (0.08).
    reqs = [req(0, range(16), output_len=3, arrival=0.0),
            req(1, range(50, 66), output_len=2, arrival=0.0)]
    _, records = run(backend(64, async_sched=False, max_num_seqs=1), reqs)
    rows = {r.request_id: r for rec in records for r in rec.rows}
    r0, r1 = rows["r0"], rows["r1"]
    assert (r0.queue_wait_s, r0.ttft_s, r0.finish_iteration, r0.preemptions) == (0.0, 0.02, 3, 0)
    assert r0.finish_time_s == pytest.approx(0.06)
    assert (r1.queue_wait_s, r1.ttft_s, r1.finish_iteration) == (0.06, 0.08, 5)
    assert r1.finish_time_s == pytest.approx(0.10)


# -- the scheduler's own numbers -----------------------------------------------------------------
def plain_scheduler_cached_tokens(requests, num_blocks: int, async_sched: bool) -> dict[str, int]:
    """vLLM's Scheduler driven with no prefix-tui code in between (configs aside): all
    requests added at once, one token sampled per non-prefill-chunk request."""
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
    from vllm.v1.request import Request
    from vllm.sampling_params import SamplingParams

    b = backend(num_blocks, async_sched=async_sched, max_num_batched_tokens=64)
    sched = b.scheduler
    outs = {str(r.index): list(synth_output_tokens(r)) for r in requests}
    for r in requests:
        sched.add_request(Request(str(r.index), list(r.prompt_token_ids),
                                  SamplingParams(max_tokens=len(outs[str(r.index)]), ignore_eos=True),
                                  None, arrival_time=0.0, block_hasher=b._block_hasher))
    sampled = {k: 0 for k in outs}
    cached: dict[str, int] = {}
    queue: deque = deque()
    depth = 2 if async_sched else 1
    while sched.has_requests() or queue:
        if sched.has_requests():
            so = sched.schedule()
            if so.total_num_scheduled_tokens:
                ids = list(so.num_scheduled_tokens)
                tokens = []
                for rid in ids:
                    if sched.requests[rid].is_prefill_chunk:
                        tokens.append([])
                    else:
                        tokens.append([outs[rid][min(sampled[rid], len(outs[rid]) - 1)]])
                        sampled[rid] += 1
                mro = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                                        sampled_token_ids=tokens)
            else:
                mro = EMPTY_MODEL_RUNNER_OUTPUT
            queue.appendleft((so, mro))
            if len(queue) < depth and (so.total_num_scheduled_tokens or sched.has_requests()):
                continue
        so, mro = queue.pop()
        for eco in sched.update_from_output(so, mro).values():
            for o in eco.outputs:
                if o.prefill_stats is not None:
                    cached[o.request_id] = o.prefill_stats.num_cached_tokens
    return cached


@MODES
def test_cached_tokens_are_the_schedulers_own(async_sched):
    prefix = list(range(64))
    reqs = [req(i, prefix[: 16 * (i % 4 + 1)] + list(range(1000 * i, 1000 * i + 30)),
                output_len=24, arrival=0.0) for i in range(8)]
    expected = plain_scheduler_cached_tokens(reqs, 24, async_sched)
    replay, records = run(backend(24, async_sched=async_sched, max_num_batched_tokens=64), reqs)
    assert replay.preemptions > 0  # the pool is tight enough to matter
    assert replay.cached_tokens == expected
    assert {r.seq_id: r.hit_tokens for rec in records for r in rec.admitted} == expected
    assert any(v > 0 for v in expected.values())
    assert replay.cached_token_mismatches == 0


# -- helpers for the TUI ---------------------------------------------------------------------
def test_next_arrival_and_finish():
    reqs = [req(0, list(range(20)), output_len=3, arrival=0.0),
            req(1, list(range(50, 70)), output_len=3, arrival=0.5)]
    _, records = run(backend(64, async_sched=False), reqs)
    arrivals = [i for i, r in enumerate(records) if r.serve.arrived]
    finishes = [i for i, r in enumerate(records) if r.finished]
    assert len(arrivals) == 2 and len(finishes) == 2
    assert next_arrival(records, -1) == arrivals[0]
    assert next_arrival(records, arrivals[0]) == arrivals[1]
    assert next_arrival(records, arrivals[1]) is None
    assert prev_arrival(records, arrivals[1]) == arrivals[0]
    assert next_finish(records, -1) == finishes[0]
    assert next_finish(records, finishes[0]) == finishes[1]
    # clock: 0.02 s per model step; idle until the second arrival, then jump to it
    assert records[arrivals[1]].clock == 0.5
    assert records[1].clock == pytest.approx(0.02)
