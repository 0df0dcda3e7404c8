"""KV cache groups with mixed page sizes (layers whose KV per token differs): vLLM 0.33
plans them on this CPU standalone, and prefix-tui refuses them in one line (README,
"Hybrid KV layouts": why). If vLLM stops planning them, the README's claim fails here.

Sliding layers with half the head size of the full layers: vLLM's
unify_kv_cache_spec_page_size doubles their block size so every group's page (one
physical block) has the same bytes; the scheduler then aligns hits to the LCM of the
groups' block sizes and hashes at their GCD.
"""

from __future__ import annotations

import pytest

from engine.backends.vllm_v1 import hybrid
from engine.backends.vllm_v1.serve_config import build_vllm_config
from engine.errors import UserError
from engine.settings import EngineSettings, KVLayout, ServeSettings
from tests.test_hybrid_layout import BS, model


def mixed_specs(block_size: int) -> dict:
    """Layers 0 and 2 slide (window 64) with head size 8; 1 and 3 are full with 16."""
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec, SlidingWindowSpec

    specs = {}
    for i in range(4):
        if i % 2 == 0:
            spec = SlidingWindowSpec(block_size=block_size, num_kv_heads=1, head_size=8,
                                     dtype=torch.float16, sliding_window=64)
        else:
            spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=16,
                                     dtype=torch.float16)
        specs[hybrid.layer_name(i)] = spec
    return specs


def test_vllm_plans_mixed_page_sizes_on_this_cpu():
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_planning import get_global_kv_cache_groups, get_kv_cache_configs
    from vllm.v1.core.kv_cache_utils import (
        generate_scheduler_kv_cache_config,
        get_request_block_hasher,
        init_none_hash,
        resolve_kv_cache_block_sizes,
    )
    from vllm.v1.request import Request

    vllm_config = build_vllm_config(
        EngineSettings(block_size=BS, num_blocks=400, max_model_len=2048), ServeSettings())
    vllm_config.cache_config.kv_cache_layout = "LBNHC"
    vllm_config.scheduler_config.disable_hybrid_kv_cache_manager = False  # a GPU's answer
    specs = mixed_specs(BS)
    groups = get_global_kv_cache_groups(vllm_config, [specs])
    assert [(type(g.kv_cache_spec).__name__, g.kv_cache_spec.block_size) for g in groups] == [
        ("SlidingWindowSpec", 2 * BS), ("FullAttentionSpec", BS)]
    assert len({g.kv_cache_spec.page_size_bytes for g in groups}) == 1
    kv = generate_scheduler_kv_cache_config(
        get_kv_cache_configs(vllm_config, [specs], [1 << 40], groups))
    assert resolve_kv_cache_block_sizes(kv, vllm_config) == (2 * BS, BS)  # (LCM, GCD)
    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    m = KVCacheManager(kv, max_model_len=2048, scheduler_block_size=2 * BS, hash_block_size=BS,
                       enable_caching=True, log_stats=True, enable_kv_cache_events=True)
    hasher = get_request_block_hasher(BS, hash_fn)
    a = list(range(1, 300))
    hits = []
    for i, tokens in enumerate([a, a + [7] * 40]):
        r = Request(str(i), tokens, SamplingParams(max_tokens=1), None, block_hasher=hasher)
        m.new_step_starts()
        blocks, n, boundary = m.get_computed_blocks(r)
        r.shared_prefix_boundary = boundary
        assert m.allocate_slots(r, r.num_tokens - n, n, blocks, full_sequence_must_fit=True)
        hits.append((n, [len(g) for g in blocks.blocks]))
        r.num_computed_tokens = r.num_tokens
        r.append_output_token_ids(5)
        m.free(r)
    # The second prompt hits at a 32-token boundary: 9 blocks of 32 (sliding), 18 of 16.
    assert hits == [(0, [0, 0]), (288, [9, 18])]


def test_prefix_tui_refuses_mixed_page_sizes_in_one_line(monkeypatch):
    monkeypatch.setattr(hybrid, "layer_specs", lambda _model, bs: mixed_specs(bs))
    s = EngineSettings(block_size=BS, num_blocks=400, layout=KVLayout(model=model("1:1")))
    with pytest.raises(UserError, match=r"1:1\.json: vLLM gives this model's groups block "
                       r"sizes \[16, 32\] for --block-size 16: not supported yet") as e:
        hybrid.plan_kv_cache(s)
    assert "\n" not in str(e.value)


def test_a_config_with_kv_shapes_by_layer_kind_is_refused_not_read_as_full_attention():
    """vLLM 0.33's MiMo-V2 gives sliding layers their own KV heads and head size; read
    as a plain config it would silently become one full-attention group."""
    from engine.hf_config import layers_from_config

    cfg = {"model_type": "mimo_v2_flash", "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 4, "head_dim": 192, "hybrid_layer_pattern": [0, 1, 1, 0],
           "swa_num_key_value_heads": 8, "swa_head_dim": 192, "sliding_window_size": 128}
    with pytest.raises(UserError, match=r"^m\.json: field hybrid_layer_pattern: layers whose "
                       r"KV heads or head size differ by kind .*not supported yet$"):
        layers_from_config("m.json", cfg)
