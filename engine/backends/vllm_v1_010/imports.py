"""vLLM 0.10.1.1's V1 names for the V1 adapter (worker side, .venv-legacy).

The adapter's modules read vLLM through ``engine.backends.vllm_v1.imports.V``; in the
worker process there is only vLLM 0.10.1.1, so ``V`` is filled from it here. Two
differences are bridged at import:

- ``vllm.v1.request`` imports ``StructuredOutputRequest`` from the package
  ``vllm.v1.structured_output``, whose ``__init__`` pulls in the reasoning parsers and,
  through them, the OpenAI server (fastapi, openai, opentelemetry). The block manager never
  uses structured output, so that package is registered without running its ``__init__``
  and only its ``request`` module loads (the way prefix-tui's own worker boot skips the
  registry package). .venv-legacy therefore needs none of the server stack.
- ``CachingMetrics`` (0.33) is ``PrefixCachingMetrics`` in 0.10.1.1 (same window logic).
"""

from __future__ import annotations

import sys
import types
import warnings

from engine.backends.vllm_v1.imports import V, quiet_environment

TESTED_VLLM_VERSION = "0.10.1.1"


def _skip_package_init(name: str) -> None:
    """Register package ``name`` by its path only, so its submodules import without its
    ``__init__`` (already imported: nothing to do)."""
    if name in sys.modules:
        return
    parent, _, leaf = name.rpartition(".")
    __import__(parent)
    package = types.ModuleType(name)
    package.__path__ = [f"{sys.modules[parent].__path__[0]}/{leaf}"]
    sys.modules[name] = package


def import_vllm_010(verbose: bool = False) -> str:
    """Import vLLM 0.10.1.1's V1 KV-cache manager and its names into ``V``; its version."""
    if V.loaded:
        return V.version
    if not verbose:
        quiet_environment()
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        import torch
        import vllm

        _skip_package_init("vllm.v1.structured_output")
        from vllm.distributed.kv_events import (
            AllBlocksCleared,
            BlockRemoved,
            BlockStored,
            EventPublisher,
        )
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import SamplingParams
        from vllm.utils import get_hash_fn_by_name
        from vllm.v1.core import kv_cache_utils
        from vllm.v1.core.kv_cache_manager import KVCacheManager
        from vllm.v1.kv_cache_interface import (
            FullAttentionSpec,
            KVCacheConfig,
            KVCacheGroupSpec,
            SlidingWindowSpec,
        )
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
    V.CachingMetrics = kv_cache_utils.PrefixCachingMetrics
    V.Request = Request
    V.LoRARequest = LoRARequest
    V.BlockStored = BlockStored
    V.BlockRemoved = BlockRemoved
    V.AllBlocksCleared = AllBlocksCleared
    V.EventPublisher = EventPublisher
    V.loaded = True
    return V.version
