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

So the reasons add up to the missed blocks by construction, and each reason is a fact
about vLLM's hash map or its events. Serve mode applies an iteration's events before
classifying its admissions; an admission's "held at lookup" was read at the lookup, so an
eviction later in the same ``schedule()`` cannot turn an ``after_miss`` into ``evicted``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
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
        """vLLM stored these hashes for ``req`` (its BlockStored events)."""
        first = self._first
        n = len(first)
        for h in hashes:
            if h not in first:
                first[h] = req.index
        if len(first) != n:
            self._who[req.index] = (req.request_id, req.conversation_id)

    def removed(self, hashes: Iterable[bytes], step: int, req: TraceRequest) -> None:
        """vLLM evicted these hashes at ``step`` for ``req``'s allocation (BlockRemoved)."""
        mark = (step, req.index)
        evicted = self._evicted
        any_ = False
        for h in hashes:
            evicted[h] = mark
            any_ = True
        if any_:
            self._who[req.index] = (req.request_id, req.conversation_id)

    # -- why -------------------------------------------------------------------------------
    def classify(self, req: TraceRequest, seen: SeenLookup, hit_blocks: int) -> BlockReasons:
        """The reasons for ``req``'s missed prompt blocks and the sources of its hits."""
        bs = self.block_size
        plen = req.num_prompt_tokens
        full = plen // bs
        prompt_blocks = -(-plen // bs)
        counts = dict.fromkeys(("cold", "evicted", "partial", "last_token", "after_miss",
                                "salt", "lora"), 0)
        by: Counter[tuple[int, int]] = Counter()
        mine: Variant = (req.cache_salt, req.lora_name)
        hashes, cached, start, content = seen.hashes, seen.cached, seen.start, seen.content
        for i in range(hit_blocks, prompt_blocks):
            if i >= full:
                counts["partial"] += 1
                continue
            held = cached[i - start] if i >= start else True
            if held:
                last = i == hit_blocks and i == full - 1 and plen % bs == 0
                counts["last_token" if last else "after_miss"] += 1
                continue
            ev = self._evicted.get(hashes[i])
            if ev is not None:
                counts["evicted"] += 1
                by[ev] += 1
                continue
            others = self._variants.get(content[i], ()) if content is not None else ()
            other = [v for v in others if v != mine]
            if any(v[1] != mine[1] for v in other):
                counts["lora"] += 1
            elif other:
                counts["salt"] += 1
            else:
                counts["cold"] += 1
        if content is not None:
            for c in content:
                self._variants.setdefault(c, set()).add(mine)
        return BlockReasons(
            **counts,
            evicted_by=tuple(EvictedBy(step, self._who[idx][0], n)
                             for (step, idx), n in sorted(by.items())),
            hit_sources=self._sources(req, hashes, hit_blocks),
        )

    def _sources(self, req: TraceRequest, hashes: tuple[bytes, ...],
                 hit_blocks: int) -> tuple[HitSource, ...]:
        """Hit blocks grouped by the request that first stored them, in table order."""
        out: list[HitSource] = []
        first = self._first
        run_idx, run_start = -2, 0
        for i in range(min(hit_blocks, len(hashes)) + 1):
            idx = first.get(hashes[i], -1) if i < hit_blocks else -2
            if idx == run_idx:
                continue
            if run_idx != -2:
                out.append(self._source(req, run_idx, run_start, i - 1))
            run_idx, run_start = idx, i
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
