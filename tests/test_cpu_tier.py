"""Serve mode with vLLM's native CPU offloading tier (its OffloadingConnector, scheduler
role; a stand-in for the worker). Tiny pools: a GPU pool of 7 blocks (6 usable) holds one
65-token request with its output, so the next one evicts it from the GPU."""

from __future__ import annotations

import argparse
import mmap
from collections import deque
from dataclasses import replace
from types import SimpleNamespace

import pytest

from engine.backends.vllm_v1.internals import TierInternals, check_tier
from engine.backends.vllm_v1.offload import StandInWorker
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.errors import UserError
from engine.model import BlockState, EventKind
from engine.options import add_engine_arguments, serve_settings_from_args
from engine.replay.common import synth_output_tokens
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings, TierSettings
from tests.conftest import req

BS = 16
MODES = pytest.mark.parametrize("async_sched", [False, True], ids=["sync", "async"])
A = list(range(1000, 1064))  # four full blocks
B = list(range(5000, 5064))
C = list(range(9000, 9064))


def backend(gpu_blocks=7, cpu_blocks=20, *, async_sched=None, policy="lru", latency=0, **kw):
    tier = TierSettings(num_cpu_blocks=cpu_blocks, eviction_policy=policy, latency=latency)
    return V1Scheduler(EngineSettings(block_size=BS, num_blocks=gpu_blocks),
                       ServeSettings(async_scheduling=async_sched, tier=tier, **kw))


def run(b, requests):
    replay = ServeReplay(b, requests, verify_pool=True)
    records = list(replay)
    assert [r.error for r in records if r.error] == []
    return replay, records


def rows(records):
    return {r.request_id: r for rec in records for r in rec.rows}


def one_by_one(*prompts, out=2):
    return [req(i, p, output_len=out, arrival=10.0 * i) for i, p in enumerate(prompts)]


# -- the tier vLLM builds -------------------------------------------------------------------
def test_num_cpu_blocks_gives_vllm_exactly_that_many():
    b = backend(cpu_blocks=37)
    manager = TierInternals.cpu_manager(b.scheduler)
    assert TierInternals.state(manager).num_blocks == 37
    assert type(TierInternals.connector(b.scheduler)).__name__ == "OffloadingConnector"
    # GiB * 2**30 // page-rounded block: 37 blocks of 4 KiB pages (a 64-byte toy block)
    assert b.tier.bytes_per_block == max(64, mmap.PAGESIZE)
    assert b.tier.size_gib * 2**30 == 37 * b.tier.bytes_per_block


def test_tier_internals_are_what_the_strip_reads():
    b = backend()
    assert check_tier(b.scheduler) == []
    broken = SimpleNamespace(connector=SimpleNamespace(connector_scheduler=SimpleNamespace(
        manager=SimpleNamespace(_num_chunks=4))))
    problems = check_tier(broken)
    assert problems and "AttributeError" in problems[0]


def test_flags_reach_vllm_and_bad_ones_are_one_line():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(["--mode", "serve", "--num-cpu-blocks", "12",
                              "--cpu-eviction-policy", "arc", "--offload-latency", "2"])
    serve = serve_settings_from_args(args)
    assert serve.tier == TierSettings(num_cpu_blocks=12, eviction_policy="arc", latency=2)
    b = V1Scheduler(EngineSettings(block_size=BS, num_blocks=7), serve)
    assert b.vllm_config.kv_transfer_config.kv_connector == "OffloadingConnector"
    assert b.vllm_config.kv_transfer_config.kv_connector_extra_config["eviction_policy"] == "arc"
    assert type(b.tier.manager._policy).__name__ == "ARCCachePolicy"
    for bad in (["--num-cpu-blocks", "1", "--kv-offloading-size", "1"],
                ["--offload-latency", "-1"], ["--num-cpu-blocks", "-3"]):
        with pytest.raises(UserError):
            serve_settings_from_args(parser.parse_args(["--mode", "serve", *bad]))
    with pytest.raises(UserError, match="holds no CPU block"):
        V1Scheduler(EngineSettings(block_size=BS, num_blocks=7),
                    ServeSettings(tier=TierSettings(kv_offloading_size=1e-9)))


# -- the stand-in worker ----------------------------------------------------------------------
def test_the_stand_in_reports_a_job_once_and_refuses_a_second_start():
    w = StandInWorker(latency=2, bytes_per_block=64)
    job = SimpleNamespace(req_id="r", src_spec=SimpleNamespace(block_ids=[1, 2]),
                          dst_spec=None, sync=False)
    meta = SimpleNamespace(store_jobs={7: job}, load_jobs={}, jobs_to_flush=set())
    assert w.execute(meta) is None  # due two iterations later
    empty = SimpleNamespace(store_jobs={}, load_jobs={}, jobs_to_flush=set())
    assert w.execute(empty) is None
    out = w.execute(empty)
    assert out.kv_connector_worker_meta.completed_jobs == {7: 1}
    assert out.kv_connector_worker_meta.transfer_stats.store.bytes == 128
    assert w.execute(empty) is None and w.unfinished() == set()
    with pytest.raises(RuntimeError, match="started twice"):
        w.execute(meta)


