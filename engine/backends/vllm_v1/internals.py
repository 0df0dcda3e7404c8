"""Every read of a vLLM attribute that is not public API, and the two writes (the event
publisher, and a wrapper around the scheduler's prefix lookups that only observes them).

``check_manager`` / ``check_scheduler`` run at start-up on the live objects and
tests/test_vllm_adapter.py runs them too, so a vLLM upgrade that moves any of these fails
loudly, naming the installed vLLM, instead of showing wrong numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple

from engine.errors import UserError
from engine.model import Slot
from engine.tier_records import CPU_EVICTABLE, CPU_LOADING, CPU_WRITE_PENDING

_HASH_KEY_GROUP_BYTES = 4  # vLLM's BlockHashWithGroupId: hash bytes + 4-byte group id
_REF = attrgetter("ref_cnt")  # KVCacheBlock's fields
_KEY = attrgetter("_block_hash")


class AdapterMismatch(UserError):
    """The installed vLLM's internals differ from what this adapter reads."""


class PoolInternals:
    """vLLM's BlockPool and KVCacheBlock."""

    @staticmethod
    def block_pool(manager: Any) -> Any:
        return manager.block_pool

    @staticmethod
    def blocks(pool: Any) -> list:
        return pool.blocks

    @staticmethod
    def slot(block: Any) -> Slot:
        # vLLM keys the cache by hash + 4 bytes of group id (kv_cache_utils'
        # make_block_hash_with_group_id); records keep the bare hash, the bytes vLLM's KV
        # events carry, and the group apart.
        key = block.block_hash
        if key is None:
            return Slot(block.ref_cnt, None)
        return Slot(block.ref_cnt, key[:-_HASH_KEY_GROUP_BYTES],
                    int.from_bytes(key[-_HASH_KEY_GROUP_BYTES:], "big"))

    @staticmethod
    def num_groups(manager: Any) -> int:
        return manager.num_kv_cache_groups

    @staticmethod
    def null_block_id(pool: Any) -> int:
        return pool.null_block.block_id

    @staticmethod
    def free_queue_iter(pool: Any) -> Iterator[Any]:
        return pool.free_block_queue.iter_blocks_after(None)

    @staticmethod
    def held(pool: Any, block_hashes: Sequence[bytes], group: int) -> list[bool]:
        """For each bare hash, whether vLLM's hash map holds a block under it in ``group``:
        what get_cached_block(h, [group]) is not None says, for a whole prompt at C speed
        (miss reasons ask it for every block past the hit). BlockHashToBlockMap drops a key
        when its last block leaves, so a key is present exactly while a block is cached."""
        suffix = group.to_bytes(_HASH_KEY_GROUP_BYTES, "big")
        cache = pool.cached_block_hash_to_block._cache
        return list(map(cache.__contains__, map(bytes.__add__, block_hashes, repeat(suffix))))

    @staticmethod
    def cached_block_ids(pool: Any, block_hash: bytes, group: int) -> tuple[int, ...]:
        """Every block vLLM's hash map holds for a bare hash in one group (its public
        get_cached_block returns only the first of duplicates). BlockHashToBlockMap keeps a
        block, or a {block_id: block} dict for duplicates, under hash + 4-byte group id."""
        key = block_hash + group.to_bytes(_HASH_KEY_GROUP_BYTES, "big")
        entry = pool.cached_block_hash_to_block._cache.get(key)
        if entry is None:
            return ()
        if isinstance(entry, dict):
            return tuple(entry)
        return (entry.block_id,)


