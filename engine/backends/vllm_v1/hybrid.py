"""A model's KV cache groups, built by vLLM's own functions from its layers (--hf-config).

The steps are EngineCore._initialize_kv_caches' (vllm/v1/engine/core.py), with the model's
layer specs made from engine.settings.ModelLayers instead of a loaded model:

    one KVCacheSpec per layer (what vLLM's Attention.get_kv_cache_spec returns)
    -> get_global_kv_cache_groups -> get_kv_cache_configs (num_gpu_blocks_override, the
    null-block reservation, the memory check, auto-fit of max_model_len)
    -> generate_scheduler_kv_cache_config -> resolve_kv_cache_block_sizes
    -> resolve_cache_hit_alignment_tokens.

One decision is not vLLM's platform's: without a GPU, vLLM's platform is "unspecified",
and VllmConfig turns the hybrid KV cache manager off (support_hybrid_kv_cache() is False),
which merges every layer into one full-attention group. prefix-tui replays the GPU
deployment, so it sets ``disable_hybrid_kv_cache_manager`` as VllmConfig decides it on a
GPU: off only for chunked local attention without
VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1 (VllmConfig.__post_init__).
tests/test_hybrid_layout.py fails if this platform stops merging, or the plan does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from engine.backends.vllm_v1.imports import V
from engine.backends.vllm_v1.serve_config import build_vllm_config, import_scheduler
from engine.errors import UserError
from engine.model import KVGroupInfo
from engine.settings import AttentionKind, EngineSettings, ModelLayers, ServeSettings

FLASH_ATTN_LAYOUT = "LBNHC"
ALLOW_CHUNKED_ENV = "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE"


class _PlanSymbols:
    loaded = False
    get_global_kv_cache_groups: Any
    get_kv_cache_configs: Any
    generate_scheduler_kv_cache_config: Any
    resolve_cache_hit_alignment_tokens: Any
    resolve_kv_cache_layout: Any
    ChunkedLocalAttentionSpec: Any


P = _PlanSymbols()


def _import_planning() -> _PlanSymbols:
    if P.loaded:
        return P
    from vllm.v1.core.kv_cache_planning import (
        get_global_kv_cache_groups,
        get_kv_cache_configs,
    )
    from vllm.v1.core.kv_cache_utils import (
        generate_scheduler_kv_cache_config,
        resolve_cache_hit_alignment_tokens,
    )
    from vllm.v1.attention.backends.utils import resolve_kv_cache_layout
    from vllm.v1.kv_cache_interface import ChunkedLocalAttentionSpec

    P.get_global_kv_cache_groups = get_global_kv_cache_groups
    P.get_kv_cache_configs = get_kv_cache_configs
    P.generate_scheduler_kv_cache_config = generate_scheduler_kv_cache_config
    P.resolve_cache_hit_alignment_tokens = resolve_cache_hit_alignment_tokens
    P.resolve_kv_cache_layout = resolve_kv_cache_layout
    P.ChunkedLocalAttentionSpec = ChunkedLocalAttentionSpec
    P.loaded = True
    return P


@dataclass(frozen=True)
class KVPlan:
    """What vLLM's engine core hands its scheduler, and what the replay shows of it."""

    kv_cache_config: Any
    vllm_config: Any
    scheduler_block_size: int
    hash_block_size: int
    max_model_len: int  # as vLLM resolved it (auto-fit when --max-model-len is not given)
    max_in_flight_tokens: int
    groups: tuple[KVGroupInfo, ...]
    settings: EngineSettings  # the settings with vLLM's resolved max_model_len


def hybrid_manager_enabled(model: ModelLayers) -> bool:
    """VllmConfig's decision on a GPU platform (see the module docstring)."""
    if model.hybrid_manager:
        return True
    return os.environ.get(ALLOW_CHUNKED_ENV, "0").strip().lower() in ("1", "true")


def layer_name(i: int) -> str:
    return f"model.layers.{i}.self_attn.attn"


