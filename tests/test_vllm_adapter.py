"""The adapter's reads of vLLM internals, checked against vLLM itself. If a vLLM upgrade
moves any of them, these fail loudly (and check_manager names the version at start-up)."""

from __future__ import annotations

import pytest

from engine.backends.vllm_v1 import events as adapter_events
from engine.backends.vllm_v1 import manager as manager_mod
from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, V, import_vllm
from engine.backends.vllm_v1.internals import AdapterMismatch
from engine.backends.vllm_v1.internals import check_manager as check_internals
from engine.backends.vllm_v1.manager import V1Manager
from engine.errors import UserError
from engine.model import EventKind, Slot
from engine.settings import EngineSettings


def test_installed_vllm_is_the_tested_release():
    assert import_vllm() == TESTED_VLLM_VERSION


def test_internals_present_on_a_live_manager():
    backend = V1Manager(EngineSettings(block_size=4, num_blocks=10))
    assert check_internals(backend.manager) == []
    # The null block is vLLM's block 0 and never enters the free queue.
    assert backend.null_block_id == 0
    assert backend.free_queue() == list(range(1, 10))
    assert backend.num_free_blocks() == 9
    assert backend.scan_pool() == [Slot(0, None)] * 10


def test_slot_hash_is_the_hash_vllm_puts_in_its_events():
    backend = V1Manager(EngineSettings(block_size=4, num_blocks=10))
    r = backend.new_request("x", list(range(8)), 0.0)
    lookup = backend.lookup(r)
    backend.allocate(r, 8, lookup)
    events = backend.take_events()
    stored = [h for e in events if e.kind == "stored" for h in e.block_hashes]
    ids = backend.block_tables("x")[0]
    assert [backend.slot(b).block_hash for b in ids] == stored == list(r.block_hashes)
    assert [backend.slot(b).ref_cnt for b in ids] == [1, 1]
    # vLLM keys its cache by hash + group id; the adapter keeps them apart.
    assert [backend.slot(b).group for b in ids] == [0, 0]
    # The fast reader (attrgetter on _block_hash, a decode cache) reads the same slots,
    # the first time and from its cache.
    assert backend.slots(list(ids)) == backend.slots(list(ids)) == [backend.slot(b) for b in ids]
    backend.free(r)
    assert backend.slots(list(ids)) == [Slot(0, h, 0) for h in stored]
    assert all(e.group == 0 for e in events if e.kind is EventKind.STORED)


def test_cached_block_ids_lists_every_duplicate_of_a_hash():
    """The eviction ledger's read of vLLM's hash map: every block holding a hash, where
    vLLM's public get_cached_block returns only the first of duplicates."""
    from engine.backends.vllm_v1.internals import PoolInternals

    backend = V1Manager(EngineSettings(block_size=4, num_blocks=10))
    a = backend.new_request("a", list(range(8)), 0.0)
    backend.allocate(a, 8, backend.lookup(a))
    # b computes the same blocks without a lookup, as two concurrent prefills do.
    b = backend.new_request("b", list(range(8)), 0.0)
    backend.allocate(b, 8)
    pool = backend._pool
    a_ids, b_ids = backend.block_tables("a")[0], backend.block_tables("b")[0]
    assert set(a_ids).isdisjoint(b_ids)
    for i, h in enumerate(a.block_hashes):
        assert sorted(PoolInternals.cached_block_ids(pool, h, 0)) == sorted((a_ids[i], b_ids[i]))
        assert pool.get_cached_block(h, [0])[0].block_id in (a_ids[i], b_ids[i])
    assert PoolInternals.cached_block_ids(pool, b"\x00" * 32, 0) == ()


def test_a_moved_attribute_is_reported_not_misread():
    class Broken:
        pass

    problems = check_internals(Broken())
    assert problems and "block_pool" in problems[0]


def test_mismatch_error_names_the_version(monkeypatch):
    monkeypatch.setattr(manager_mod, "check_manager", lambda m: ["KVCacheBlock.ref_cnt moved"])
    with pytest.raises(AdapterMismatch, match=r"vLLM 0\.33\.0's KV-cache manager differs.*ref_cnt moved"):
        V1Manager(EngineSettings(block_size=4, num_blocks=10))


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"block_size": 0}, "--block-size"),
        ({"num_blocks": 1}, "--num-gpu-blocks-override"),
        ({"max_model_len": 0}, "--max-model-len"),
        ({"hash_algo": "md5"}, "--prefix-caching-hash-algo"),
    ],
)
def test_bad_settings_are_one_line_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        EngineSettings(**kw).validate()


@pytest.mark.parametrize("algo", ["sha256", "sha256_cbor", "xxhash", "xxhash_cbor"])
def test_every_hash_algo_hashes_synthesized_large_token_ids(algo):
    # Mooncake and synthesized output tokens lie far above any vocabulary.
    backend = V1Manager(EngineSettings(block_size=4, num_blocks=10, hash_algo=algo))
    r = backend.new_request("x", [1 << 40, (1 << 40) + 1, 3, 4, 5], 0.0)
    assert len(r.block_hashes) == 1


def test_an_unknown_vllm_event_class_fails_loudly():
    """A new KV event class must not be silently counted as something else."""
    import_vllm()

    class BlockMoved(V.BlockRemoved.__mro__[1]):  # a KVCacheEvent vLLM might add
        pass

    with pytest.raises(AdapterMismatch, match="BlockMoved"):
        adapter_events.convert([BlockMoved()])


def test_held_agrees_with_get_cached_block_before_and_after_eviction():
    """Miss reasons read vLLM's hash map for every block past a hit through PoolInternals.held
    (its dict, at C speed): it must say what vLLM's public get_cached_block says."""
    from engine.backends.vllm_v1.internals import PoolInternals

    backend = V1Manager(EngineSettings(block_size=4, num_blocks=5))  # 4 usable + null
    pool = backend._pool
    a = backend.new_request("a", list(range(12)), 0.0)
    backend.allocate(a, 12, backend.lookup(a))
    probe = list(a.block_hashes) + [b"\x01" * 32]

    def public() -> list[bool]:
        return [pool.get_cached_block(h, [0]) is not None for h in probe]

    assert PoolInternals.held(pool, probe, 0) == public() == [True, True, True, False]
    backend.free(a)
    # 16 new tokens need all 4 blocks: vLLM evicts a's three cached blocks.
    c = backend.new_request("c", list(range(100, 116)), 0.0)
    backend.allocate(c, 16, backend.lookup(c))
    assert PoolInternals.held(pool, probe, 0) == public() == [False, False, False, False]
    assert PoolInternals.held(pool, list(c.block_hashes), 0) == [True] * 4
