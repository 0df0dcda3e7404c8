"""The replays' copy of vLLM's pool as of the last record: step records carry the
difference between it and vLLM's pool, so a cursor can walk steps both ways.

Kept as columns (ref counts, vLLM's hash keys, bare hashes, groups), and diffed with
C-level maps: a detailed replay touches thousands of blocks a step, and a Python object
per block made the inspector's replay twice as slow as vLLM's own calls (issue 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import and_, is_not, itemgetter, ne, not_, or_
from typing import Any, Protocol

from engine.model import NO_CHANGE, NO_EVICTIONS, EvictedBlock, PoolDelta, Rows, Slot


class PoolColumns(Protocol):
    """What the mirror reads from a backend's pool (engine.backends.vllm_v1.manager)."""

    null_block_id: int | None

    def num_blocks(self) -> int: ...

    def slot_columns(self, block_ids: list[int]) -> tuple[Sequence[int], Sequence[Any]]:
        """(ref counts, hash keys) of these blocks: a key is vLLM's opaque cache key, whose
        identity changes whenever vLLM caches the block anew; None when uncached."""
        ...

    def decode_keys(self, keys: Sequence[Any]) -> tuple[list[bytes | None], list[int]]:
        """(bare hashes, KV cache groups) of hash keys (None -> None, 0)."""
        ...


def _cached_free(refs: Sequence[int], hashes: Sequence[bytes | None]) -> int:
    """How many of these slots are cached-free (ref count 0, a hash), counted in C."""
    return sum(map(and_, map(not_, refs), map(is_not, hashes, repeat(None))))


def _picker(indices: list[int]):
    """itemgetter that always returns a tuple (itemgetter(i) returns the bare item)."""
    if len(indices) == 1:
        only = indices[0]
        return lambda seq: (seq[only],)
    return itemgetter(*indices)


class PoolMirror:
    def __init__(self, pool: PoolColumns, *, count_hashes: bool = False) -> None:
        self._pool = pool
        self.null_block_id = pool.null_block_id
        ids = list(range(pool.num_blocks()))
        refs, keys = pool.slot_columns(ids)
        self.ref: list[int] = list(refs)
        self.key: list[Any] = list(keys)
        self.hash, self.group = pool.decode_keys(keys)
        self.num_cached_free = _cached_free(self.ref, self.hash)
        # How many blocks hold each hash now (vLLM may cache one content twice); serve mode
        # asks, so only it pays for keeping it.
        self.hash_count: dict[bytes, int] | None = None
        if count_hashes:
            self.hash_count = {}
            for h in self.hash:
                if h is not None:
                    self.hash_count[h] = self.hash_count.get(h, 0) + 1

    def __getitem__(self, block_id: int) -> Slot:
        return Slot(self.ref[block_id], self.hash[block_id], self.group[block_id])

    def slots(self) -> list[Slot]:
        return [Slot(*s) for s in zip(self.ref, self.hash, self.group)]

    def is_cached(self, block_id: int) -> bool:
        return self.key[block_id] is not None

    def diff(self, touched: Iterable[int]) -> tuple[PoolDelta, Rows[EvictedBlock]]:
        """Read the touched blocks from vLLM, update the mirror, and return the pool delta
        and the evicted blocks. A block whose hash key is not the object the mirror holds
        was cached anew: cached content it had before was evicted, even when vLLM cached
        the same hash back into it in the same step."""
        order = dict.fromkeys(touched)  # unique, in order (C-speed)
        order.pop(self.null_block_id, None)
        ids = list(order)
        if not ids:
            return NO_CHANGE, NO_EVICTIONS
        refs_now, keys_now = self._pool.slot_columns(ids)
        ref, key = self.ref, self.key
        refs_then = list(map(ref.__getitem__, ids))
        keys_then = list(map(key.__getitem__, ids))
        # Every per-block test below is a map of an operator: C loops, no Python frame.
        changed = list(compress(range(len(ids)), map(
            or_, map(ne, refs_then, refs_now), map(is_not, keys_then, keys_now))))
        if not changed:
            return NO_CHANGE, NO_EVICTIONS
        pick = _picker(changed)
        bids, rb, ra, kb, ka = pick(ids), pick(refs_then), pick(refs_now), pick(keys_then), \
            pick(keys_now)
        hb = tuple(map(self.hash.__getitem__, bids))
        gb = tuple(map(self.group.__getitem__, bids))
        rekeyed = list(compress(range(len(bids)), map(is_not, kb, ka)))
        ha, ga = hb, gb
        if rekeyed:
            new_h, new_g = self._pool.decode_keys([ka[j] for j in rekeyed])
            ha_l, ga_l = list(hb), list(gb)
            list(map(ha_l.__setitem__, rekeyed, new_h))
            list(map(ga_l.__setitem__, rekeyed, new_g))
            ha, ga = tuple(ha_l), tuple(ga_l)
            if self.hash_count is not None:
                self._count(hb, ha, rekeyed)
        gone = [j for j in rekeyed if kb[j] is not None]
        evicted = (Rows(EvictedBlock, (tuple(bids[j] for j in gone), tuple(hb[j] for j in gone)))
                   if gone else NO_EVICTIONS)
        self.num_cached_free += _cached_free(ra, ha) - _cached_free(rb, hb)
        # Write back in C (map over __setitem__; the Nones it returns are dropped).
        list(map(ref.__setitem__, bids, ra))
        list(map(key.__setitem__, bids, ka))
        list(map(self.hash.__setitem__, bids, ha))
        list(map(self.group.__setitem__, bids, ga))
        return PoolDelta(bids, rb, ra, hb, ha, gb, ga), evicted

    def _count(self, before: tuple, after: tuple, rekeyed: list[int]) -> None:
        hc = self.hash_count
        assert hc is not None
        for j in rekeyed:
            old, new = before[j], after[j]
            if old is not None:
                left = hc.get(old, 0) - 1
                if left > 0:
                    hc[old] = left
                else:
                    hc.pop(old, None)
            if new is not None:
                hc[new] = hc.get(new, 0) + 1