class SlotReader:
    """Reads many blocks fast (a detailed replay reads thousands a step): ref counts and hash
    keys as columns, in C (attrgetter over KVCacheBlock's fields; its block_hash is a
    Python-level property over _block_hash). A key is vLLM's BlockHashWithGroupId: a new
    bytes object each time vLLM caches a block, which is what tells the mirror a block was
    cached anew. ``decode`` splits keys into the bare hash and the group."""

    def __init__(self, blocks: list, num_groups: int) -> None:
        self._blocks = blocks
        self._num_groups = num_groups

    def columns(self, block_ids: list[int]) -> tuple[list[int], list[Any]]:
        blocks = list(map(self._blocks.__getitem__, block_ids))
        return list(map(_REF, blocks)), list(map(_KEY, blocks))

    def decode(self, keys: Sequence[Any]) -> tuple[list[bytes | None], list[int]]:
        cut = -_HASH_KEY_GROUP_BYTES
        hashes = [None if k is None else k[:cut] for k in keys]
        if self._num_groups == 1:  # every key's group is 0: skip decoding it
            return hashes, [0] * len(keys)
        groups = [0 if k is None else int.from_bytes(k[cut:], "big") for k in keys]
        return hashes, groups

    def read(self, block_ids: Iterable[int]) -> list[Slot]:
        ids = block_ids if isinstance(block_ids, list) else list(block_ids)
        refs, keys = self.columns(ids)
        hashes, groups = self.decode(keys)
        return list(map(Slot, refs, hashes, groups))


class SchedInternals:
    """vLLM's Scheduler and Request, beyond SchedulerOutput / EngineCoreOutputs."""

    @staticmethod
    def manager(sched: Any) -> Any:
        return sched.kv_cache_manager

    @staticmethod
    def running(sched: Any) -> list:
        return sched.running

    @staticmethod
    def waiting_ids(sched: Any) -> list[str]:
        # Requests that hold blocks while waiting (connectors, streaming) are drained first.
        out = [r.request_id for r in sched.kv_holding_waiting]
        out.extend(r.request_id for r in sched.waiting)
        return out

    @staticmethod
    def request(sched: Any, seq_id: str) -> Any:
        return sched.requests.get(seq_id)

    @staticmethod
    def is_prefill_chunk(request: Any) -> bool:
        # Set by the scheduler when it schedules: the chunk does not reach the end of the
        # known tokens, so the model runner discards what it samples.
        return request.is_prefill_chunk

    @staticmethod
    def progress(request: Any) -> tuple[int, int]:
        """(num_tokens, num_computed_tokens); computed includes in-flight placeholders."""
        return request.num_tokens, request.num_computed_tokens

    @staticmethod
    def external_cached_tokens(request: Any) -> int | None:
        """The tokens vLLM's scheduler set as loaded through its KV connector (the CPU
        tier) when it looked the request's prefix up: its PrefillStats, held on the
        Request until its first output takes them (None then, or after a preemption)."""
        stats = request.prefill_stats
        return None if stats is None else stats.num_external_cached_tokens

    @staticmethod
    def observe_lookups(sched: Any, seen: Any) -> None:
        """Call ``seen(request, num_hit_tokens, blocks)`` right after each prefix lookup
        vLLM's scheduler makes (``schedule()`` calls its manager's ``get_computed_blocks``
        for every request it tries to admit; ``blocks`` is the KVCacheBlocks it returned,
        one list per KV cache group): the one write to vLLM's objects besides the event
        publisher. The lookup itself is vLLM's, unchanged."""
        manager = sched.kv_cache_manager
        lookup = manager.get_computed_blocks

        def get_computed_blocks(request: Any, *args: Any, **kwargs: Any) -> Any:
            result = lookup(request, *args, **kwargs)
            seen(request, result[1], result[0])
            return result

        manager.get_computed_blocks = get_computed_blocks

    @staticmethod
    def set_event_publisher(sched: Any, publisher: Any) -> None:
        sched.kv_event_publisher = publisher

    @staticmethod
    def event_publisher(sched: Any) -> Any:
        return sched.kv_event_publisher


class PublisherInternals:
    """vLLM's ZmqEventPublisher: batches queued for its sending thread (its shutdown()
    waits only one second for them)."""

    @staticmethod
    def queued(publisher: Any) -> int:
        return publisher._event_queue.qsize()


