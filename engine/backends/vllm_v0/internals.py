"""Every read of a vLLM 0.10.1.1 V0 attribute that is not public API (worker side).

V0's block manager has no API for what the inspector shows (which hash each block holds,
the evictor's contents and order, the free list), so these few private reads live here,
and ``check_block_manager`` runs on the live objects at start-up: if vLLM moves one, the
worker says which, and prefix-tui stops with one line instead of showing wrong numbers.
Nothing here writes to vLLM.
"""

from __future__ import annotations

import heapq
import itertools
import traceback
from typing import Any

from engine.model import EvictorEntry, Slot

HASH_BYTES = 8  # V0's hashes are Python ints (hash() of a tuple): 64-bit signed


def hash_bytes(content_hash: int) -> bytes:
    """V0's int hash as the bytes records carry (two's complement, big-endian)."""
    return (content_hash & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(HASH_BYTES, "big")


class V0Internals:
    """Reads of one SelfAttnBlockSpaceManager's GPU allocator."""

    def __init__(self, manager: Any, gpu: Any) -> None:
        # CpuGpuBlockAllocator keeps one allocator per device and no getter for it.
        alloc = manager.block_allocator._allocators[gpu]
        self.manager = manager
        self.allocator = alloc
        self.caching = hasattr(alloc, "_cached_blocks")
        hashless = alloc._hashless_allocator if self.caching else alloc
        self._free_ids = hashless._free_block_indices  # deque: popleft allocates
        self._refcounts = alloc._refcounter._refcounts  # block id -> ref count
        self.evictor = alloc.evictor if self.caching else None

    # -- the prefix cache ------------------------------------------------------------------
    @property
    def cached_blocks(self) -> dict[int, int]:
        """hash -> block id, every cached block (held or in the evictor)."""
        return self.allocator._cached_blocks if self.caching else {}

    def evictor_table(self) -> dict[int, Any]:
        """block id -> V0's BlockMetaData (content_hash, num_hashed_tokens, last_accessed)."""
        return self.evictor.free_table if self.evictor is not None else {}

    def evictor_snapshot(self) -> dict[int, int]:
        """block id -> content hash of every evictor-resident block (C-speed copy)."""
        return {b: m.content_hash for b, m in self.evictor_table().items()}

    def ref_cnt(self, block_id: int) -> int:
        return self._refcounts[block_id]

    def free_ids(self, limit: int) -> list[int]:
        """The hashless free list, in the order V0 hands it out (before any eviction)."""
        return list(itertools.islice(self._free_ids, limit))

    def evictor_order(self, limit: int) -> list[EvictorEntry]:
        """The evictor's next ``limit`` victims, as LRUEvictor.evict() would pop them: its
        heap in order, skipping entries it skips (block gone, or another access time). An
        entry it takes whose hash is not the block's own is flagged stale (vLLM would
        raise on it)."""
        if self.evictor is None:
            return []
        heap, table = self.evictor.priority_queue, self.evictor.free_table
        k = 2 * limit + 8
        while True:
            out: list[EvictorEntry] = []
            seen: set[int] = set()
            for last, neg_tokens, bid, content_hash in heapq.nsmallest(k, heap):
                meta = table.get(bid)
                if meta is None or meta.last_accessed != last or bid in seen:
                    continue
                seen.add(bid)
                out.append(EvictorEntry(bid, hash_bytes(content_hash), last, -neg_tokens,
                                        content_hash != meta.content_hash))
                if len(out) >= limit:
                    return out
            if k >= len(heap):
                return out
            k *= 4

    # -- a sequence's blocks ---------------------------------------------------------------
    def table_slots(self, seq_id: int) -> dict[int, Slot]:
        """Slots of the blocks a live sequence holds (its Block objects carry the hash)."""
        table = self.manager.block_tables.get(seq_id)
        if table is None:
            return {}
        out: dict[int, Slot] = {}
        for block in table.blocks:
            h = block.content_hash if self.caching else None
            out[block.block_id] = Slot(self._refcounts[block.block_id],
                                       hash_bytes(h) if h is not None else None)
        return out

    def slot(self, block_id: int, held: dict[int, Slot]) -> Slot:
        """A block's slot: held by the live sequence, evictor-resident, or free."""
        if block_id in held:
            return held[block_id]
        meta = self.evictor_table().get(block_id)
        if meta is not None:
            return Slot(self._refcounts[block_id], hash_bytes(meta.content_hash))
        return Slot(self._refcounts[block_id], None)


def error_site(exc: BaseException) -> tuple[str, int | None, bytes | None]:
    """Where in vLLM an exception was raised (file:line and the source line), and the block
    and hash involved when it came from the evictor path (the frame's own locals)."""
    tb = exc.__traceback__
    frames = traceback.extract_tb(tb)
    last = frames[-1] if frames else None
    where = ""
    if last is not None:
        path = last.filename.split("site-packages/")[-1]
        where = f"{path}:{last.lineno} ({last.name}): {(last.line or '').strip()}"
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    local = tb.tb_frame.f_locals if tb is not None else {}
    block = local.get("block_id")
    content_hash = local.get("content_hash_to_evict")
    return (where, block if isinstance(block, int) else None,
            hash_bytes(content_hash) if isinstance(content_hash, int) else None)


def check_block_manager(manager: Any, gpu: Any, caching: bool) -> list[str]:
    """What this module reads, checked on a live manager; empty when all is there."""
    problems: list[str] = []
    try:
        internals = V0Internals(manager, gpu)
    except AttributeError as exc:
        return [f"block allocator layout: {exc}"]
    if caching:
        if not internals.caching:
            problems.append("PrefixCachingBlockAllocator._cached_blocks is missing")
        ev = internals.evictor
        for name in ("free_table", "priority_queue"):
            if ev is None or not hasattr(ev, name):
                problems.append(f"LRUEvictor.{name} is missing")
    if not hasattr(manager, "block_tables"):
        problems.append("SelfAttnBlockSpaceManager.block_tables is missing")
    return problems
