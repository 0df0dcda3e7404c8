"""The replays' copy of vLLM's pool as of the last record: step records carry the
difference between it and vLLM's pool, so a cursor can walk steps both ways."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from engine.records import Slot


def is_cached_free(slot: Slot) -> int:
    return 1 if slot[0] == 0 and slot[1] is not None else 0


class PoolMirror:
    def __init__(self, slots: list[Slot], null_block_id: int) -> None:
        self.slots = slots
        self.null_block_id = null_block_id
        self.num_cached_free = sum(is_cached_free(s) for s in slots)
        # How many blocks hold each hash now (vLLM may cache one content twice).
        self.hash_count: dict[bytes, int] = {}
        for _ref, h in slots:
            if h is not None:
                self.hash_count[h] = self.hash_count.get(h, 0) + 1

    def __getitem__(self, block_id: int) -> Slot:
        return self.slots[block_id]

    def diff(
        self,
        touched: Iterable[int],
        read: Callable[[list[int]], list[Slot]],
        fresh: set[int] | frozenset[int] = frozenset(),
    ) -> tuple[tuple[tuple[int, Slot, Slot], ...], list[tuple[int, bytes]]]:
        """Read the touched blocks from vLLM (``read``), update the mirror, and return the
        pool delta and the evicted blocks. ``fresh``: blocks newly allocated this step; one
        that held cached content was evicted even if it got the same hash back."""
        seen: set[int] = set()
        ids = [b for b in touched if b != self.null_block_id and not (b in seen or seen.add(b))]
        mirror, hc = self.slots, self.hash_count
        delta: list[tuple[int, Slot, Slot]] = []
        evicted: list[tuple[int, bytes]] = []
        for bid, now in zip(ids, read(ids)):
            before = mirror[bid]
            # Cached content that changed or vanished was evicted by vLLM (its BlockRemoved
            # event carries the hash; this gives the block id).
            if before[1] is not None and (now[1] != before[1] or bid in fresh):
                evicted.append((bid, before[1]))
            if now == before:
                continue
            self.num_cached_free += is_cached_free(now) - is_cached_free(before)
            if before[1] != now[1]:
                if before[1] is not None:
                    left = hc.get(before[1], 0) - 1
                    if left > 0:
                        hc[before[1]] = left
                    else:
                        hc.pop(before[1], None)
                if now[1] is not None:
                    hc[now[1]] = hc.get(now[1], 0) + 1
            delta.append((bid, before, now))
            mirror[bid] = now
        return tuple(delta), evicted
