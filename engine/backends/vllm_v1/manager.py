"""V1Manager: one real vLLM KVCacheManager, driven with the calls vLLM's scheduler makes.

Everything above this speaks in plain data (engine.model); vLLM objects (a Request, the
KVCacheBlocks of a lookup) only pass back into the methods here unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.backends.vllm_v1 import events
from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, V, import_vllm
from engine.backends.vllm_v1.internals import (
    PoolInternals,
    RequestInternals,
    SlotReader,
    check_manager,
    ensure,
)
from engine.backends.vllm_v1.hybrid import plan_kv_cache
from engine.backends.vllm_v1.kv_config import build_kv_cache_config
from engine.backends.vllm_v1.kvstream import EventTap
from engine.backends.vllm_v1.stats import CacheTally
from engine.backends.vllm_v1.tenancy import request_kwargs
from engine.model import KVEvent, KVGroupInfo, Rows, Slot, TraceRequest
from engine.replay.miss_reasons import SeenLookup
from engine.settings import EngineSettings

GroupIds = tuple[tuple[int, ...], ...]  # block ids per KV cache group
GroupCounts = tuple[tuple[int, int], ...]  # per group: (real cached blocks, null places)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of vLLM's get_computed_blocks, plus the ref counts it saw."""

    blocks: Any  # vLLM KVCacheBlocks, passed back to allocate_slots unchanged
    block_ids: GroupIds
    ref_cnts: GroupIds  # before allocate touches them: 0 = hit from the free queue
    num_hit_tokens: int
    # Per group (several groups only): (real cached blocks, null-block placeholders).
    group_counts: GroupCounts = ()


def _real_and_null(blocks: Any) -> tuple[int, int]:
    null = sum(1 for b in blocks if b.is_null)
    return len(blocks) - null, null


def group_counts(blocks: Any) -> GroupCounts:
    """Per group of a lookup's KVCacheBlocks: (real cached blocks, null-block places)."""
    return tuple(_real_and_null(g) for g in blocks.blocks)


def make_lookup(blocks: Any, num_hit_tokens: int, detail: bool) -> Lookup:
    """A Lookup from get_computed_blocks' KVCacheBlocks (both releases' adapters)."""
    groups = blocks.blocks
    counts: GroupCounts = group_counts(blocks) if len(groups) > 1 else ()
    if not detail:
        return Lookup(blocks, (), (), num_hit_tokens, counts)
    return Lookup(
        blocks=blocks,
        block_ids=tuple(tuple(b.block_id for b in g) for g in groups),
        ref_cnts=tuple(tuple(b.ref_cnt for b in g) for g in groups),
        num_hit_tokens=num_hit_tokens,
        group_counts=counts,
    )


def default_groups(settings: EngineSettings) -> tuple[KVGroupInfo, ...]:
    """The hand-built layout's groups (engine.settings.KVLayout.groups)."""
    return tuple(
        KVGroupInfo(i, g.kind.value, g.sliding_window, settings.block_size,
                    len(g.layer_names), g.layer_names[0] if g.layer_names else "")
        for i, g in enumerate(settings.layout.groups)
    )


