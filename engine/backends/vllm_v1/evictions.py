"""Serve mode: which request's allocation evicted each cached block.

vLLM evicts a cached block when ``BlockPool.get_new_blocks`` hands it out of the free
queue to a request (``_maybe_evict_cached_block``); its ``BlockRemoved`` event names the
hash, not the block or the request, and one ``schedule()`` allocates for many requests.
prefix-tui attributes an eviction to **the request the evicted block was handed to**:
the request whose allocation caused it. Every eviction has exactly one such request, so
the per-request counts add up to vLLM's BlockRemoved count, step by step.

How it is known without reading the pool each step: a block handed out in a step was
cached if and only if it held a hash at the end of the step before. Within one step a
block cannot be cached, freed and handed out again (FCFS preemption frees requests not yet
scheduled in that ``schedule()``, and ``update_from_output`` frees and caches but never
allocates). So the ledger keeps the ids of the blocks that hold a hash: blocks named by
this step's ``BlockStored`` events join it (every block vLLM's hash map holds for that
hash: duplicates are real), blocks handed out leave it.

With one full-attention group (what serve mode replays today) a block holds one hash, so
one handed-out cached block is one BlockRemoved event; ServeReplay checks the sums agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from engine.backends.vllm_v1.imports import V
from engine.backends.vllm_v1.internals import PoolInternals

if TYPE_CHECKING:
    from engine.backends.vllm_v1.scheduler import Scheduled


class EvictionLedger:
    def __init__(self, pool: Any, block_size: int) -> None:
        self._pool = pool
        self._block_size = block_size
        # id of a block holding a hash -> (that hash, its KV cache group)
        self._cached: dict[int, tuple[bytes, int]] = {}
        self._owner: dict[int, str] = {}  # block id -> the request it was last handed to

    def handed_out(self, scheduled: Scheduled) -> dict[str, list[tuple[bytes, int]]]:
        """The (hash, group) of the cached blocks each request of one schedule() was
        handed: the evictions its allocation caused (call before ``stored`` for the same step).
        Requests that evicted nothing are left out."""
        cached = self._cached
        owner = self._owner
        out: dict[str, list[tuple[bytes, int]]] = {}

        def take(seq_id: str, blocks: tuple[int, ...]) -> None:
            for bid in blocks:
                owner[bid] = seq_id
                h = cached.pop(bid, None)
                if h is not None:
                    out.setdefault(seq_id, []).append(h)

        # Blocks added to running requests: all of them came out of the free queue.
        for seq_id, groups in scheduled.new_block_ids.items():
            for blocks in groups:
                take(seq_id, blocks)
        # Waiting for an async load from the CPU tier: the blocks the load fills.
        for seq_id, groups in scheduled.loading.items():
            for blocks in groups:
                take(seq_id, blocks)
        # Admitted (new or resumed): the whole table, of which the prefix hit was touched,
        # not handed out; the rest came out of the free queue.
        for a in scheduled.admissions:
            skip = a.num_cached_tokens // self._block_size
            for blocks in a.block_ids:
                take(a.seq_id, blocks[skip:])
        return out

    def stored(self, raw_events: Iterable[Any]) -> list[tuple[bytes, str | None, int]]:
        """Blocks that got a hash: every block vLLM's hash map holds for each hash of this
        step's BlockStored events. Returns each stored hash with the request its new block
        was handed to (the request that computed it; None if not known) and its group."""
        stored_cls = V.BlockStored
        cached = self._cached
        owner = self._owner
        out: list[tuple[bytes, str | None, int]] = []
        for ev in raw_events:
            if not isinstance(ev, stored_cls):
                continue
            group = ev.group_idx or 0
            for h in ev.block_hashes:
                who = None
                for bid in PoolInternals.cached_block_ids(self._pool, h, group):
                    if bid not in cached:
                        cached[bid] = (h, group)
                        who = owner.get(bid, who)
                out.append((h, who, group))
        return out
