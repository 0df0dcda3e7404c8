"""The adapter's reads of vLLM internals, checked against vLLM itself. If a vLLM upgrade
moves any of them, these fail loudly (and check_internals names the version at start-up)."""

from __future__ import annotations

import pytest

from engine.vllm_v1 import (
    TESTED_VLLM_VERSION,
    AdapterMismatch,
    EngineSettings,
    V1Backend,
    check_internals,
    import_vllm,
)
from engine.errors import UserError


def test_installed_vllm_is_the_tested_release():
    assert import_vllm() == TESTED_VLLM_VERSION


def test_internals_present_on_a_live_manager():
    backend = V1Backend(EngineSettings(block_size=4, num_blocks=10))
    assert check_internals(backend.manager) == []
    # The null block is vLLM's block 0 and never enters the free queue.
    assert backend.null_block_id == 0
    assert backend.free_queue() == list(range(1, 10))
    assert backend.num_free_blocks() == 9
    assert backend.scan_pool() == [(0, None)] * 10


def test_slot_hash_is_the_hash_vllm_puts_in_its_events():
    backend = V1Backend(EngineSettings(block_size=4, num_blocks=10))
    r = backend.new_request("x", list(range(8)), 0.0)
    lookup = backend.lookup(r)
    backend.allocate(r, 8, lookup)
    events = backend.take_events()
    stored = [h for e in events if e.kind == "stored" for h in e.block_hashes]
    ids = backend.block_ids("x")
    assert [backend.slot(b)[1] for b in ids] == stored == list(r.block_hashes)
    assert [backend.slot(b)[0] for b in ids] == [1, 1]


def test_a_moved_attribute_is_reported_not_misread():
    class Broken:
        pass

    problems = check_internals(Broken())
    assert problems and "block_pool" in problems[0]


def test_mismatch_error_names_the_version(monkeypatch):
    import engine.vllm_v1 as adapter

    monkeypatch.setattr(adapter, "check_internals", lambda m: ["KVCacheBlock.ref_cnt moved"])
    with pytest.raises(AdapterMismatch, match=r"vLLM 0\.33\.0 differs.*ref_cnt moved"):
        V1Backend(EngineSettings(block_size=4, num_blocks=10))


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
    backend = V1Backend(EngineSettings(block_size=4, num_blocks=10, hash_algo=algo))
    r = backend.new_request("x", [1 << 40, (1 << 40) + 1, 3, 4, 5], 0.0)
    assert len(r.block_hashes) == 1
