"""The figures of an attach or a read-back stream as a --json document (keys in README:
"Attach")."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.kvevents.state import CacheState, Gap, LogEntry, Prefix, Problems

SCHEMA_VERSION = 1


def _hash_text(h: bytes | int) -> str | int:
    return h.hex() if isinstance(h, bytes) else h


def summary_dict(state: CacheState, *, status: str, seconds: float, source: dict) -> dict:
    p = state.problems
    return {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "status": status,
        "seconds": round(seconds, 3),
        "batches": state.batches,
        "stored": state.stored,
        "removed": state.removed,
        "cleared": state.cleared,
        "cached_now": state.cached_now,
        "cached_blocks": state.cached_blocks,
        "by_group_medium": [
            {"group": g, "medium": m, "blocks": n}
            for (g, m), n in state.by_group_medium().items()
        ],
        "hash_type": state.hash_type,
        "first_seq": state.first_seq,
        "last_seq": state.last_seq,
        "missed_batches": state.missed_batches,
        "recovered_batches": state.recovered_batches,
        "history_batches": state.history_batches,
        "gaps": [{"first": g.first, "end": g.end, "recovered": g.recovered}
                 for g in state.gaps],
        "malformed_frames": p.malformed_frames,
        "bad_events": p.bad_events,
        "unknown_tags": p.unknown_tags,
        "wrong_hash_types": p.wrong_hash_types,
        "unknown_removed": p.unknown_removed,
        "duplicates": p.duplicates,
        "errors": list(state.errors),
        "top_prefixes": [
            {"root": _hash_text(x.root), "blocks": x.blocks, "depth": x.depth}
            for x in state.prefixes(10)
        ],
    }


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What the attach view shows at one moment, computed where the state lives (the
    subscriber's thread) and handed to the screen whole."""

    batches: int
    stored: int
    removed: int
    cleared: int
    cached_now: int
    cached_blocks: int
    by_group_medium: tuple[tuple[int | None, str | None, int], ...]
    stored_per_s: float
    removed_per_s: float
    tree: tuple[tuple[int, Prefix], ...]  # (level, subtree): CacheState.tree()
    log: tuple[LogEntry, ...]  # the newest last
    gaps: tuple[Gap, ...]
    missed_batches: int
    recovered_batches: int
    history_batches: int
    problems: Problems
    errors: tuple[str, ...]
    hash_type: str | None
    last_seq: int | None
    silent_for_s: float
    done: bool = False  # the source ended (a file read to its end)


def live_figures(state: CacheState, *, now: float, silent_for_s: float, done: bool = False,
                 log_lines: int = 200, tree: tuple[tuple[int, Prefix], ...] | None = None
                 ) -> LiveFigures:
    """``tree``: a prefix tree computed earlier (it walks every cached hash), else now."""
    stored_s, removed_s = state.rates(now)
    log = tuple(state.log)[-log_lines:]
    return LiveFigures(
        batches=state.batches, stored=state.stored, removed=state.removed,
        cleared=state.cleared, cached_now=state.cached_now, cached_blocks=state.cached_blocks,
        by_group_medium=tuple((g, m, n) for (g, m), n in state.by_group_medium().items()),
        stored_per_s=stored_s, removed_per_s=removed_s,
        tree=tuple(state.tree()) if tree is None else tree,
        log=log, gaps=tuple(state.gaps[-20:]), missed_batches=state.missed_batches,
        recovered_batches=state.recovered_batches, history_batches=state.history_batches,
        problems=replace(state.problems), errors=tuple(state.errors)[-5:],
        hash_type=state.hash_type, last_seq=state.last_seq, silent_for_s=silent_for_s,
        done=done,
    )
