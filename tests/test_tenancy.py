"""cache_salt and LoRA adapters: parsed from the trace, passed into vLLM's Request, and
so into vLLM's own block hashes. Hashes and hits are checked against vLLM driven plainly
(its Request, block hasher and KVCacheManager, no prefix-tui code in between)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.errors import TraceError
from engine.model import lora_int_id
from engine.replay.sequential import SequentialReplay
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings
from engine.trace.reader import TraceReader, check_cache_salt
from tests.conftest import req

BS = 4
TOKENS = tuple(range(100, 100 + 3 * BS + 1))  # three full blocks and a partial one


def tenant(index: int, salt: str | None = None, lora: str | None = None, tokens=TOKENS):
    return dataclasses.replace(req(index, tokens, output_len=1, arrival=index * 100.0),
                               cache_salt=salt, lora_name=lora)


def plain_hashes(tokens, salt: str | None = None, lora: str | None = None) -> list:
    """vLLM's block hashes of a request, from vLLM's own Request and block hasher."""
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.request import Request

    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    lora_req = LoRARequest(lora, 1, lora) if lora is not None else None
    r = Request("p", list(tokens), SamplingParams(max_tokens=1), None, cache_salt=salt,
                lora_request=lora_req, block_hasher=get_request_block_hasher(BS, hash_fn))
    return list(r.block_hashes)


# -- vLLM's hashes ------------------------------------------------------------------------------
def test_vllm_itself_separates_salts_and_adapters():
    """The premise, with vLLM alone: the salt and the adapter change every block hash (the
    hashes are chained, so the salt in the first block reaches all of them)."""
    base = plain_hashes(TOKENS)
    a, b = plain_hashes(TOKENS, salt="a"), plain_hashes(TOKENS, salt="b")
    lora = plain_hashes(TOKENS, lora="x")
    assert len(base) == 3
    assert plain_hashes(TOKENS, salt="a") == a
    for other in (a, b, lora):
        assert not set(other) & set(base)
    assert not set(a) & set(b)
    assert not set(lora) & set(a)


def test_the_adapter_builds_the_requests_vllm_would():
    m = V1Manager(EngineSettings(block_size=BS, num_blocks=32))
    assert list(m.new_request("s", TOKENS, 0.0, cache_salt="a").block_hashes) == \
        plain_hashes(TOKENS, salt="a")
    r = m.new_request("l", TOKENS, 0.0, lora_name="x")
    assert list(r.block_hashes) == plain_hashes(TOKENS, lora="x")
    assert r.lora_request.lora_int_id == lora_int_id("x")
    assert list(m.new_request("n", TOKENS, 0.0).block_hashes) == plain_hashes(TOKENS)


def test_lora_ids_are_stable_and_valid():
    assert lora_int_id("x") == lora_int_id("x")
    assert lora_int_id("x") != lora_int_id("y")
    ids = [lora_int_id(f"adapter-{i}") for i in range(200)]
    assert all(1 <= i < 2**31 for i in ids)


# -- replays: hits ------------------------------------------------------------------------------
TRACE = [
    tenant(0, salt="a"),
    tenant(1, salt="b"),  # same tokens, another salt: no hit
    tenant(2, salt="a"),  # the same salt: hits
    tenant(3),  # no salt: no hit on salted blocks
    tenant(4, lora="x"),  # an adapter: no hit on the base model's blocks
    tenant(5, lora="x"),  # the same adapter: hits
    tenant(6, lora="y"),
    tenant(7, salt="a", lora="x"),  # both: a new hash chain again
]
# Hand-worked: three full prompt blocks (the partial fourth is never cached); a hit
# covers all three, so 12 tokens.
EXPECTED_HITS = [0, 0, 12, 0, 0, 12, 0, 0]


def plain_hits(requests) -> list[int]:
    """Per-request hit tokens from vLLM's KVCacheManager driven directly."""
    from vllm.lora.request import LoRARequest
    from tests.test_replay_vs_vllm import plain_vllm

    m, hasher, Request, SamplingParams = plain_vllm(BS, 64)
    hits = []
    for i, tr in enumerate(requests):
        lora = LoRARequest(tr.lora_name, 1, tr.lora_name) if tr.lora_name else None
        r = Request(str(i), list(tr.prompt_token_ids), SamplingParams(max_tokens=1), None,
                    cache_salt=tr.cache_salt, lora_request=lora, block_hasher=hasher)
        blocks, n, _ = m.get_computed_blocks(r)
        assert m.allocate_slots(r, r.num_tokens - n, n, blocks) is not None
        hits.append(n)
        m.free(r)
    return hits