def layer_specs(model: ModelLayers, block_size: int) -> dict[str, Any]:
    """Each layer's KVCacheSpec, as Attention / ChunkedLocalAttention.get_kv_cache_spec
    builds it (sliding-window layers at the primary block size: a backend that runs it)."""
    p = _import_planning()
    common = dict(block_size=block_size, num_kv_heads=model.num_kv_heads,
                  head_size=model.head_size, dtype=V.torch.float16)
    specs: dict[str, Any] = {}
    for i, la in enumerate(model.layers):
        if la.kind is AttentionKind.SLIDING_WINDOW:
            spec = V.SlidingWindowSpec(sliding_window=la.window, **common)
        elif la.kind is AttentionKind.CHUNKED_LOCAL:
            spec = p.ChunkedLocalAttentionSpec(attention_chunk_size=la.window, **common)
        else:
            spec = V.FullAttentionSpec(**common)
        specs[layer_name(i)] = spec
    return specs


def group_info(index: int, group: Any) -> KVGroupInfo:
    spec = group.kv_cache_spec
    if isinstance(spec, V.SlidingWindowSpec):
        kind, window = AttentionKind.SLIDING_WINDOW.value, spec.sliding_window
    elif isinstance(spec, _import_planning().ChunkedLocalAttentionSpec):
        kind, window = AttentionKind.CHUNKED_LOCAL.value, spec.attention_chunk_size
    else:
        kind, window = AttentionKind.FULL.value, None
    names = list(group.layer_names)
    return KVGroupInfo(index, kind, window, spec.block_size, len(names),
                       names[0] if names else "")


def plan_kv_cache(settings: EngineSettings, serve: ServeSettings | None = None) -> KVPlan:
    """Group the model's layers and size the pool with vLLM's own planning functions."""
    model = settings.layout.model
    assert model is not None, "plan_kv_cache needs a layout from --hf-config"
    s = import_scheduler()
    p = _import_planning()
    bs = settings.block_size
    auto = settings.max_model_len is None
    cap = bs * (settings.num_blocks - 1)
    if model.max_position_embeddings is not None:
        cap = min(cap, model.max_position_embeddings)
    vllm_config = build_vllm_config(
        replace(settings, max_model_len=settings.max_model_len or cap), serve or ServeSettings()
    )
    vllm_config.scheduler_config.disable_hybrid_kv_cache_manager = (
        not hybrid_manager_enabled(model)
    )
    specs = layer_specs(model, bs)
    try:
        # The engine core resolves the layout from what the workers' attention backends
        # support; FlashAttention's is [L, B, N, H, C] (the legacy "NHD").
        p.resolve_kv_cache_layout(vllm_config, [[FLASH_ATTN_LAYOUT]], list(specs.values()))
        groups = p.get_global_kv_cache_groups(vllm_config, [specs])
        if auto:  # as `--max-model-len -1`: vLLM fits it to the pool
            vllm_config.model_config.original_max_model_len = -1
        # The pool's bytes do not matter: num_gpu_blocks_override sets the block count.
        configs = p.get_kv_cache_configs(vllm_config, [specs], [1 << 50], groups)
    except (ValueError, NotImplementedError, AssertionError) as exc:
        raise UserError(f"{model.source}: vLLM cannot lay out this model's KV cache in "
                        f"{settings.num_blocks:,} blocks: {_first_line(exc)}") from None
    kv = p.generate_scheduler_kv_cache_config(configs)
    vllm_config.cache_config.num_gpu_blocks = kv.num_blocks
    sched_bs, hash_bs = s.resolve_kv_cache_block_sizes(kv, vllm_config)
    align = p.resolve_cache_hit_alignment_tokens(kv, vllm_config, sched_bs, hash_bs)
    kv.hash_block_size = hash_bs
    kv.cache_hit_alignment_tokens = align
    infos = tuple(group_info(i, g) for i, g in enumerate(kv.kv_cache_groups))
    odd = sorted({g.block_size for g in infos} - {bs})
    if odd or sched_bs != bs or hash_bs != bs:
        raise UserError(f"{model.source}: vLLM gives this model's groups block sizes "
                        f"{sorted({g.block_size for g in infos})} for --block-size {bs}: "
                        "not supported yet (prefix-tui replays one block size)")
    max_len = vllm_config.model_config.max_model_len
    vllm_config.scheduler_config.max_model_len = max_len
    return KVPlan(
        kv_cache_config=kv, vllm_config=vllm_config, scheduler_block_size=sched_bs,
        hash_block_size=hash_bs, max_model_len=max_len,
        max_in_flight_tokens=vllm_config.max_in_flight_tokens, groups=infos,
        settings=replace(settings, max_model_len=max_len),
    )


def _first_line(exc: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    return text[:300] if text else type(exc).__name__
