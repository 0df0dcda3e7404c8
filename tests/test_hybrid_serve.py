"""Serve mode on a hybrid layout (--hf-config): vLLM's Scheduler gets the same KV cache
groups as the sequential manager, and the detailed replay's pool mirror stays exact while
sliding-window groups swap blocks for vLLM's null block (verify_pool compares it to a full
scan of vLLM's pool after every record)."""

from __future__ import annotations

import pytest

from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.model import BlockState
from engine.replay.serve import ServeReplay
from engine.settings import ServeSettings
from tests.test_hybrid_layout import GROUPS, conversations, settings


@pytest.mark.parametrize("async_sched", [False, True], ids=["sync", "async"])
def test_serve_takes_the_layout_and_keeps_the_pool_mirror_exact(async_sched):
    s = settings("1:1", 400)
    sched = V1Scheduler(s, ServeSettings(async_scheduling=async_sched))
    assert [g.kind for g in sched.groups] == GROUPS["1:1"]
    assert sched.groups == V1Manager(s).groups
    if async_sched:  # vLLM's auto-fit counts in-flight batches: the sequential replay
        # sizes for vLLM's default (async) scheduler
        assert sched.settings.max_model_len == V1Manager(s).settings.max_model_len
    requests = conversations()
    replay = ServeReplay(sched, requests, verify_pool=True)
    records = list(replay)
    assert [r.error for r in records if r.error] == []
    tables = [t for r in records for seq in r.seqs for t in seq.tables]
    assert {t.group for t in tables} == {0, 1}
    assert any(BlockState.SKIPPED in t.states for t in tables if t.group == 0)
    assert not any(BlockState.SKIPPED in t.states for t in tables if t.group == 1)
    finished = [row for r in records for row in r.rows]
    assert len(finished) == len(requests) and sum(row.hit_tokens for row in finished) > 0
    # Without detail the same scheduler decisions give the same hits.
    fast = list(ServeReplay(V1Scheduler(s, ServeSettings(async_scheduling=async_sched)),
                            requests, detail=False))
    assert sorted((row.request_id, row.hit_tokens) for r in fast for row in r.rows) == sorted(
        (row.request_id, row.hit_tokens) for row in finished)