class RequestInternals:
    """vLLM's Request, where the scheduler sets state the KV-cache manager reads."""

    @staticmethod
    def set_shared_prefix_boundary(request: Any, boundary: int) -> None:
        # Scheduler._get_local_prefix_cache_hit stores get_computed_blocks' third value
        # here; SingleTypeKVCacheManager.cache_blocks keeps sliding-window blocks
        # reachable from it (the one other write, as the scheduler makes it).
        request.shared_prefix_boundary = boundary


class CpuTierState(NamedTuple):
    """vLLM's CPUOffloadingManager counters (CPU blocks are its chunks)."""

    num_blocks: int
    stored: int  # chunks holding a key: allocated less the free list
    evictable: int  # of stored: ref count 0 (vLLM's _num_evictable_cache_chunks)
    write_pending: int  # of stored: a store in flight (ref count -1)


class TierInternals:
    """vLLM's OffloadingConnector (scheduler role) and its CPUOffloadingManager."""

    @staticmethod
    def connector(sched: Any) -> Any:
        return sched.connector

    @staticmethod
    def cpu_manager(sched: Any) -> Any:
        return sched.connector.connector_scheduler.manager

    @staticmethod
    def state(manager: Any) -> CpuTierState:
        stored = manager._num_allocated_chunks - len(manager._free_list)
        return CpuTierState(manager._num_chunks, stored, manager._num_evictable_cache_chunks,
                            manager._num_write_pending_chunks)

    @staticmethod
    def chunks(manager: Any) -> Iterator[Any]:
        """Every ChunkStatus the policy holds (LRU: ``chunks``; ARC: ``t1`` and ``t2``)."""
        policy = manager._policy
        if hasattr(policy, "chunks"):
            return iter(policy.chunks.values())
        return iter([*policy.t1.values(), *policy.t2.values()])

    @staticmethod
    def chunk_codes(manager: Any) -> bytes:
        """Each CPU block's state, one byte a block (engine.tier_records.CPU_*): ChunkStatus.ref_cnt is -1
        while a store is in flight, 0 when evictable, > 0 while loads read it."""
        codes = bytearray(manager._num_chunks)
        for chunk in TierInternals.chunks(manager):
            ref = chunk.ref_cnt
            codes[chunk.chunk_id] = (CPU_WRITE_PENDING if ref < 0 else
                                     CPU_EVICTABLE if ref == 0 else CPU_LOADING)
        return bytes(codes)


def check_tier(sched: Any) -> list[str]:
    """What the CPU-tier strip reads from vLLM's offloading connector and manager."""
    problems: list[str] = []
    try:
        manager = TierInternals.cpu_manager(sched)
        state = TierInternals.state(manager)
        if not all(isinstance(v, int) for v in state):
            problems.append("CPUOffloadingManager's chunk counters are not ints")
        codes = TierInternals.chunk_codes(manager)
        if len(codes) != state.num_blocks:
            problems.append("CPUOffloadingManager._num_chunks is not the chunk count")
        if sum(1 for c in codes if c) != state.stored:
            problems.append("the cache policy's chunks differ from the allocated count")
        for chunk in TierInternals.chunks(manager):
            if not (isinstance(chunk.ref_cnt, int) and isinstance(chunk.chunk_id, int)):
                problems.append("ChunkStatus has no int ref_cnt / chunk_id")
                break
        for name in ("prepare_store", "complete_store", "prepare_load", "complete_load",
                     "lookup", "take_events", "get_stats"):
            if not callable(getattr(manager, name, None)):
                problems.append(f"CPUOffloadingManager.{name} is missing")
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


MANAGER_METHODS = (
    "get_computed_blocks", "allocate_slots", "free", "record_prefix_cache_stats",
    "make_prefix_cache_stats", "get_block_ids", "take_events", "new_step_starts",
)
POOL_METHODS = ("get_cached_block", "get_num_free_blocks", "take_events")
SCHEDULER_METHODS = (
    "schedule", "update_from_output", "add_request", "has_requests", "get_request_counts",
    "finish_requests",
)


