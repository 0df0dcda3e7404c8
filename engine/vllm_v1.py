"""The one module that touches vLLM (V1 KV-cache manager, vLLM 0.33.0).

Everything above this speaks in plain data. Reads of vLLM internals that are not part of
the manager's public methods are gathered in ``_Internals`` and checked by
``check_internals()`` at start-up and by tests/test_vllm_adapter.py, so a vLLM upgrade that
moves them fails loudly with the version named instead of showing wrong numbers.

vLLM is imported lazily (``import_vllm``): it takes seconds, and the TUI must draw first.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.records import KVEvent, Slot

TESTED_VLLM_VERSION = "0.33.0"
HASH_ALGOS = ("sha256", "sha256_cbor", "xxhash", "xxhash_cbor")  # vLLM's PrefixCachingHashAlgo
DEFAULT_HASH_ALGO = "sha256"  # vLLM's CacheConfig default


class AdapterMismatch(UserError):
    """The installed vLLM's internals differ from what this adapter reads."""


@dataclass(frozen=True)
class EngineSettings:
    block_size: int = 16
    num_blocks: int = 10000
    max_model_len: int | None = None  # None: bounded only by the pool
    enable_caching: bool = True
    hash_algo: str = DEFAULT_HASH_ALGO
    kv_events: bool = True

    @property
    def effective_max_model_len(self) -> int:
        if self.max_model_len is not None:
            return self.max_model_len
        # What vLLM's start-up check lets through: every block but the null block.
        return self.block_size * (self.num_blocks - 1)

    def validate(self) -> None:
        if self.block_size < 1:
            raise UserError(f"--block-size must be >= 1 (got {self.block_size})")
        if self.num_blocks < 2:
            # vLLM keeps block 0 as its null block; one more is the least that can hold a token.
            raise UserError(f"--num-gpu-blocks-override must be >= 2 (got {self.num_blocks})")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise UserError(f"--max-model-len must be >= 1 (got {self.max_model_len})")
        if self.hash_algo not in HASH_ALGOS:
            raise UserError(
                f"--prefix-caching-hash-algo must be one of {', '.join(HASH_ALGOS)} "
                f"(got {self.hash_algo!r})"
            )


_vllm: dict[str, Any] = {}


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
    if _vllm:
        return _vllm["version"]
    if not verbose:
        quiet_environment()
    # vLLM's KV events then carry the same full hash bytes as the blocks, instead of a
    # 64-bit digest, so an event can be matched to a block.
    os.environ.setdefault("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES", "0")
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        import torch
        import vllm
        from vllm.sampling_params import SamplingParams
        from vllm.utils.hashing import get_hash_fn_by_name
        from vllm.v1.core import kv_cache_utils
        from vllm.v1.core.kv_cache_manager import KVCacheManager
        from vllm.v1.kv_cache_interface import (
            FullAttentionSpec,
            KVCacheConfig,
            KVCacheGroupSpec,
        )
        from vllm.v1.metrics.stats import CachingMetrics
        from vllm.v1.request import Request
        from vllm.distributed.kv_events import AllBlocksCleared, BlockRemoved, BlockStored
    _vllm.update(
        version=vllm.__version__,
        torch=torch,
        SamplingParams=SamplingParams,
        get_hash_fn_by_name=get_hash_fn_by_name,
        kv_cache_utils=kv_cache_utils,
        KVCacheManager=KVCacheManager,
        FullAttentionSpec=FullAttentionSpec,
        KVCacheConfig=KVCacheConfig,
        KVCacheGroupSpec=KVCacheGroupSpec,
        CachingMetrics=CachingMetrics,
        Request=Request,
        BlockStored=BlockStored,
        BlockRemoved=BlockRemoved,
        AllBlocksCleared=AllBlocksCleared,
    )
    return _vllm["version"]


def vllm_symbols() -> dict[str, Any]:
    """The imported vLLM names, for engine modules that build vLLM's own objects."""
    import_vllm()
    return _vllm


class _Internals:
    """Every read of a vLLM attribute that is not a public KVCacheManager method."""

    @staticmethod
    def block_pool(manager: Any) -> Any:
        return manager.block_pool

    @staticmethod
    def blocks(pool: Any) -> list:
        return pool.blocks

    @staticmethod
    def slot(block: Any) -> Slot:
        # vLLM keys the cache by hash + 4 bytes of group id; records keep the bare hash,
        # the same bytes vLLM's KV events carry.
        key = block.block_hash
        return (block.ref_cnt, key[:-4] if key is not None else None)

    @staticmethod
    def null_block_id(pool: Any) -> int:
        return pool.null_block.block_id

    @staticmethod
    def free_queue_iter(pool: Any):
        return pool.free_block_queue.iter_blocks_after(None)


