"""Hybrid KV layouts (--hf-config) against vLLM driven plainly.

The plain loop below builds the KV cache groups with vLLM's own get_kv_cache_groups, hands
vLLM's KVCacheManager a KVCacheConfig made from them, and makes the scheduler's calls
around each lookup with no prefix-tui code in between. The replay builds its groups through
vLLM's engine-core planning path instead (engine/backends/vllm_v1/hybrid.py): if either the
grouping or the calls drift, the per-request hit tokens stop matching.
"""

from __future__ import annotations

import random

import pytest

from engine.backends.vllm_v1.hybrid import layer_specs, plan_kv_cache
from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.serve_config import build_vllm_config
from engine.hf_config import layers_from_config
from engine.model import BlockState, TraceRequest
from engine.replay.common import synth_output_tokens
from engine.replay.sequential import SequentialReplay
from engine.settings import EngineSettings, KVLayout, ServeSettings

BS = 16
WINDOW = 32  # two blocks: small enough that sliding groups drop most of a prompt

LAYOUTS = {
    "full": {"model_type": "llama", "num_hidden_layers": 4},
    "1:1": {"model_type": "gpt_oss", "num_hidden_layers": 4, "sliding_window": WINDOW},
    "5:1": {"model_type": "gemma3_text", "num_hidden_layers": 6, "sliding_window": WINDOW,
            "sliding_window_pattern": 6},
}
GROUPS = {"full": ["full"], "1:1": ["sliding_window", "full"],
          "5:1": ["sliding_window"] * 5 + ["full"]}


def plain_vllm_config(num_blocks: int):
    """vLLM's VllmConfig for this CPU, with the layout a user may set explicitly
    (CacheConfig.kv_cache_layout; the engine core resolves it otherwise)."""
    vllm_config = build_vllm_config(EngineSettings(block_size=BS, num_blocks=num_blocks),
                                    ServeSettings())
    vllm_config.cache_config.kv_cache_layout = "LBNHC"
    return vllm_config


def model(name: str, **extra):
    cfg = {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
           **LAYOUTS[name], **extra}
    return layers_from_config(f"{name}.json", cfg)


def settings(name: str, num_blocks: int) -> EngineSettings:
    return EngineSettings(block_size=BS, num_blocks=num_blocks,
                          layout=KVLayout(model=model(name)))


def conversations(seed: int = 5, convs: int = 4, turns: int = 4) -> list[TraceRequest]:
    """Multi-turn chats: each turn's prompt extends the previous prompt and its reply."""
    rng = random.Random(seed)
    system = [rng.randrange(1, 30000) for _ in range(40)]
    out: list[TraceRequest] = []
    histories = {c: list(system) for c in range(convs)}
    for t in range(turns):
        for c in range(convs):
            h = histories[c]
            h.extend(rng.randrange(1, 30000) for _ in range(rng.randrange(20, 90)))
            reply = tuple(rng.randrange(1, 30000) for _ in range(rng.randrange(5, 40)))
            i = len(out)
            out.append(TraceRequest(i, i + 1, f"c{c}t{t}", float(i), tuple(h),
                                    output_token_ids=reply))
            h.extend(reply)
    return out


def plain_vllm_hits(name: str, requests, num_blocks: int, max_model_len: int,
                    max_in_flight: int) -> tuple[list[int | None], int]:
    """Per-request hit tokens (None: did not fit) and evicted blocks, from vLLM's
    KVCacheManager over groups from vLLM's get_kv_cache_groups, driven directly."""
    from vllm.config import CacheConfig
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.sampling_params import SamplingParams
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_planning import get_kv_cache_groups
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request

    vllm_config = plain_vllm_config(num_blocks)
    vllm_config.scheduler_config.disable_hybrid_kv_cache_manager = False  # a GPU's answer
    groups = get_kv_cache_groups(vllm_config, layer_specs(model(name), BS))
    assert [type(g.kv_cache_spec).__name__ for g in groups] == [
        "SlidingWindowSpec" if k == "sliding_window" else "FullAttentionSpec"
        for k in GROUPS[name]]
    cfg = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=groups,
                        prefix_cache_retention_interval=CacheConfig().prefix_cache_retention_interval)
    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    m = KVCacheManager(cfg, max_model_len=max_model_len, scheduler_block_size=BS,
                       hash_block_size=BS, max_in_flight_tokens=max_in_flight,
                       enable_caching=True, log_stats=True, enable_kv_cache_events=True)
    hasher = get_request_block_hasher(BS, hash_fn)
    hits: list[int | None] = []
    evicted = 0
    for i, tr in enumerate(requests):
        r = Request(str(i), list(tr.prompt_token_ids), SamplingParams(max_tokens=1), None,
                    block_hasher=hasher)
        m.new_step_starts()
        blocks, n, boundary = m.get_computed_blocks(r)
        r.shared_prefix_boundary = boundary  # as the scheduler keeps it
        if m.allocate_slots(r, r.num_tokens - n, n, blocks, full_sequence_must_fit=True) is None:
            hits.append(None)
            continue
        hits.append(n)
        r.num_computed_tokens = r.num_tokens
        out = synth_output_tokens(tr)
        r.append_output_token_ids(out[0])
        for tok in out[1:]:  # token-by-token decode, as vLLM's scheduler runs it
            m.new_step_starts()
            assert m.allocate_slots(r, 1) is not None
            r.num_computed_tokens += 1
            r.append_output_token_ids(tok)
        m.free(r)
        evicted += sum(len(e.block_hashes) for e in m.take_events()
                       if type(e).__name__ == "BlockRemoved")
    return hits, evicted


