"""The KVCacheConfig both backends hand vLLM, built from engine.settings.KVLayout.

vLLM's KV cache groups share one BlockPool of ``num_blocks``; each group gets its own spec.
No tensors: nothing is allocated, only the manager's bookkeeping runs.
"""

from __future__ import annotations

from typing import Any

from engine.backends.vllm_v1.imports import V
from engine.settings import AttentionKind, EngineSettings, KVGroup


def group_spec(group: KVGroup, block_size: int) -> Any:
    common = dict(block_size=block_size, num_kv_heads=1, head_size=1, dtype=V.torch.float16)
    if group.kind is AttentionKind.SLIDING_WINDOW:
        return V.SlidingWindowSpec(sliding_window=group.sliding_window, **common)
    return V.FullAttentionSpec(**common)


def build_kv_cache_config(settings: EngineSettings) -> Any:
    groups = [
        V.KVCacheGroupSpec(list(g.layer_names), group_spec(g, settings.block_size))
        for g in settings.layout.groups
    ]
    return V.KVCacheConfig(
        num_blocks=settings.num_blocks, kv_cache_tensors=[], kv_cache_groups=groups
    )