def check_internals(manager: Any) -> list[str]:
    """What this adapter reads from vLLM, checked on a live manager. Empty when all is well."""
    problems: list[str] = []
    try:
        pool = _Internals.block_pool(manager)
        blocks = _Internals.blocks(pool)
        ref_cnt, block_hash = _Internals.slot(blocks[-1])
        if not isinstance(ref_cnt, int):
            problems.append("KVCacheBlock.ref_cnt is not an int")
        if block_hash is not None and not isinstance(block_hash, bytes):
            problems.append("KVCacheBlock.block_hash is not bytes")
        _Internals.null_block_id(pool)
        next(iter(_Internals.free_queue_iter(pool)), None)
        for name in ("get_cached_block", "get_num_free_blocks", "take_events"):
            if not callable(getattr(pool, name, None)):
                problems.append(f"BlockPool.{name} is missing")
        for name in (
            "get_computed_blocks",
            "allocate_slots",
            "free",
            "record_prefix_cache_stats",
            "make_prefix_cache_stats",
            "get_block_ids",
            "take_events",
            "new_step_starts",
        ):
            if not callable(getattr(manager, name, None)):
                problems.append(f"KVCacheManager.{name} is missing")
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of vLLM's get_computed_blocks, plus the ref counts it saw."""

    blocks: Any  # vLLM KVCacheBlocks, passed back to allocate_slots unchanged
    block_ids: tuple[int, ...]
    ref_cnts: tuple[int, ...]  # before allocate touches them: 0 = hit from the free queue
    num_hit_tokens: int


class CacheTally:
    """vLLM's PrefixCacheStats summed over a run (tokens), plus vLLM's own CachingMetrics
    window over the last 1,000 requests, as its logger reports it. Both backends use it."""

    def __init__(self) -> None:
        self.recent = vllm_symbols()["CachingMetrics"](max_recent_requests=1000)
        self.requests = self.queries = self.hits = 0
        self.preempted_requests = self.preempted_queries = self.preempted_hits = 0

    def observe(self, stats: Any) -> None:
        self.recent.observe(stats)
        self.requests += stats.requests
        self.queries += stats.queries
        self.hits += stats.hits
        self.preempted_requests += stats.preempted_requests
        self.preempted_queries += stats.preempted_queries
        self.preempted_hits += stats.preempted_hits

    def totals_fields(self) -> dict[str, int]:
        """The vLLM-sourced fields of engine.records.Totals."""
        return dict(
            queries=self.queries,
            hits=self.hits,
            recent_queries=self.recent.aggregated_query_total,
            recent_hits=self.recent.aggregated_query_hit,
            preempted_queries=self.preempted_queries,
            preempted_hits=self.preempted_hits,
        )


class PoolReader:
    """Reads of vLLM's pool shared by both backends (the manager here, the scheduler's
    manager in engine.vllm_v1_sched); subclasses set ``manager``, ``_pool``, ``_blocks``
    and ``null_block_id``."""

    manager: Any
    _pool: Any
    _blocks: list
    null_block_id: int

    def block_ids(self, seq_id: str) -> list[int]:
        ids = self.manager.get_block_ids(seq_id)
        return list(ids[0]) if ids else []

    def slot(self, block_id: int) -> Slot:
        return _Internals.slot(self._blocks[block_id])

    def slots(self, block_ids) -> list[Slot]:
        slot, blocks = _Internals.slot, self._blocks
        return [slot(blocks[i]) for i in block_ids]

    def scan_pool(self) -> list[Slot]:
        """Every block's slot, read straight from vLLM (tests and the first snapshot)."""
        return [_Internals.slot(b) for b in self._blocks]

    def free_queue(self, limit: int | None = None) -> list[int]:
        out: list[int] = []
        for block in _Internals.free_queue_iter(self._pool):
            if limit is not None and len(out) >= limit:
                break
            out.append(block.block_id)
        return out

    def num_free_blocks(self) -> int:
        return self._pool.get_num_free_blocks()