# Pools small enough that vLLM evicts (more groups hold more blocks per token).
EVICTING_POOL = {"full": 60, "1:1": 100, "5:1": 220}


@pytest.mark.parametrize("name", ["full", "1:1", "5:1"])
@pytest.mark.parametrize("evicts", [False, True])
def test_per_request_hits_equal_plain_vllm(name, evicts):
    requests = conversations()
    num_blocks = EVICTING_POOL[name] if evicts else 3000
    mgr = V1Manager(settings(name, num_blocks))
    assert [g.kind for g in mgr.groups] == GROUPS[name]
    recs = list(SequentialReplay(mgr, requests, detail=False))
    ours = [r.request.hit_tokens if r.request.outcome.served else None for r in recs]
    plan = plan_kv_cache(settings(name, num_blocks))
    theirs, evicted = plain_vllm_hits(name, requests, num_blocks, plan.max_model_len,
                                      plan.max_in_flight_tokens)
    assert ours == theirs
    assert sum(h or 0 for h in ours) > 0
    assert (evicted > 0) is evicts
    assert sum(r.request.evicted_blocks for r in recs) == evicted
    if len(GROUPS[name]) > 1:
        last = recs[-1].totals
        assert len(last.group_hit_blocks) == len(GROUPS[name])
        # The full-attention group reuses every hit block; a sliding group only its window.
        assert last.group_hit_blocks[-1] == last.blocks_reused
        assert last.group_hit_blocks[0] < last.group_hit_blocks[-1]


def test_this_platform_merges_every_layer_and_the_plan_does_not():
    """Guard: without a GPU vLLM's config turns the hybrid manager off and its grouping
    then merges sliding layers into one full-attention group. The plan must not."""
    from vllm.v1.core.kv_cache_planning import get_kv_cache_groups

    vllm_config = plain_vllm_config(500)
    assert vllm_config.scheduler_config.disable_hybrid_kv_cache_manager is True
    merged = get_kv_cache_groups(vllm_config, layer_specs(model("1:1"), BS))
    assert [type(g.kv_cache_spec).__name__ for g in merged] == ["FullAttentionSpec"]
    plan = plan_kv_cache(settings("1:1", 500))
    assert [g.kind for g in plan.groups] == ["sliding_window", "full"]
    assert [g.num_layers for g in plan.groups] == [2, 2]
    assert plan.kv_cache_config.num_blocks == 500  # --num-gpu-blocks-override, as vLLM


def test_chunked_local_attention_merges_as_vllm_does_unless_allowed(monkeypatch):
    m = layers_from_config("l4.json", {
        "model_type": "llama4_text", "num_hidden_layers": 4, "num_attention_heads": 2,
        "head_dim": 8, "attention_chunk_size": 64})
    s = EngineSettings(block_size=BS, num_blocks=500, layout=KVLayout(model=m))
    assert [g.kind for g in plan_kv_cache(s).groups] == ["full"]
    monkeypatch.setenv("VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE", "1")
    assert [g.kind for g in plan_kv_cache(s).groups] == ["chunked_local"] * 3 + ["full"]


def test_hand_worked_sliding_window_block_size_4_window_8():
    """Every layer slides over 8 tokens (2 blocks of 4). A: tokens 1..16 (4 blocks).
    vLLM retains, of A's blocks, those a replay of A can resume from (its boundary is
    token 15, so a hit of 12 tokens needs tokens 5..11: blocks 1 and 2); block 0 and 3 are
    not cached. B = A + 4 tokens: a full-attention model would hit 16 tokens; the window
    needs blocks 2 and 3 for 16, block 3 is not cached, so the hit is 12 (blocks 1, 2),
    and block 0's place holds vLLM's null block. C = A again: capped at 15 tokens, the hit
    is 12, and A's block 3 (cached by B's replay boundary at 19) is recomputed."""
    m = layers_from_config("m.json", {"model_type": "mistral", "num_hidden_layers": 2,
                                      "num_attention_heads": 1, "head_dim": 4,
                                      "sliding_window": 8})
    a = tuple(range(1, 17))
    reqs = [TraceRequest(0, 1, "a", 0.0, a), TraceRequest(1, 2, "b", 1.0, a + (90, 91, 92, 93)),
            TraceRequest(2, 3, "c", 2.0, a)]
    s = EngineSettings(block_size=4, num_blocks=64, layout=KVLayout(model=m))
    recs = list(SequentialReplay(V1Manager(s), reqs, detail=True))
    assert [r.request.hit_tokens for r in recs] == [0, 12, 12]
    b_table = recs[1].seqs[0].tables[0]
    assert b_table.states[:3] == (BlockState.SKIPPED, BlockState.HIT_FREE, BlockState.HIT_FREE)
    assert b_table.block_ids[1:3] == recs[0].seqs[0].tables[0].block_ids[1:3]
    assert recs[2].request.recomputed_last_block
    full = EngineSettings(block_size=4, num_blocks=64)
    assert [r.request.hit_tokens for r in SequentialReplay(V1Manager(full), reqs)] == [0, 16, 12]