class PoolReader:
    """Reads of vLLM's pool shared by both backends (this manager, and the one vLLM's
    scheduler builds); subclasses call ``_attach(manager)``."""

    manager: Any
    null_block_id: int
    tap: EventTap | None = None  # vLLM's raw events, also kept for an event export
    settings: EngineSettings
    groups: tuple[KVGroupInfo, ...]
    _block_hasher: Any  # vLLM's request block hasher (None with prefix caching off)

    def _attach(self, manager: Any) -> None:
        self.manager = manager
        self._pool = PoolInternals.block_pool(manager)
        self._blocks = PoolInternals.blocks(self._pool)
        self._reader = SlotReader(self._blocks, PoolInternals.num_groups(manager))
        self.null_block_id = PoolInternals.null_block_id(self._pool)

    def block_tables(self, seq_id: str) -> GroupIds:
        return tuple(tuple(ids) for ids in self.manager.get_block_ids(seq_id))

    def slot(self, block_id: int) -> Slot:
        return PoolInternals.slot(self._blocks[block_id])

    def slots(self, block_ids: Iterable[int]) -> list[Slot]:
        return self._reader.read(block_ids)

    def num_blocks(self) -> int:
        return len(self._blocks)

    def slot_columns(self, block_ids: list[int]) -> tuple[list[int], list[Any]]:
        """(ref counts, hash keys): the pool mirror's reads (engine.replay.pool_mirror)."""
        return self._reader.columns(block_ids)

    def decode_keys(self, keys) -> tuple[list[bytes | None], list[int]]:
        return self._reader.decode(keys)

    def scan_pool(self) -> list[Slot]:
        """Every block's slot, read straight from vLLM (tests and the first snapshot)."""
        return [PoolInternals.slot(b) for b in self._blocks]

    def free_queue(self, limit: int | None = None) -> list[int]:
        out: list[int] = []
        for block in PoolInternals.free_queue_iter(self._pool):
            if limit is not None and len(out) >= limit:
                break
            out.append(block.block_id)
        return out

    def num_free_blocks(self) -> int:
        return self._pool.get_num_free_blocks()

    def is_cached(self, block_hash: bytes, group: int = 0) -> bool:
        return self._pool.get_cached_block(block_hash, [group]) is not None

    @property
    def reason_group(self) -> int | None:
        """The KV cache group whose hash map miss reasons read: the first full-attention
        group hashed at the block size (None: there is none, no reasons)."""
        for g in self.groups:
            if g.kind == "full" and g.block_size == self.settings.block_size:
                return g.index
        return None

    def prompt_hashes(self, req: TraceRequest) -> tuple[bytes, ...]:
        """vLLM's block hashes of a trace request's prompt (its salt and adapter in them),
        from vLLM's own Request and block hasher (a router compares replicas with them)."""
        if self._block_hasher is None:
            return ()
        r = V.Request("route", list(req.prompt_token_ids), V.SamplingParams(max_tokens=1),
                      None, block_hasher=self._block_hasher,
                      **request_kwargs(req.cache_salt, req.lora_name))
        return tuple(r.block_hashes)

    def cached_prefix(self, hashes) -> int:
        """How many of ``hashes``, from the first, vLLM's hash map holds now (in the first
        full-attention group)."""
        get, group = self._pool.get_cached_block, [self.reason_group or 0]
        n = 0
        for h in hashes:
            if get(h, group) is None:
                break
            n += 1
        return n

    def _held(self, hashes: tuple, group: int) -> list[bool]:
        """For each hash, whether vLLM's hash map holds it in ``group``."""
        return PoolInternals.held(self._pool, hashes, group)

    def seen_lookup(self, request: Any, num_hit_tokens: int, content: bool) -> SeenLookup:
        """What vLLM's hash map holds now for a request's prompt blocks past its hit
        (call at the lookup: engine.replay.miss_reasons). ``content``: also hash the same
        tokens without salt or adapter, with vLLM's own block hasher."""
        bs = self.settings.block_size
        full = request.num_prompt_tokens // bs
        hashes = tuple(request.block_hashes[:full])
        start = min(num_hit_tokens // bs, len(hashes))
        cached = tuple(self._held(hashes[start:], self.reason_group or 0))
        plain = None
        if content:
            bare = V.Request("content", list(request.prompt_token_ids),
                             V.SamplingParams(max_tokens=1), None,
                             block_hasher=self._block_hasher)
            plain = tuple(bare.block_hashes[:full])
        return SeenLookup(hashes, start, cached, plain)


class V1Manager(PoolReader):
    """Owns one real vLLM KVCacheManager with the settings' KV layout."""

    def __init__(self, settings: EngineSettings, verbose: bool = False) -> None:
        settings.validate()
        self.version = import_vllm(verbose)
        bs = settings.block_size
        extra: dict[str, Any] = {}
        if settings.layout.from_model:
            # vLLM's own grouping and sizing (engine.backends.vllm_v1.hybrid); its
            # max_model_len (auto-fit) comes back in the plan's settings.
            plan = plan_kv_cache(settings)
            settings, kv_cache_config = plan.settings, plan.kv_cache_config
            self.groups: tuple[KVGroupInfo, ...] = plan.groups
            # As vLLM's Scheduler builds its KVCacheManager.
            extra["max_in_flight_tokens"] = plan.max_in_flight_tokens
        else:
            kv_cache_config = build_kv_cache_config(settings)
            self.groups = default_groups(settings)
        self.settings = settings
        hash_fn = V.get_hash_fn_by_name(settings.hash_algo)
        V.kv_cache_utils.init_none_hash(hash_fn)
        self._block_hasher = V.kv_cache_utils.get_request_block_hasher(bs, hash_fn)
        manager = V.KVCacheManager(
            kv_cache_config,
            max_model_len=settings.effective_max_model_len,
            scheduler_block_size=bs,
            hash_block_size=bs,
            enable_caching=settings.enable_caching,
            log_stats=True,
            enable_kv_cache_events=settings.kv_events,
            **extra,
        )
        ensure(check_manager(manager), "KV-cache manager", self.version, TESTED_VLLM_VERSION)
        self._attach(manager)
        self.cache = CacheTally()
        self._sampling = V.SamplingParams(max_tokens=1)

    # -- building requests ---------------------------------------------------------------
    def new_request(self, seq_id: str, prompt_token_ids, arrival_time: float, *,
                    cache_salt: str | None = None, lora_name: str | None = None) -> Any:
        """A vLLM Request; ``cache_salt`` and ``lora_name`` enter its block hashes."""
        return V.Request(
            seq_id, list(prompt_token_ids), self._sampling, None,
            arrival_time=arrival_time, block_hasher=self._block_hasher,
            **request_kwargs(cache_salt, lora_name),
        )

    # -- the calls vLLM's scheduler makes ------------------------------------------------
    def new_step(self) -> None:
        self.manager.new_step_starts()

    def lookup(self, request: Any, detail: bool = True) -> Lookup:
        """vLLM's get_computed_blocks. Without detail, block ids and ref counts are not
        read (a long prompt's hit list is hundreds of blocks; headless needs only counts)."""
        blocks, num_hit_tokens, boundary = self.manager.get_computed_blocks(request)
        # The scheduler keeps the shared-prefix junction on the request
        # (Scheduler._get_local_prefix_cache_hit); sliding-window groups retain the
        # blocks reachable from it when they cache this request's blocks.
        RequestInternals.set_shared_prefix_boundary(request, boundary)
        return make_lookup(blocks, num_hit_tokens, detail)

    def allocate(self, request: Any, num_new_tokens: int, lookup: Lookup | None = None
                 ) -> GroupIds | None:
        """vLLM's allocate_slots: the new block ids per group, or None when it did not fit."""
        if lookup is None:
            new = self.manager.allocate_slots(request, num_new_tokens)
        else:
            # Admission, as the scheduler calls it (scheduler_reserve_full_isl: the
            # whole prompt must fit, sliding windows and hits accounted for).
            new = self.manager.allocate_slots(
                request, num_new_tokens, lookup.num_hit_tokens, lookup.blocks,
                full_sequence_must_fit=True,
            )
        if new is None:
            return None
        return tuple(tuple(b.block_id for b in g) for g in new.blocks)

    def record_stats(self, request: Any, num_hits: int) -> None:
        self.manager.record_prefix_cache_stats(request, num_hits)

    def take_cache_stats(self) -> None:
        """Drain vLLM's PrefixCacheStats into the cumulative counters and the window."""
        stats = self.manager.make_prefix_cache_stats()
        if stats is not None:
            self.cache.observe(stats)

    def free(self, request: Any) -> None:
        self.manager.free(request)

    def _drain(self) -> list:
        raw = self.manager.take_events()
        if self.tap is not None:
            self.tap.events.extend(raw)  # --export-events / --serve-events (kvstream)
        return raw

    def take_removed_count(self) -> int:
        return events.count_removed(self._drain())

    def take_events(self) -> Rows[KVEvent]:
        return events.convert(self._drain())

    def take_hashes(self) -> tuple[list[bytes], list[bytes], int]:
        """Drain the KV events: (stored hashes, removed hashes) of the group miss reasons
        read, and the hashes removed in every group."""
        return events.hashes(self._drain(), self.reason_group or 0)

    # -- the request's state --------------------------------------------------------------
    @staticmethod
    def request_block_hash(request: Any, index: int) -> bytes | None:
        hashes = request.block_hashes
        return hashes[index] if index < len(hashes) else None

    @staticmethod
    def num_computed_tokens(request: Any) -> int:
        return request.num_computed_tokens

    @staticmethod
    def set_num_computed_tokens(request: Any, n: int) -> None:
        request.num_computed_tokens = n

    @staticmethod
    def append_output(request: Any, token_ids) -> None:
        request.append_output_token_ids(token_ids)