# -- hits: the tool against vLLM driven plainly ---------------------------------------------------
def plain_loop_hits(b: V1Scheduler, requests, async_sched: bool) -> dict[str, tuple[int, int]]:
    """vLLM's Scheduler with the same offloading config, driven with no prefix-tui code in
    between: requests added one at a time once the one before finished (as the replay's
    far-apart arrivals do), every connector job reported finished in its own iteration's
    output, one token sampled per non-prefill-chunk request."""
    from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import (
        OffloadingWorkerMetadata,
    )
    from vllm.sampling_params import SamplingParams
    from vllm.v1.outputs import KVConnectorOutput, ModelRunnerOutput
    from vllm.v1.request import Request

    sched = b.scheduler
    depth = 2 if async_sched else 1
    hits: dict[str, tuple[int, int]] = {}
    for r in requests:
        out = list(synth_output_tokens(r))
        rid = str(r.index)
        sched.add_request(Request(rid, list(r.prompt_token_ids),
                                  SamplingParams(max_tokens=len(out), ignore_eos=True), None,
                                  arrival_time=0.0, block_hasher=b._block_hasher))
        sampled = 0
        queue: deque = deque()
        while sched.has_requests() or queue:
            if sched.has_requests():
                so = sched.schedule()
                meta = so.kv_connector_metadata
                done = {**meta.store_jobs, **meta.load_jobs}
                kv = KVConnectorOutput(
                    finished_recving={j.req_id for j in meta.load_jobs.values() if not j.sync} or None,
                    kv_connector_worker_meta=OffloadingWorkerMetadata(
                        completed_jobs={jid: 1 for jid in done}),
                ) if done else None
                if so.total_num_scheduled_tokens:
                    ids = list(so.num_scheduled_tokens)
                    toks = []
                    for i in ids:
                        if sched.requests[i].is_prefill_chunk:
                            toks.append([])
                        else:
                            toks.append([out[min(sampled, len(out) - 1)]])
                            sampled += 1
                    mro = ModelRunnerOutput(req_ids=ids, req_id_to_index={x: k for k, x in enumerate(ids)},
                                            sampled_token_ids=toks, kv_connector_output=kv)
                else:
                    mro = ModelRunnerOutput.with_kv_conn_output_only(kv)
                queue.appendleft((so, mro))
                if len(queue) < depth and (so.total_num_scheduled_tokens or sched.has_requests()):
                    continue
            so, mro = queue.pop()
            for eco in sched.update_from_output(so, mro).values():
                for o in eco.outputs:
                    if o.prefill_stats is not None:
                        ps = o.prefill_stats
                        hits[o.request_id] = (ps.num_local_cached_tokens,
                                              ps.num_external_cached_tokens)
    return hits


@MODES
def test_gpu_and_cpu_hits_per_request_equal_vllm_driven_plainly(async_sched):
    reqs = one_by_one(A + [1], B + [2], A + [3], C + [4], B + [5], A[:32] + C[:32] + [6])
    expected = plain_loop_hits(backend(async_sched=async_sched), reqs, async_sched)
    replay, records = run(backend(async_sched=async_sched), reqs)
    got = {r.seq_id: (r.gpu_hit_tokens, r.cpu_hit_tokens) for r in rows(records).values()}
    assert got == expected
    assert any(cpu > 0 for _gpu, cpu in expected.values())
    for r in rows(records).values():
        assert r.hit_tokens == r.gpu_hit_tokens + r.cpu_hit_tokens
    t = records[-1].totals
    assert t.hits == sum(g for g, _c in expected.values())
    assert t.host_hits == t.external_hits == sum(c for _g, c in expected.values())


@MODES
def test_no_tier_equals_todays_serve_mode(async_sched):
    reqs = one_by_one(A + [1], B + [2], A + [3], C + [4])
    plain = V1Scheduler(EngineSettings(block_size=BS, num_blocks=7),
                        ServeSettings(async_scheduling=async_sched))
    zero = V1Scheduler(EngineSettings(block_size=BS, num_blocks=7),
                       ServeSettings(async_scheduling=async_sched,
                                     tier=TierSettings(num_cpu_blocks=0)))
    assert zero.tier is None and zero.vllm_config.kv_transfer_config is None
    _, today = run(plain, reqs)
    _, off = run(zero, reqs)
    assert [rec.totals for rec in off] == [rec.totals for rec in today]
    strip = lambda r: replace(r, gpu_hit_tokens=None, cpu_hit_tokens=None)  # noqa: E731
    assert [tuple(map(strip, rec.rows)) for rec in off] == [tuple(map(strip, rec.rows)) for rec in today]
    assert all(rec.tier is None for rec in off)