def check_manager(manager: Any) -> list[str]:
    """What the adapter reads from a KVCacheManager. Empty when all is well."""
    problems: list[str] = []
    try:
        pool = PoolInternals.block_pool(manager)
        blocks = PoolInternals.blocks(pool)
        slot = PoolInternals.slot(blocks[-1])
        if not isinstance(slot.ref_cnt, int):
            problems.append("KVCacheBlock.ref_cnt is not an int")
        if slot.block_hash is not None and not isinstance(slot.block_hash, bytes):
            problems.append("KVCacheBlock.block_hash is not bytes")
        block = blocks[-1]
        if (_REF(block), _KEY(block)) != (block.ref_cnt, block.block_hash):
            problems.append("KVCacheBlock._block_hash is not what block_hash returns")
        groups = PoolInternals.num_groups(manager)
        if not isinstance(groups, int) or groups < 1:
            problems.append("KVCacheManager.num_kv_cache_groups is not a positive int")
        elif SlotReader(blocks, groups).read([len(blocks) - 1]) != [slot]:
            problems.append("SlotReader reads another slot than PoolInternals.slot")
        PoolInternals.null_block_id(pool)
        next(iter(PoolInternals.free_queue_iter(pool)), None)
        if not isinstance(pool.cached_block_hash_to_block._cache, dict):
            problems.append("BlockPool.cached_block_hash_to_block._cache is not a dict")
        problems += [f"BlockPool.{n} is missing" for n in POOL_METHODS
                     if not callable(getattr(pool, n, None))]
        problems += [f"KVCacheManager.{n} is missing" for n in MANAGER_METHODS
                     if not callable(getattr(manager, n, None))]
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def check_scheduler(sched: Any, probe_request: Any, runner_output_cls: Any) -> list[str]:
    """What serve mode reads from vLLM's scheduler, checked on a live one."""
    problems: list[str] = []
    try:
        problems.extend(check_manager(SchedInternals.manager(sched)))
        if not isinstance(SchedInternals.running(sched), list):
            problems.append("Scheduler.running is not a list")
        SchedInternals.waiting_ids(sched)
        if not isinstance(sched.requests, dict):
            problems.append("Scheduler.requests is not a dict")
        problems += [f"Scheduler.{n} is missing" for n in SCHEDULER_METHODS
                     if not callable(getattr(sched, n, None))]
        if not callable(getattr(SchedInternals.event_publisher(sched), "publish", None)):
            problems.append("Scheduler.kv_event_publisher has no publish()")
        for attr in ("is_prefill_chunk", "num_tokens", "num_computed_tokens", "request_id",
                     "shared_prefix_boundary", "prefill_stats"):
            if not hasattr(probe_request, attr):
                problems.append(f"Request.{attr} is missing")
        stats = probe_request.prefill_stats
        if stats is not None and not isinstance(stats.num_external_cached_tokens, int):
            problems.append("PrefillStats.num_external_cached_tokens is not an int")
        for name in ("req_id_to_index", "sampled_token_ids"):
            if name not in getattr(runner_output_cls, "__dataclass_fields__", {}):
                problems.append(f"ModelRunnerOutput.{name} is missing")
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def check_publisher(publisher: Any) -> list[str]:
    """What --serve-events reads from vLLM's ZmqEventPublisher."""
    try:
        if not isinstance(PublisherInternals.queued(publisher), int):
            return ["ZmqEventPublisher._event_queue.qsize() is not an int"]
    except (AttributeError, TypeError) as exc:
        return [f"{type(exc).__name__}: {exc}"]
    return []


def ensure(problems: list[str], what: str, version: str, tested: str) -> None:
    """Raise AdapterMismatch naming the installed vLLM when a check found problems."""
    if problems:
        raise AdapterMismatch(
            f"vLLM {version}'s {what} differs from what prefix-tui's adapter knows "
            f"(tested with {tested}): {'; '.join(problems)}"
        )
