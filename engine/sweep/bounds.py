"""Ceilings computed by prefix-tui, not by vLLM (every view labels them so).

- reuse bound: the share of prompt tokens in full blocks whose whole prefix appeared
  earlier in the trace (prompts, and the outputs vLLM computed). What an ideal cache with
  no capacity limit and no "last prompt token is recomputed" rule would reuse.
- farthest-next-use bound: an offline, prefix-aware, Belady-style cache of the point's
  capacity under vLLM's own rules (full blocks only, a hit capped at prompt length - 1,
  the running request's blocks held): when room is needed it drops the cached block used
  again furthest in the future (never-again first, the deeper block first on a tie, so a
  prefix is never dropped before its continuation). It tells a capacity gap from an
  eviction-policy gap. Belady's rule is optimal for independent pages; with prefix chains
  and held blocks it is a strong offline reference, not a proof of optimality.

Both are token-weighted like vLLM's PrefixCacheStats: hit tokens / prompt tokens of the
requests after the warm-up (the warm-up requests fill the cache but are not counted).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from engine.sweep.keys import RequestKeys

NEVER = 1 << 62  # the next use of a block nobody asks for again


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class BoundCounts:
    """Hit / queried prompt tokens of a bound (prefix-tui's), after the warm-up."""

    hit_tokens: int
    query_tokens: int
    requests: int  # counted requests (served, after the warm-up)
    not_fitted: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class ReuseBound:
    """Feed every request's keys in trace order (warm-up included)."""

    def __init__(self, block_size: int, warmup: int = 0) -> None:
        self.block_size = block_size
        self.warmup = warmup
        self.seen: set[int] = set()
        self.index = 0
        self.hit_tokens = self.query_tokens = self.requests = 0
        # What a pool that never evicts needs: blocks vLLM could allocate, with the hits
        # an unbounded cache would give (checked afterwards by vLLM's eviction count).
        self.never_evict_blocks = 1  # vLLM's null block
        self.conservative_blocks = 1  # every block of every request, no hit at all

    def add(self, rk: RequestKeys) -> None:
        bs = self.block_size
        full = rk.prompt_tokens // bs
        reused = 0
        while reused < full and rk.keys[reused] in self.seen:
            reused += 1
        if self.index >= self.warmup:
            self.hit_tokens += reused * bs
            self.query_tokens += rk.prompt_tokens
            self.requests += 1
        hits = min(reused, rk.usable)
        self.never_evict_blocks += cdiv(rk.prompt_tokens + rk.output_tokens, bs) + 1 - hits
        self.conservative_blocks += cdiv(rk.prompt_tokens + rk.output_tokens, bs) + 1
        self.seen.update(rk.keys)
        self.index += 1

    def counts(self) -> BoundCounts:
        return BoundCounts(self.hit_tokens, self.query_tokens, self.requests)


def farthest_next_use(keys: Iterable[RequestKeys], capacity_blocks: int, block_size: int,
                      warmup: int = 0, max_model_len: int | None = None) -> BoundCounts:
    """The offline bound for a cache of ``capacity_blocks`` blocks (the pool less vLLM's
    null block), requests one at a time in trace order. Requests vLLM would not serve get
    no blocks here either: a prompt of ``max_model_len`` tokens or more (vLLM's input
    processor rejects it) or of more blocks than the pool."""
    reqs = list(keys)
    next_use = _next_uses(reqs)
    cache: dict[int, int] = {}  # key -> its next use
    depth: dict[int, int] = {}
    heap: list[tuple[int, int, int]] = []  # (-next use, -depth, key); stale entries skipped
    hit_tokens = query_tokens = counted = not_fitted = 0
    for r, rk in enumerate(reqs):
        too_long = max_model_len is not None and rk.prompt_tokens >= max_model_len
        if too_long or cdiv(rk.prompt_tokens, block_size) > capacity_blocks:
            not_fitted += r >= warmup
            continue  # vLLM's allocate_slots refuses it: no blocks, no hit counted
        held = min(capacity_blocks, cdiv(rk.prompt_tokens + rk.output_tokens, block_size))
        keys_r, nu = rk.keys, next_use[r]
        hits = 0
        while hits < rk.usable and keys_r[hits] in cache:
            hits += 1
        if r >= warmup:
            hit_tokens += hits * block_size
            query_tokens += rk.prompt_tokens
            counted += 1
        pinned = set(keys_r[:hits])
        for j in range(hits):  # hit blocks are held: their next use moves on
            cache[keys_r[j]] = nu[j]
            heapq.heappush(heap, (-nu[j], -j, keys_r[j]))
        # Room for the request's other blocks: drop the cached block used furthest ahead.
        _evict(cache, depth, heap, capacity_blocks - (held - hits), pinned)
        # Freed: the request's full blocks stay cached (vLLM keeps their hashes).
        for j, key in enumerate(keys_r):
            cache[key] = nu[j]
            depth[key] = j
            heapq.heappush(heap, (-nu[j], -j, key))
        _evict(cache, depth, heap, capacity_blocks, set())
        if len(heap) > 4 * len(cache) + 1024:  # drop stale entries now and then
            heap = [(-u, -depth[k], k) for k, u in cache.items()]
            heapq.heapify(heap)
    return BoundCounts(hit_tokens, query_tokens, counted, not_fitted)


def _evict(cache: dict[int, int], depth: dict[int, int], heap: list, room: int,
           pinned: set[int]) -> None:
    """Drop cached blocks, furthest next use first, until at most ``room`` stay; blocks the
    running request holds (``pinned``) stay whatever their next use."""
    aside = []
    while len(cache) > room and heap:
        entry = heapq.heappop(heap)
        neg_use, _neg_depth, key = entry
        if cache.get(key) != -neg_use:
            continue  # stale: the block was dropped, or its next use moved
        if key in pinned:
            aside.append(entry)
            continue
        del cache[key]
        del depth[key]
    for entry in aside:
        heapq.heappush(heap, entry)


def _next_uses(reqs: list[RequestKeys]) -> list[array]:
    """For each request's keys, the index of the next later request that may hit it (its
    usable prompt blocks), or NEVER."""
    later: dict[int, int] = {}
    out: list[array] = [array("q")] * len(reqs)
    for r in range(len(reqs) - 1, -1, -1):
        rk = reqs[r]
        out[r] = array("q", (later.get(k, NEVER) for k in rk.keys))
        for k in rk.keys[: rk.usable]:
            later[k] = r
    return out