# -- a prefix evicted from the GPU comes back from the CPU tier --------------------------------
def test_a_prefix_evicted_from_the_gpu_is_loaded_back_from_the_cpu_tier():
    replay, records = run(backend(async_sched=False), one_by_one(A + [1], B + [2], A + [3]))
    r = rows(records)
    assert (r["r0"].cpu_hit_tokens, r["r1"].cpu_hit_tokens) == (0, 0)
    # B took five of the six GPU blocks: A's first block survived, the other three load
    assert (r["r2"].gpu_hit_tokens, r["r2"].cpu_hit_tokens, r["r2"].hit_tokens) == (16, 48, 64)
    cpu_stored = [e for rec in records for e in rec.events
                  if e.kind is EventKind.STORED and e.medium == "CPU"]
    assert sum(len(e.block_hashes) for e in cpu_stored) == 8  # A's and B's full blocks
    admit = next(rec for rec in records for a in rec.admitted if a.request_id == "r2")
    states = next(s for s in admit.seqs if s.request_id == "r2").states
    assert states[:4] == (BlockState.HIT_FREE, *(BlockState.HIT_CPU,) * 3)
    tier = replay.summary().tier
    assert (tier.load_jobs, tier.blocks_loaded, tier.jobs_started) == (1, 3, tier.jobs_finished)
    assert tier.bytes_loaded == 3 * 64  # vLLM's load-bytes counter, a 64-byte toy block


@pytest.mark.parametrize("policy,back,evicted", [("lru", 0, "AB"), ("arc", 64, "B")])
def test_the_cpu_tier_evicts_as_vllms_policy_says(policy, back, evicted):
    """A tier of 8 blocks. A is sent twice (a reuse), then B, then C needs room: LRU evicts
    the least recent (A), ARC the blocks seen once (B; A moved to its frequent list). A's
    last request (B and C have pushed all of A out of the GPU) then loads all 64 tokens
    from the CPU under ARC; under LRU it loads none and
    storing it again evicts B, now the least recent."""
    reqs = one_by_one(A + [1], A + [2], B + [3], C + [4], A + [5])
    replay, records = run(backend(cpu_blocks=8, policy=policy, async_sched=False), reqs)
    assert rows(records)["r4"].cpu_hit_tokens == back
    cpu = [e for rec in records for e in rec.events if e.medium == "CPU"]
    stored = list(dict.fromkeys(h for e in cpu if e.kind is EventKind.STORED
                                for h in e.block_hashes))
    blocks = {"A": set(stored[0:4]), "B": set(stored[4:8]), "C": set(stored[8:12])}
    removed = {h for e in cpu if e.kind is EventKind.REMOVED for h in e.block_hashes}
    assert removed == set().union(*(blocks[x] for x in evicted))
    assert replay.summary().tier.cpu_removed_hashes == 4 * len(evicted)


# -- every job finishes once; nobody waits forever -----------------------------------------------
@MODES
@pytest.mark.parametrize("latency", [0, 3])
def test_every_job_is_reported_once_and_every_request_finishes(async_sched, latency):
    reqs = one_by_one(A + [1], B + [2], A + [3], C + [4], B + [5], out=5)
    reqs += [req(9, A + [7], output_len=3, arrival=60.0), req(10, B + [8], output_len=3, arrival=60.0)]
    b = backend(gpu_blocks=12, cpu_blocks=12, async_sched=async_sched, latency=latency)
    replay, records = run(b, reqs)
    s = replay.summary()
    assert s.finished == len(reqs)
    assert b.tier.worker.unfinished() == set() and s.tier.jobs_started == s.tier.jobs_finished > 0
    assert s.tier.load_jobs > 0
    assert not b.scheduler.has_requests()


def test_the_events_pane_tells_the_cpu_tier_apart():
    from engine.model import KVEvent
    from tui.widgets.events import event_line, merged

    a, b = bytes([1]) * 32, bytes([2]) * 32
    events = (KVEvent(EventKind.REMOVED, (a,), medium="GPU"),
              KVEvent(EventKind.REMOVED, (b,), medium="CPU"),
              KVEvent(EventKind.REMOVED, (a,), medium="CPU"))
    out = merged(events)
    assert [(e.medium, len(e.block_hashes)) for e in out] == [("GPU", 1), ("CPU", 2)]
    assert event_line(out[1], {})[1].startswith("CPU removed 2: ")
    assert event_line(out[0], {a: 3})[1] == "removed 1: #3:01010101"
