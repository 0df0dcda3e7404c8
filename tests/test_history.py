"""The cursor rebuilds vLLM's pool at any step from deltas: checked against full scans of
vLLM's real pool taken while replaying."""

from __future__ import annotations

import random

from engine.replay.history import History
from engine.model import SlotStatus, slot_status
from engine.replay.sequential import SequentialReplay
from engine.backends.vllm_v1.manager import V1Manager
from engine.settings import EngineSettings
from tests.conftest import req


def _trace(n: int, seed: int = 1):
    rng = random.Random(seed)
    prefixes = [[rng.randrange(1000) for _ in range(rng.randrange(4, 20))] for _ in range(4)]
    out = []
    for i in range(n):
        p = rng.choice(prefixes) + [rng.randrange(1000) for _ in range(rng.randrange(0, 12))]
        out.append(req(i, p, output_len=rng.randrange(0, 9)))
    return out


def test_history_matches_vllm_pool_at_every_step_forward_back_and_seek():
    backend = V1Manager(EngineSettings(block_size=4, num_blocks=24))
    history = History(24, checkpoint_every=7)
    scans = []
    for record in SequentialReplay(backend, _trace(60)):
        history.append(record)
        scans.append(backend.scan_pool())
        # The record's own counts agree with vLLM's pool.
        assert record.num_free == sum(
            1 for i, s in enumerate(scans[-1]) if i and s[0] == 0
        )
        assert record.num_cached_free == sum(
            1 for i, s in enumerate(scans[-1]) if slot_status(i, s) is SlotStatus.CACHED_FREE
        )
    assert sum(len(r.evicted) for r in history.records) > 10  # the pool really churned

    while history.forward():
        assert history.pool == scans[history.position]
    assert not history.forward()
    while history.position > 0:
        assert history.back()
        assert history.pool == scans[history.position]
    for target in (59, 3, 40, 41, 0, 22, 59):
        history.seek(target)
        assert history.position == target
        assert history.pool == scans[target]
    assert history.seek(-1) and history.pool == backend.__class__(
        EngineSettings(block_size=4, num_blocks=24)).scan_pool()
    assert not history.back()


def test_record_free_head_is_vllms_free_queue_order():
    backend = V1Manager(EngineSettings(block_size=4, num_blocks=12))
    for record in SequentialReplay(backend, _trace(20, seed=5)):
        assert list(record.free_head) == backend.free_queue(64)


def test_columns_give_back_the_rows_they_were_made_of_and_pickle():
    import pickle

    from engine.model import (
        EvictedBlock, EventKind, KVEvent, PoolChange, PoolDelta, Slot, evictions, kv_events,
        removed_count,
    )

    changes = [PoolChange(3, Slot(0, None), Slot(1, b"a", 1)), PoolChange(1, Slot(2, b"b"), Slot(0, b"b"))]
    delta = PoolDelta.of(changes)
    assert list(delta) == changes and delta == tuple(changes) and len(delta) == 2
    assert delta.block_ids == (3, 1) and list(delta.after_slots()) == [c.after for c in changes]
    assert PoolDelta.of([]) == () and not PoolDelta.of([])
    events = kv_events([KVEvent(EventKind.STORED, (b"x", b"y")), KVEvent(EventKind.REMOVED, (b"z",)),
                        KVEvent(EventKind.REMOVED, (b"v", b"w"))])
    assert removed_count(events) == 3 == removed_count(list(events))
    assert events[1] == KVEvent(EventKind.REMOVED, (b"z",))
    gone = evictions([EvictedBlock(7, b"z")])
    assert gone.column("block_id") == (7,) and list(gone) == [(7, b"z")]
    for obj in (delta, events, gone):  # records cross the V0 worker's pipe pickled
        assert pickle.loads(pickle.dumps(obj)) == obj
