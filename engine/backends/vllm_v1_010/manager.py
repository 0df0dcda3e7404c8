"""V010Manager: the V1 adapter's manager (engine.backends.vllm_v1.manager.V1Manager) on vLLM
0.10.1.1's V1 KVCacheManager (worker side). engine.replay.sequential drives it exactly as
it drives V1Manager; every call whose API differs in 0.10.1.1 is bridged here:

1. ``KVCacheManager(...)`` takes no ``scheduler_block_size`` / ``hash_block_size`` (the
   block size is the KV cache spec's), and ``FullAttentionSpec`` requires ``use_mla``.
2. Block hashes are ``BlockHash(hash_value: int, token_ids, extra_keys)`` named tuples
   (0.33: bytes); with ``sha256`` the int is the 32-byte digest, which records carry as
   bytes, as 0.33's. ``BlockHashWithGroupId`` is a (BlockHash, group id) tuple, not
   hash bytes + 4 bytes of group. KV events carry the int hashes and no ``group_idx`` /
   ``medium``. Hash algorithms: 0.10.1.1 has ``sha256`` (prefix-tui's default, bridged),
   ``sha256_cbor_64bit`` and ``builtin``; 0.33's ``sha256_cbor`` and ``xxhash`` do not
   exist there (one line, no replay).
3. ``get_computed_blocks`` returns (blocks, hit tokens), no third value.
4. Prefix-cache stats are counted inside ``get_computed_blocks`` at every lookup (0.33:
   ``record_prefix_cache_stats`` at admission), so a request that then does not fit
   still counts its lookup; ``PrefixCacheStats`` has no preempted counts (always 0 here).
5. No ``new_step_starts`` (nothing to do at a step's start).
6. ``FreeKVCacheBlockQueue`` has no iterator: the free queue is walked from its fake head.
7. ``Request`` takes multimodal, pooling and eos arguments positionally before the
   sampling params: passed by keyword.
8. ``allocate_slots`` has no ``full_sequence_must_fit`` (0.33's admission gate) and
   ``get_computed_blocks`` no shared-prefix boundary: a sequential replay admits the
   whole prompt in one call, so the full sequence is what is allocated either way.
   ``--hf-config`` (vLLM 0.33's own KV cache planning) is not bridged: one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.backends.vllm_v1.imports import V
from engine.backends.vllm_v1.internals import AdapterMismatch
from engine.backends.vllm_v1.manager import (
    GroupIds,
    Lookup,
    V1Manager,
    default_groups,
    make_lookup,
)
from engine.backends.vllm_v1.stats import CacheTally
from engine.backends.vllm_v1.tenancy import request_kwargs
from engine.backends.vllm_v1_010.client import check_hash_algo
from engine.backends.vllm_v1_010.imports import TESTED_VLLM_VERSION, import_vllm_010
from engine.model import EventKind, KVEvent, Slot
from engine.settings import AttentionKind, EngineSettings

HASH_BYTES = 32  # sha256's digest: the int 0.10.1.1 keeps, as the bytes records carry


def hash_bytes(value: int) -> bytes:
    return value.to_bytes(HASH_BYTES, "big")


class Tally010(CacheTally):
    """0.10.1.1's PrefixCacheStats: requests, queries, hits (no preempted counts)."""

    def observe(self, stats: Any) -> None:
        self.recent.observe(stats)
        self.requests += stats.requests
        self.queries += stats.queries
        self.hits += stats.hits


def _slot(block: Any) -> Slot:
    key = block._block_hash  # BlockHashWithGroupId(BlockHash(hash_value, ...), group_id)
    if key is None:
        return Slot(block.ref_cnt, None)
    return Slot(block.ref_cnt, hash_bytes(key.block_hash.hash_value), key.group_id)


