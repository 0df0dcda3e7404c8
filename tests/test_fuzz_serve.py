"""Property tests (hypothesis) for serve mode: on random small traces, pools and scheduler
knobs, vLLM's real Scheduler / AsyncScheduler replayed headless and detailed gives rows that
add up to the totals, evictions attributed to requests that add up to vLLM's BlockRemoved
events (and to the evicted blocks the detailed replay's pool mirror saw), and per-request
timings in order on the simulated clock.

Budget: kept small (each example builds two real schedulers); the sequential replay's
fuzz is tests/test_fuzz.py.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.model import Outcome
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings
from tests.test_fuzz import SLOW_OK, decode_trace

EXAMPLES = 60


@st.composite
def serve_scenarios(draw):
    bs = draw(st.integers(1, 6))
    nb = draw(st.integers(4, 30))
    settings_ = EngineSettings(block_size=bs, num_blocks=nb,
                               enable_caching=draw(st.integers(0, 4)) > 0)
    serve = ServeSettings(
        async_scheduling=draw(st.booleans()),
        max_num_seqs=draw(st.integers(1, 6)),
        max_num_batched_tokens=draw(st.sampled_from([8, 16, 64, 2048])),
    )
    cap = bs * (nb - 1)
    requests = decode_trace(draw(st.binary(min_size=64, max_size=400)), cap=cap)
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3]),
                         min_size=len(requests), max_size=len(requests)))
    clock, timed = 0.0, []
    for r, gap in zip(requests, gaps):
        clock += gap
        timed.append(replace(r, arrival_time=clock))
    return settings_, serve, timed


def check_reasons(r, settings_) -> None:
    """Miss reasons add up to the missed blocks exactly, hit sources to the hit blocks."""
    if not r.outcome.served or not settings_.enable_caching:
        assert r.reasons is None
        return
    why = r.reasons
    assert why is not None
    assert why.missed == r.prompt_blocks - r.hit_blocks, (r.request_id, why)
    assert sum(why.counts().values()) == why.missed
    assert sum(e.blocks for e in why.evicted_by) == why.evicted
    assert sum(s.blocks for s in why.hit_sources) == r.hit_blocks
    assert why.partial == (r.prompt_tokens % settings_.block_size != 0)
    assert why.last_token == r.recomputed_last_block


def check(settings_, serve, requests, detail: bool):
    replay = ServeReplay(V1Scheduler(settings_, serve), requests, detail=detail,
                         verify_pool=detail)
    records = list(replay)
    assert [r.error.message for r in records if r.error] == []
    t = records[-1].totals if records else None
    rows = [r for rec in records for r in rec.rows]
    assert sorted(r.request_id for r in rows) == sorted(r.request_id for r in requests)
    assert t is not None and t.requests == len(rows)
    # Rows add up to the totals: evictions attributed to the requests whose allocations
    # caused them, exactly vLLM's BlockRemoved count.
    assert sum(r.evicted_blocks for r in rows) == t.evictions
    served = [r for r in rows if r.outcome.served]
    assert sum(r.prompt_tokens for r in served) == t.tokens
    assert sum(r.hit_blocks for r in served) == t.blocks_reused
    assert sum(not r.outcome.served for r in rows) == t.not_fitted
    assert sum(r.output_tokens for r in rows) == replay.summary().output_tokens
    assert sum(r.preemptions or 0 for r in rows) == t.preemptions
    for r in rows:
        check_reasons(r, settings_)
        if r.outcome is Outcome.TOO_LONG:
            assert r.ttft_s is None and r.finish_iteration is None
            continue
        assert 0 <= r.queue_wait_s <= r.ttft_s <= r.finish_time_s - r.request.arrival_time + 1e-9
        assert r.finish_iteration <= replay.summary().iterations
    if detail:
        # The pool mirror's evicted blocks (hash lost when handed out) agree.
        assert sum(len(rec.evicted) for rec in records) == t.evictions
    return sorted(rows, key=lambda r: r.request_id)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(serve_scenarios())
def test_serve_rows_add_up_to_totals(case):
    settings_, serve, requests = case
    fast = check(settings_, serve, requests, detail=False)
    detailed = check(settings_, serve, requests, detail=True)
    # The headless path attributes the same evictions as the detailed one.
    assert [(r.request_id, r.evicted_blocks, r.ttft_s, r.reasons) for r in fast] == \
        [(r.request_id, r.evicted_blocks, r.ttft_s, r.reasons) for r in detailed]