def test_sequential_replay_hits_follow_salts_and_adapters():
    assert plain_hits(TRACE) == EXPECTED_HITS
    m = V1Manager(EngineSettings(block_size=BS, num_blocks=64))
    rows = [r for rec in SequentialReplay(m, TRACE, detail=False) for r in rec.rows]
    assert [r.hit_tokens for r in rows] == EXPECTED_HITS


def test_serve_replay_hits_follow_salts_and_adapters():
    b = V1Scheduler(EngineSettings(block_size=BS, num_blocks=64),
                    ServeSettings(async_scheduling=False))
    rows = [r for rec in ServeReplay(b, TRACE, detail=False) for r in rec.rows]
    assert sorted((r.request.index, r.hit_tokens) for r in rows) == list(enumerate(EXPECTED_HITS))


def test_same_tokens_under_two_salts_never_share_a_block():
    m = V1Manager(EngineSettings(block_size=BS, num_blocks=64))
    records = list(SequentialReplay(m, TRACE[:3], detail=True))
    stored = [{h for e in rec.events if e.kind == "stored" for h in e.block_hashes}
              for rec in records]
    assert len(stored[0]) == len(stored[1]) == 3 and not stored[0] & stored[1]
    assert [s.is_hit for s in records[1].seqs[0].states] == [False] * 4
    # Salt "a" again: its three full blocks are the cached ones of the first request.
    assert [s.is_hit for s in records[2].seqs[0].states][:3] == [True] * 3
    assert set(records[2].seqs[0].block_ids[:3]) == set(records[0].seqs[0].block_ids[:3])


# -- the native format ---------------------------------------------------------------------------
def write(tmp_path, *lines) -> str:
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(p)


def test_native_fields_are_parsed(tmp_path):
    path = write(tmp_path, {"prompt_token_ids": [1, 2], "cache_salt": "tenant-1"},
                 {"prompt_token_ids": [1, 2], "lora_name": "sql-lora"},
                 {"prompt_token_ids": [1, 2]})
    reqs = list(TraceReader(path))
    assert [(r.cache_salt, r.lora_name) for r in reqs] == [
        ("tenant-1", None), (None, "sql-lora"), (None, None)]


@pytest.mark.parametrize("field, value, msg", [
    ("cache_salt", 5, "cache_salt must be a string (got int)"),
    ("cache_salt", "", "cache_salt must not be empty"),
    ("cache_salt", "a/b", "cache_salt must not contain '/'"),
    ("cache_salt", "x" * 129, "cache_salt has 129 characters"),
    ("lora_name", ["x"], "lora_name must be a string (got list)"),
    ("lora_name", "", "lora_name must not be empty"),
    ("lora_name", "\ud800", "lora_name contains an unpaired surrogate"),
])
def test_bad_tenant_fields_name_file_and_line(tmp_path, field, value, msg):
    path = write(tmp_path, {"prompt_token_ids": [1]}, {"prompt_token_ids": [1], field: value})
    with pytest.raises(TraceError) as err:
        list(TraceReader(path))
    assert str(err.value).startswith(f"{path}:2: {msg}")


@pytest.mark.parametrize("salt", ["ok", "", "a@b", "a/b", "a\\b", "a\x00b", "é" * 128,
                                  "x" * 129, 7, None])
def test_salt_rule_agrees_with_vllms_server(salt):
    from vllm.entrypoints.generate.base.protocol import validate_cache_salt
    from vllm.exceptions import VLLMValidationError

    try:
        validate_cache_salt(salt)
        vllm_ok = True
    except VLLMValidationError:
        vllm_ok = False
    try:
        if salt is not None:
            check_cache_salt(salt, lambda m: TraceError("t", 1, m))
        ours = True
    except TraceError:
        ours = False
    assert ours == vllm_ok