class V010Manager(V1Manager):
    """V1Manager's interface on vLLM 0.10.1.1 (see the module docstring for each bridge)."""

    def __init__(self, settings: EngineSettings, verbose: bool = False) -> None:
        settings.validate()
        check_hash_algo(settings)
        self.settings = settings
        self.groups = default_groups(settings)
        self.version = import_vllm_010(verbose)
        hash_fn = V.get_hash_fn_by_name(settings.hash_algo)
        # NONE_HASH: hash_fn(PYTHONHASHSEED), which the worker's client pins.
        V.kv_cache_utils.init_none_hash(hash_fn)
        self._block_hasher = V.kv_cache_utils.get_request_block_hasher(
            settings.block_size, hash_fn)
        manager = V.KVCacheManager(
            _kv_cache_config(settings),
            max_model_len=settings.effective_max_model_len,
            enable_caching=settings.enable_caching,
            log_stats=True,
            enable_kv_cache_events=settings.kv_events,
        )
        problems = check_manager_010(manager)
        if problems:
            raise AdapterMismatch(
                f"vLLM {self.version}'s V1 KV-cache manager differs from what prefix-tui's "
                f"0.10 bridge knows (tested with {TESTED_VLLM_VERSION}): "
                f"{'; '.join(problems)}")
        self._attach(manager)
        self.cache = Tally010()
        self._sampling = V.SamplingParams(max_tokens=1)

    def _attach(self, manager: Any) -> None:
        self.manager = manager
        self._pool = manager.block_pool
        self._blocks = self._pool.blocks
        self.null_block_id = self._pool.null_block.block_id

    # -- reads of the pool ----------------------------------------------------------------
    def slot(self, block_id: int) -> Slot:
        return _slot(self._blocks[block_id])

    def slots(self, block_ids: Iterable[int]) -> list[Slot]:
        blocks = self._blocks
        return [_slot(blocks[b]) for b in block_ids]

    def scan_pool(self) -> list[Slot]:
        return [_slot(b) for b in self._blocks]

    def slot_columns(self, block_ids: list[int]) -> tuple[list[int], list[Any]]:
        """(ref counts, hash keys) for the pool mirror; keys are BlockHashWithGroupId."""
        blocks = [self._blocks[b] for b in block_ids]
        return [b.ref_cnt for b in blocks], [b._block_hash for b in blocks]

    def decode_keys(self, keys) -> tuple[list[bytes | None], list[int]]:  # noqa: ANN001
        hashes = [None if k is None else hash_bytes(k.block_hash.hash_value) for k in keys]
        return hashes, [0 if k is None else k.group_id for k in keys]

    def free_queue(self, limit: int | None = None) -> list[int]:
        queue = self._pool.free_block_queue
        out: list[int] = []
        block = queue.fake_free_list_head.next_free_block
        while block is not None and block is not queue.fake_free_list_tail:
            if limit is not None and len(out) >= limit:
                break
            out.append(block.block_id)
            block = block.next_free_block
        return out

    def _held(self, hashes: tuple, group: int) -> list[bool]:
        # 0.10.1.1's hash map is a defaultdict keyed by BlockHashWithGroupId tuples: ask
        # its public get_cached_block hash by hash (is_cached).
        return [self.is_cached(h, group) for h in hashes]

    def is_cached(self, block_hash: Any, group: int = 0) -> bool:
        # block_hash is the request's own BlockHash (request_block_hash), not bytes.
        return self._pool.get_cached_block(block_hash, [group]) is not None

    # -- the calls, bridged ---------------------------------------------------------------
    def new_request(self, seq_id: str, prompt_token_ids, arrival_time: float, *,
                    cache_salt: str | None = None, lora_name: str | None = None) -> Any:
        return V.Request(
            request_id=seq_id, prompt_token_ids=list(prompt_token_ids),
            multi_modal_kwargs=None, multi_modal_hashes=None, multi_modal_placeholders=None,
            sampling_params=self._sampling, pooling_params=None, eos_token_id=None,
            arrival_time=arrival_time, block_hasher=self._block_hasher,
            **request_kwargs(cache_salt, lora_name),
        )

    def new_step(self) -> None:
        pass  # 0.10.1.1 has no new_step_starts

    def lookup(self, request: Any, detail: bool = True) -> Lookup:
        blocks, num_hit_tokens = self.manager.get_computed_blocks(request)
        return make_lookup(blocks, num_hit_tokens, detail)

    def allocate(self, request: Any, num_new_tokens: int, lookup: Lookup | None = None
                 ) -> GroupIds | None:
        if lookup is None:
            new = self.manager.allocate_slots(request, num_new_tokens)
        else:  # no full_sequence_must_fit: the prompt is admitted whole here anyway
            new = self.manager.allocate_slots(
                request, num_new_tokens, lookup.num_hit_tokens, lookup.blocks)
        if new is None:
            return None
        return tuple(tuple(b.block_id for b in g) for g in new.blocks)

    def record_stats(self, request: Any, num_hits: int) -> None:
        pass  # counted by get_computed_blocks in 0.10.1.1

    def take_events(self) -> tuple[KVEvent, ...]:
        return convert_events(self._drain())


