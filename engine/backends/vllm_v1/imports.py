"""vLLM, imported lazily: it takes seconds, and the TUI must draw first.

``import_vllm()`` imports every vLLM name the adapter uses and keeps them on ``V``, so the
other adapter modules write ``V.KVCacheManager`` instead of importing vLLM at their top.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

TESTED_VLLM_VERSION = "0.33.0"
INT_HASHES_ENV = "VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES"


class _Symbols:
    """vLLM's names, filled in by import_vllm (attributes, so a typo fails loudly)."""

    loaded = False
    version: str
    torch: Any
    SamplingParams: Any
    get_hash_fn_by_name: Any
    kv_cache_utils: Any
    KVCacheManager: Any
    FullAttentionSpec: Any
    SlidingWindowSpec: Any
    KVCacheConfig: Any
    KVCacheGroupSpec: Any
    CachingMetrics: Any
    Request: Any
    LoRARequest: Any
    BlockStored: Any
    BlockRemoved: Any
    AllBlocksCleared: Any
    EventPublisher: Any
    # VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES as the user's environment had it before
    # import_vllm pinned it (None: unset, vLLM's default); the event export honours it.
    user_int_hashes_env: str | None = None


V = _Symbols()


def quiet_environment() -> None:
    """Keep vLLM's and torch's import-time log lines out of the report and the TUI."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_LOGS", "-all")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("vllm").setLevel(logging.ERROR)
    logging.getLogger("torch").setLevel(logging.ERROR)


def import_vllm(verbose: bool = False) -> str:
    """Import the parts of vLLM the adapter uses (slow: ~5 s). Returns vLLM's version."""
    if V.loaded:
        return V.version
    if not verbose:
        quiet_environment()
    # vLLM's KV events then carry the same full hash bytes as the blocks, instead of a
    # 64-bit digest, so an event can be matched to a block (records and serve mode's
    # eviction ledger need that). The user's own setting is kept for what leaves
    # prefix-tui (--export-events, --serve-events: engine.backends.vllm_v1.kvstream).
    V.user_int_hashes_env = os.environ.get(INT_HASHES_ENV)
    os.environ[INT_HASHES_ENV] = "0"
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        import torch
        import vllm
        from vllm.distributed.kv_events import (
            AllBlocksCleared,
            BlockRemoved,
            BlockStored,
            EventPublisher,
        )
        from vllm.sampling_params import SamplingParams
        from vllm.utils.hashing import get_hash_fn_by_name
        from vllm.v1.core import kv_cache_utils
        from vllm.v1.core.kv_cache_manager import KVCacheManager
        from vllm.v1.kv_cache_interface import (
            FullAttentionSpec,
            KVCacheConfig,
            KVCacheGroupSpec,
            SlidingWindowSpec,
        )
        from vllm.v1.metrics.stats import CachingMetrics
        from vllm.lora.request import LoRARequest
        from vllm.v1.request import Request
    V.version = vllm.__version__
    V.torch = torch
    V.SamplingParams = SamplingParams
    V.get_hash_fn_by_name = get_hash_fn_by_name
    V.kv_cache_utils = kv_cache_utils
    V.KVCacheManager = KVCacheManager
    V.FullAttentionSpec = FullAttentionSpec
    V.SlidingWindowSpec = SlidingWindowSpec
    V.KVCacheConfig = KVCacheConfig
    V.KVCacheGroupSpec = KVCacheGroupSpec
    V.CachingMetrics = CachingMetrics
    V.Request = Request
    V.LoRARequest = LoRARequest
    V.BlockStored = BlockStored
    V.BlockRemoved = BlockRemoved
    V.AllBlocksCleared = AllBlocksCleared
    V.EventPublisher = EventPublisher
    V.loaded = True
    return V.version
