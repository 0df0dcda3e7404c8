"""The replays' copy of vLLM's pool as of the last record: step records carry the
difference between it and vLLM's pool, so a cursor can walk steps both ways."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from engine.model import EvictedBlock, PoolChange, Slot


def is_cached_free(slot: Slot) -> int:
    return 1 if slot.ref_cnt == 0 and slot.block_hash is not None else 0


class PoolMirror:
    def __init__(self, slots: list[Slot], null_block_id: int | None) -> None:
        self.slots = slots
        self.null_block_id = null_block_id
        self.num_cached_free = sum(is_cached_free(s) for s in slots)
        # How many blocks hold each hash now (vLLM may cache one content twice).
        self.hash_count: dict[bytes, int] = {}
        for s in slots:
            if s.block_hash is not None:
                self.hash_count[s.block_hash] = self.hash_count.get(s.block_hash, 0) + 1

    def __getitem__(self, block_id: int) -> Slot:
        return self.slots[block_id]

    def diff(
        self,
        touched: Iterable[int],
        read: Callable[[list[int]], list[Slot]],
        fresh: set[int] | frozenset[int] = frozenset(),
    ) -> tuple[tuple[PoolChange, ...], tuple[EvictedBlock, ...]]:
        """Read the touched blocks from vLLM (``read``), update the mirror, and return the
        pool delta and the evicted blocks. ``fresh``: blocks newly allocated this step; one
        that held cached content was evicted even if it got the same hash back."""
        order = dict.fromkeys(touched)  # unique, in order (C-speed: thousands a step)
        order.pop(self.null_block_id, None)
        ids = list(order)
        mirror, hc = self.slots, self.hash_count
        delta: list[PoolChange] = []
        evicted: list[EvictedBlock] = []
        make = tuple.__new__  # NamedTuple's own __new__ is Python-level: hot loop
        cached_free = 0
        for bid, now in zip(ids, read(ids)):
            before = mirror[bid]
            if now == before and bid not in fresh:
                continue
            old_hash, new_hash = before.block_hash, now.block_hash
            # Cached content that changed or vanished was evicted by vLLM (its BlockRemoved
            # event carries the hash; this gives the block id).
            if old_hash is not None and (new_hash != old_hash or bid in fresh):
                evicted.append(make(EvictedBlock, (bid, old_hash)))
            if now == before:
                continue
            cached_free += ((now.ref_cnt == 0 and new_hash is not None)
                            - (before.ref_cnt == 0 and old_hash is not None))
            if old_hash != new_hash:
                if old_hash is not None:
                    left = hc.get(old_hash, 0) - 1
                    if left > 0:
                        hc[old_hash] = left
                    else:
                        hc.pop(old_hash, None)
                if new_hash is not None:
                    hc[new_hash] = hc.get(new_hash, 0) + 1
            delta.append(make(PoolChange, (bid, before, now)))
            mirror[bid] = now
        self.num_cached_free += cached_free
        return tuple(delta), tuple(evicted)