def convert_events(raw: Iterable[Any]) -> tuple[KVEvent, ...]:
    """0.10.1.1's KV events: int hashes, no group or medium."""
    out: list[KVEvent] = []
    for ev in raw:
        if isinstance(ev, V.BlockRemoved):
            out.append(KVEvent(EventKind.REMOVED, tuple(map(hash_bytes, ev.block_hashes))))
        elif isinstance(ev, V.BlockStored):
            parent = ev.parent_block_hash
            out.append(KVEvent(EventKind.STORED, tuple(map(hash_bytes, ev.block_hashes)),
                               hash_bytes(parent) if parent is not None else None,
                               len(ev.token_ids)))
        elif isinstance(ev, V.AllBlocksCleared):
            out.append(KVEvent(EventKind.CLEARED))
        else:
            raise AdapterMismatch(
                f"vLLM {V.version} emitted a KV event prefix-tui does not know "
                f"({type(ev).__name__}; tested with {TESTED_VLLM_VERSION})")
    return tuple(out)


def _kv_cache_config(settings: EngineSettings) -> Any:
    common = dict(block_size=settings.block_size, num_kv_heads=1, head_size=1,
                  dtype=V.torch.float16, use_mla=False)
    groups = []
    for g in settings.layout.groups:
        spec = (V.SlidingWindowSpec(sliding_window=g.sliding_window, **common)
                if g.kind is AttentionKind.SLIDING_WINDOW else V.FullAttentionSpec(**common))
        groups.append(V.KVCacheGroupSpec(list(g.layer_names), spec))
    return V.KVCacheConfig(num_blocks=settings.num_blocks, kv_cache_tensors=[],
                           kv_cache_groups=groups)


def check_manager_010(manager: Any) -> list[str]:
    """Every private read above, on a live manager; empty when all is there."""
    problems: list[str] = []
    try:
        pool = manager.block_pool
        block = pool.blocks[-1]
        if not isinstance(block.ref_cnt, int) or not hasattr(block, "_block_hash"):
            problems.append("KVCacheBlock.ref_cnt / _block_hash")
        pool.null_block.block_id
        queue = pool.free_block_queue
        if queue.fake_free_list_head.next_free_block is None:
            problems.append("FreeKVCacheBlockQueue.fake_free_list_head is not linked")
        queue.fake_free_list_tail
        for name in ("get_computed_blocks", "allocate_slots", "free", "get_block_ids",
                     "make_prefix_cache_stats", "take_events"):
            if not callable(getattr(manager, name, None)):
                problems.append(f"KVCacheManager.{name} is missing")
        if not callable(getattr(pool, "get_cached_block", None)):
            problems.append("BlockPool.get_cached_block is missing")
        if "hash_value" not in getattr(V.kv_cache_utils.BlockHash, "_fields", ()):
            problems.append("kv_cache_utils.BlockHash has no hash_value")
    except (AttributeError, TypeError, IndexError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems
