"""What a KV event stream says a server caches, rebuilt from its batches (attach, `events
FILE`). Counts per hash, not a set: vLLM stores a hash again while it is cached (a fully
cached block-aligned prompt recomputes its last block into a second physical block with
the same hash), and removes each copy on its own.

vLLM-free: batches arrive as engine.kvevents.model.DecodedBatch.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import NamedTuple

from engine.kvevents.model import DecodedBatch
from engine.model import EventKind

Hash = bytes | int
Key = tuple[int | None, str | None, Hash]  # (group_idx, medium, hash), as vLLM keys removals


class Gap(NamedTuple):
    """Sequence numbers missing from the live stream: [first, end)."""

    first: int
    end: int
    recovered: int  # of them, batches the replay endpoint sent back

    @property
    def missed(self) -> int:
        return self.end - self.first


class LogEntry(NamedTuple):
    seq: int | None
    ts: float | None
    kind: str  # "stored", "removed", "cleared", or a problem ("malformed", ...)
    count: int  # hashes (or events, for a problem)
    first_hash: Hash | None
    source: str  # "live", "replayed" (a gap), "history" (before joining), "file"
    text: str = ""  # a problem's description (untrusted)


class Prefix(NamedTuple):
    """A cached prefix chain: a root block and every cached block hanging under it."""

    root: Hash
    blocks: int  # cached blocks in the tree
    depth: int  # blocks on its longest chain


@dataclass
class Problems:
    malformed_frames: int = 0  # garbage, a wrong shape, a frame count or seq that is not vLLM's
    bad_events: int = 0
    unknown_tags: int = 0
    wrong_hash_types: int = 0
    unknown_removed: int = 0  # removals of hashes never seen stored (before joining, or lost)
    duplicates: int = 0  # batches received twice (already applied)


class CacheState:
    LOG_SIZE = 1000
    RATE_SECONDS = 60

    def __init__(self) -> None:
        self.batches = 0
        self.stored = 0  # hashes in BlockStored events
        self.removed = 0  # hashes in BlockRemoved events
        self.cleared = 0  # AllBlocksCleared events
        self.cached: Counter[Key] = Counter()  # copies of each hash cached now
        self.parent: dict[Hash, Hash | None] = {}  # chain links of cached hashes
        self.problems = Problems()
        self.missed_batches = 0
        self.recovered_batches = 0
        self.history_batches = 0  # replayed from before this subscriber joined
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.gaps: list[Gap] = []
        self.hash_type: str | None = None
        self.log: deque[LogEntry] = deque(maxlen=self.LOG_SIZE)
        self.errors: deque[str] = deque(maxlen=20)
        # (second, stored, removed) for the last RATE_SECONDS seconds of arrival time
        self._rates: deque[list] = deque(maxlen=self.RATE_SECONDS + 1)

    # -- applying a batch -------------------------------------------------------------------
    def apply(self, batch: DecodedBatch, *, seq: int | None = None, now: float | None = None,
              source: str = "live") -> None:
        self._problems(batch, seq, source)
        if batch.malformed:
            return
        self.batches += 1
        if seq is not None:
            if self.first_seq is None or seq < self.first_seq:
                self.first_seq = seq
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
        if source == "replayed":
            self.recovered_batches += 1
        elif source == "history":
            self.history_batches += 1
        stored = removed = 0
        cached = self.cached
        for ev in batch.events:
            if ev.kind is EventKind.STORED:
                hashes = ev.block_hashes
                parent = ev.parent_hash
                for h in hashes:
                    cached[(ev.group, ev.medium, h)] += 1
                    self.parent[h] = parent
                    parent = h
                stored += len(hashes)
                self._log(seq, batch.ts, "stored", len(hashes), hashes[0] if hashes else None,
                          source)
            elif ev.kind is EventKind.REMOVED:
                for h in ev.block_hashes:
                    key = (ev.group, ev.medium, h)
                    n = cached.get(key, 0)
                    if n <= 0:
                        self.problems.unknown_removed += 1
                    elif n == 1:
                        del cached[key]
                    else:
                        cached[key] = n - 1
                removed += len(ev.block_hashes)
                self._log(seq, batch.ts, "removed", len(ev.block_hashes),
                          ev.block_hashes[0] if ev.block_hashes else None, source)
            else:
                self.cleared += 1
                if ev.medium is None:
                    cached.clear()
                else:
                    for key in [k for k in cached if k[1] == ev.medium]:
                        del cached[key]
                self._log(seq, batch.ts, "cleared", 1, None, source)
            if self.hash_type is None and ev.block_hashes:
                self.hash_type = type(ev.block_hashes[0]).__name__
        self.stored += stored
        self.removed += removed
        if len(self.parent) > 4 * len(cached) + 100_000:
            self.forget_unreferenced()
        if now is not None:
            self._rate(now, stored, removed)

    def _problems(self, batch: DecodedBatch, seq: int | None, source: str) -> None:
        if not batch.problems:
            return
        p = self.problems
        p.malformed_frames += int(batch.malformed)
        p.bad_events += batch.bad_events
        p.unknown_tags += batch.unknown_tags
        p.wrong_hash_types += batch.wrong_hash_types
        where = f"seq {seq}: " if seq is not None else ""
        self.errors.append(where + batch.error)
        self._log(seq, batch.ts, "malformed" if batch.malformed else "bad events",
                  batch.problems, None, source, batch.error)

    def malformed_frame(self, text: str) -> None:
        """A message that is not vLLM's three frames (topic, 8-byte seq, payload)."""
        self.problems.malformed_frames += 1
        self.errors.append(text)
        self._log(None, None, "malformed", 1, None, "live", text)

    def gap(self, first: int, end: int, recovered: int) -> None:
        self.missed_batches += end - first
        self.gaps.append(Gap(first, end, recovered))

    def _log(self, seq, ts, kind, count, first_hash, source, text="") -> None:
        self.log.append(LogEntry(seq, ts, kind, count, first_hash, source, text))

    def _rate(self, now: float, stored: int, removed: int) -> None:
        second = int(now)
        rates = self._rates
        if rates and rates[-1][0] == second:
            rates[-1][1] += stored
            rates[-1][2] += removed
        else:
            rates.append([second, stored, removed])

    # -- reading it ---------------------------------------------------------------------------
    @property
    def cached_now(self) -> int:
        """Distinct hashes cached now (per group and medium)."""
        return len(self.cached)

    @property
    def cached_blocks(self) -> int:
        """Blocks cached now: a hash stored twice while cached is two blocks."""
        return sum(self.cached.values())

    def by_group_medium(self) -> dict[tuple[int | None, str | None], int]:
        out: Counter[tuple[int | None, str | None]] = Counter()
        for (group, medium, _h), n in self.cached.items():
            out[(group, medium)] += n
        return dict(sorted(out.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))))

    def rates(self, now: float, seconds: int = 10) -> tuple[float, float]:
        """Stored and removed hashes per second over the last ``seconds`` whole seconds."""
        start = int(now) - seconds
        s = sum(r[1] for r in self._rates if start <= r[0] < int(now))
        r = sum(r[2] for r in self._rates if start <= r[0] < int(now))
        return s / seconds, r / seconds

    def _forest(self) -> tuple[Counter, dict, list]:
        """(copies per cached hash, children of each, roots): a root is a cached hash whose
        parent is not cached (or that has none)."""
        copies: Counter[Hash] = Counter()
        for (_g, _m, h), n in self.cached.items():
            copies[h] += n
        children: dict[Hash, list[Hash]] = {}
        roots: list[Hash] = []
        for h in copies:
            p = self.parent.get(h)
            if p is not None and p in copies and p != h:
                children.setdefault(p, []).append(h)
            else:
                roots.append(h)
        return copies, children, roots

    def _sizes(self, copies: Counter, children: dict, roots: list) -> dict:
        """Cached blocks and depth under every node: {hash: (blocks, depth)}."""
        sizes: dict[Hash, tuple[int, int]] = {}
        for root in roots:
            order: list[Hash] = []
            stack = [root]
            while stack:  # iterative: a long chain is thousands deep
                h = stack.pop()
                if h in sizes or h in order:
                    continue
                order.append(h)
                stack.extend(children.get(h, ()))
            for h in reversed(order):
                kids = [sizes[c] for c in children.get(h, ()) if c in sizes]
                sizes[h] = (copies[h] + sum(b for b, _d in kids),
                            1 + max((d for _b, d in kids), default=0))
        return sizes

    def prefixes(self, limit: int = 10) -> list[Prefix]:
        """The cached prefix trees with the most blocks: which prompts dominate the cache."""
        copies, children, roots = self._forest()
        sizes = self._sizes(copies, children, roots)
        out = [Prefix(r, *sizes[r]) for r in roots]
        out.sort(key=lambda p: (-p.blocks, -p.depth))
        return out[:limit]

    def tree(self, roots: int = 5, fanout: int = 3, levels: int = 4) -> list[tuple[int, Prefix]]:
        """The top of the prefix forest as (level, subtree) rows: the biggest trees, and
        under each its biggest branches, as deep as ``levels``. A chain without branching
        is one row (its depth says how long)."""
        copies, children, root_list = self._forest()
        sizes = self._sizes(copies, children, root_list)
        rows: list[tuple[int, Prefix]] = []

        def walk(h: Hash, level: int) -> None:
            rows.append((level, Prefix(h, *sizes[h])))
            # Follow a chain down to where it branches.
            kids = children.get(h, [])
            while len(kids) == 1:
                kids = children.get(kids[0], [])
            if level + 1 >= levels:
                return
            for c in sorted(kids, key=lambda k: -sizes[k][0])[:fanout]:
                walk(c, level + 1)

        for r in sorted(root_list, key=lambda k: (-sizes[k][0], -sizes[k][1]))[:roots]:
            walk(r, 0)
        return rows

    def forget_unreferenced(self) -> None:
        """Drop chain links of hashes no longer cached (a long attach stays bounded)."""
        live = {h for (_g, _m, h) in self.cached}
        self.parent = {h: p for h, p in self.parent.items() if h in live}