class V1Backend(PoolReader):
    """Owns one real vLLM KVCacheManager with a single full-attention group."""

    def __init__(self, settings: EngineSettings, verbose: bool = False) -> None:
        settings.validate()
        self.settings = settings
        self.version = import_vllm(verbose)
        v = _vllm
        bs = settings.block_size
        hash_fn = v["get_hash_fn_by_name"](settings.hash_algo)
        v["kv_cache_utils"].init_none_hash(hash_fn)
        self._block_hasher = v["kv_cache_utils"].get_request_block_hasher(bs, hash_fn)
        spec = v["FullAttentionSpec"](
            block_size=bs, num_kv_heads=1, head_size=1, dtype=v["torch"].float16
        )
        config = v["KVCacheConfig"](
            num_blocks=settings.num_blocks,
            kv_cache_tensors=[],
            kv_cache_groups=[v["KVCacheGroupSpec"](["layer.0"], spec)],
        )
        self.manager = v["KVCacheManager"](
            config,
            max_model_len=settings.effective_max_model_len,
            scheduler_block_size=bs,
            hash_block_size=bs,
            enable_caching=settings.enable_caching,
            log_stats=True,
            enable_kv_cache_events=settings.kv_events,
        )
        problems = check_internals(self.manager)
        if problems:
            raise AdapterMismatch(
                f"vLLM {self.version} differs from what prefix-tui's adapter knows "
                f"(tested with {TESTED_VLLM_VERSION}): {'; '.join(problems)}"
            )
        self._pool = _Internals.block_pool(self.manager)
        self._blocks = _Internals.blocks(self._pool)
        self.null_block_id = _Internals.null_block_id(self._pool)
        self.cache = CacheTally()
        self._sampling = v["SamplingParams"](max_tokens=1)

    # -- building requests ---------------------------------------------------------------
    @staticmethod
    def make_block_hasher(block_size: int, hash_algo: str):
        v = vllm_symbols()
        return v["kv_cache_utils"].get_request_block_hasher(
            block_size, v["get_hash_fn_by_name"](hash_algo)
        )

    def new_request(self, seq_id: str, prompt_token_ids, arrival_time: float, max_tokens: int = 1):
        params = self._sampling if max_tokens == 1 else _vllm["SamplingParams"](max_tokens=max_tokens)
        return _vllm["Request"](
            seq_id,
            list(prompt_token_ids),
            params,
            None,
            arrival_time=arrival_time,
            block_hasher=self._block_hasher,
        )

    # -- the calls vLLM's scheduler makes ------------------------------------------------
    def new_step(self) -> None:
        self.manager.new_step_starts()

    def lookup(self, request, detail: bool = True) -> Lookup:
        """vLLM's get_computed_blocks. Without detail, block ids and ref counts are not
        read (a long prompt's hit list is hundreds of blocks; headless needs only counts)."""
        blocks, num_hit_tokens, _boundary = self.manager.get_computed_blocks(request)
        group = blocks.blocks[0] if blocks.blocks else ()
        if not detail:
            return Lookup(blocks, (), (), num_hit_tokens)
        return Lookup(
            blocks=blocks,
            block_ids=tuple(b.block_id for b in group),
            ref_cnts=tuple(b.ref_cnt for b in group),
            num_hit_tokens=num_hit_tokens,
        )

    def allocate(self, request, num_new_tokens: int, lookup: Lookup | None = None):
        """vLLM's allocate_slots; returns the new block ids, or None when it did not fit."""
        if lookup is None:
            new = self.manager.allocate_slots(request, num_new_tokens)
        else:
            new = self.manager.allocate_slots(
                request, num_new_tokens, lookup.num_hit_tokens, lookup.blocks
            )
        if new is None:
            return None
        return [b.block_id for b in new.blocks[0]] if new.blocks else []

    def record_stats(self, request, num_hits: int) -> None:
        self.manager.record_prefix_cache_stats(request, num_hits)

    def take_cache_stats(self):
        """Drain vLLM's PrefixCacheStats into the cumulative counters and the window."""
        stats = self.manager.make_prefix_cache_stats()
        if stats is not None:
            self.cache.observe(stats)
        return stats

    def free(self, request) -> None:
        self.manager.free(request)

    def take_removed_count(self) -> int:
        """Drain vLLM's KV events, counting only evicted hashes (headless fast path)."""
        removed = _vllm["BlockRemoved"]
        return sum(
            len(ev.block_hashes) for ev in self.manager.take_events() if isinstance(ev, removed)
        )

    def take_events(self) -> list[KVEvent]:
        out: list[KVEvent] = []
        stored, removed = _vllm["BlockStored"], _vllm["BlockRemoved"]
        for ev in self.manager.take_events():
            if isinstance(ev, stored):
                out.append(
                    KVEvent("stored", tuple(ev.block_hashes), ev.parent_block_hash, len(ev.token_ids))
                )
            elif isinstance(ev, removed):
                out.append(KVEvent("removed", tuple(ev.block_hashes)))
            else:
                out.append(KVEvent("cleared"))
        return out

    def is_cached(self, block_hash: bytes) -> bool:
        return self._pool.get_cached_block(block_hash, [0]) is not None

    @staticmethod
    def request_block_hash(request, index: int) -> bytes | None:
        hashes = request.block_hashes
        return hashes[index] if index < len(hashes) else None

    @staticmethod
    def num_computed_tokens(request) -> int:
        return request.num_computed_tokens

    @staticmethod
    def set_num_computed_tokens(request, n: int) -> None:
        request.num_computed_tokens = n

    @staticmethod
    def append_output(request, token_ids) -> None:
        request.append_output_token_ids(token_ids)
