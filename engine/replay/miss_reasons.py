"""Why each prompt block missed, and where each hit came from: observed, never simulated.

Everything here comes from vLLM itself; nothing decides what the cache holds:

- at a request's prefix lookup (vLLM's ``get_computed_blocks``), a ``SeenLookup``: the
  request's own block hashes (vLLM's ``Request.block_hashes``) and, for every block past
  the hit, whether vLLM's hash map held that hash at that moment
  (``BlockPool.get_cached_block``); in serve mode the adapter takes it inside vLLM's
  scheduler, at the lookup itself;
- vLLM's BlockStored / BlockRemoved events, each attributed to the request whose
  allocation stored or evicted the block (sequential mode: the step's request; serve mode:
  the request the block was handed to, engine.backends.vllm_v1.evictions).

From the events the tracker keeps a history: for every hash vLLM stored, the request that
stored it first; for every hash it evicted, the last step and request that evicted it. A
missed block is then, in this order:

- ``partial``: the prompt's last block is not full (vLLM hashes full blocks only);
- held by vLLM's hash map at the lookup: ``last_token`` when it is the first missed block
  and the prompt's last, block-aligned (vLLM caps a hit at prompt_len - 1 tokens), else
  ``after_miss`` (an earlier block of the chain missed, so vLLM's match stopped there);
- not held: ``evicted`` when vLLM evicted that hash earlier (the step and request named),
  else ``salt`` / ``lora`` when the same tokens were cached earlier under another cache
  salt / adapter (hashes of the same tokens without salt or adapter, made by vLLM's own
  block hasher, only once a trace has salts or adapters), else ``cold``.

With vLLM's CPU offloading tier (serve mode), the blocks vLLM loaded from the tier
(its ``num_external_cached_tokens`` for the request, read at the admission) come right
after the GPU's hit and are ``cpu_hit``; the rest as above.

So the reasons add up to the missed blocks by construction, and each reason is a fact
about vLLM's hash map or its events. Serve mode applies an iteration's events before
classifying its admissions; an admission's "held at lookup" was read at the lookup, so an
eviction later in the same ``schedule()`` cannot turn an ``after_miss`` into ``evicted``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import filterfalse, groupby, repeat
from typing import NamedTuple

from engine.block_reasons import BlockReasons, EvictedBy, HitSource
from engine.model import EventKind, KVEvent, TraceRequest


class SeenLookup(NamedTuple):
    """What vLLM's hash map held at one request's prefix lookup."""

    hashes: tuple[bytes, ...]  # vLLM's block hashes of the prompt's full blocks
    start: int  # blocks before it were hits
    cached: tuple[bool, ...]  # from ``start`` on: vLLM's hash map held that block's hash
    # The same tokens' hashes without salt or adapter (vLLM's hasher); None: not asked for.
    content: tuple[bytes, ...] | None = None


Variant = tuple[str | None, str | None]  # (cache_salt, lora_name)
REASONS = ("cold", "evicted", "partial", "last_token", "after_miss", "salt", "lora")


class MissTracker:
    """The history of vLLM's stores and evictions, and the classifier over it."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._first: dict[bytes, int] = {}  # hash -> index of the request that stored it first
        self._evicted: dict[bytes, tuple[int, int]] = {}  # hash -> (step, request index)
        self._who: dict[int, tuple[str, str | None]] = {}  # index -> (request id, conversation)
        self._variants: dict[bytes, set[Variant]] = {}  # content hash -> (salt, adapter)s
        self.wants_content = False  # a salt or an adapter was seen: ask for content hashes

    # -- what vLLM did ---------------------------------------------------------------------
    def saw(self, req: TraceRequest) -> None:
        """A request reached vLLM: from now on a salt or adapter needs content hashes."""
        if req.cache_salt is not None or req.lora_name is not None:
            self.wants_content = True

    def stored(self, hashes: Iterable[bytes], req: TraceRequest) -> None:
        """vLLM stored these hashes for ``req`` (its BlockStored events). Filtered and
        added in C: a step can store thousands."""
        first = self._first
        # Not keys() - keys(): that walks the whole history every step.
        new = dict.fromkeys(filterfalse(first.__contains__, hashes), req.index)
        if new:
            first.update(new)
            self._who[req.index] = (req.request_id, req.conversation_id)

    def removed(self, hashes: Iterable[bytes], step: int, req: TraceRequest) -> None:
        """vLLM evicted these hashes at ``step`` for ``req``'s allocation (BlockRemoved)."""
        marks = dict.fromkeys(hashes, (step, req.index))
        if marks:
            self._evicted.update(marks)
            self._who[req.index] = (req.request_id, req.conversation_id)

    # -- why -------------------------------------------------------------------------------
    def classify(self, req: TraceRequest, seen: SeenLookup, hit_blocks: int,
                 loaded: int | None = None) -> BlockReasons:
        """The reasons for ``req``'s missed prompt blocks and the sources of its hits.
        ``hit_blocks``: vLLM's whole hit; ``loaded``: of which the full blocks it loaded
        from the CPU tier (None: no tier), missed by the GPU prefix cache (cpu_hit).
        Counted over columns (a long prompt misses hundreds of blocks); only blocks no
        hash map held and no eviction explains are looked at one by one, and only when a
        trace has salts or adapters."""
        bs = self.block_size
        plen = req.num_prompt_tokens
        full = plen // bs
        prompt_blocks = -(-plen // bs)
        counts = dict.fromkeys(REASONS, 0)
        counts["partial"] = max(0, prompt_blocks - max(full, hit_blocks))
        by: Counter[tuple[int, int]] = Counter()
        mine: Variant = (req.cache_salt, req.lora_name)
        hashes, start, content = seen.hashes, seen.start, seen.content
        lo = hit_blocks  # blocks hit_blocks - loaded .. hit_blocks: from the CPU tier (cpu_hit)
        if lo < full:
            # Held by vLLM's hash map at the lookup, per missed full block (before
            # ``start`` the blocks were hits: held).
            held = (seen.cached[lo - start:full - start] if lo >= start
                    else (True,) * (start - lo) + seen.cached[:full - start])
            n_held = sum(held)
            # Only the first missed block can be the recomputed last one.
            last = int(held[0] and lo == full - 1 and plen % bs == 0)
            counts["last_token"] = last
            counts["after_miss"] = n_held - last
            if n_held < len(held):
                missing = [i for i, h in enumerate(held, lo) if not h]
                marks = list(map(self._evicted.get, map(hashes.__getitem__, missing)))
                unexplained = marks.count(None)
                counts["evicted"] = len(marks) - unexplained
                by.update(m for m in marks if m is not None)
                if content is None:
                    counts["cold"] = unexplained
                else:
                    for i, m in zip(missing, marks):
                        if m is None:
                            counts[self._not_held(content[i], mine)] += 1
        if content is not None:
            for c in content:
                self._variants.setdefault(c, set()).add(mine)
        return BlockReasons(
            **counts, cpu_hit=loaded,
            evicted_by=tuple(EvictedBy(step, self._who[idx][0], n)
                             for (step, idx), n in sorted(by.items())),
            hit_sources=self._sources(req, hashes, hit_blocks),
        )

    def _not_held(self, content: bytes, mine: Variant) -> str:
        """A block neither held nor evicted: the same tokens cached under another adapter
        (lora) or salt (salt), else cold."""
        other = [v for v in self._variants.get(content, ()) if v != mine]
        if any(v[1] != mine[1] for v in other):
            return "lora"
        return "salt" if other else "cold"

    def _sources(self, req: TraceRequest, hashes: tuple[bytes, ...],
                 hit_blocks: int) -> tuple[HitSource, ...]:
        """Hit blocks grouped by the request that first stored them, in table order."""
        n = min(hit_blocks, len(hashes))
        firsts = map(self._first.get, hashes[:n], repeat(-1, n))
        out: list[HitSource] = []
        a = 0
        for idx, run in groupby(firsts):
            b = a + len(list(run))
            out.append(self._source(req, idx, a, b - 1))
            a = b
        return _merge(out)

    def _source(self, req: TraceRequest, idx: int, a: int, b: int) -> HitSource:
        rid, conv = self._who.get(idx, ("", None))
        same = idx >= 0 and conv is not None and conv == req.conversation_id
        return HitSource(rid, same, b - a + 1, a, b)


def _merge(runs: list[HitSource]) -> tuple[HitSource, ...]:
    """Runs of one source, merged into one entry (first and last block kept)."""
    merged: dict[str, HitSource] = {}
    for r in runs:
        m = merged.get(r.request_id)
        merged[r.request_id] = r if m is None else m._replace(
            blocks=m.blocks + r.blocks, last_block=r.last_block)
    return tuple(merged.values())


def kv_hashes(kv_events: Iterable[KVEvent], group: int = 0) -> tuple[list[bytes], list[bytes]]:
    """The hashes of a step's BlockStored and BlockRemoved events of one KV cache group,
    in order."""
    stored: list[bytes] = []
    removed: list[bytes] = []
    for e in kv_events:
        if (e.group or 0) != group:
            continue
        if e.kind is EventKind.STORED:
            stored.extend(e.block_hashes)
        elif e.kind is EventKind.REMOVED:
            removed.extend(e.block_hashes)
    return stored, removed
