"""vLLM's KV-cache events (vllm.distributed.kv_events) as engine.model.KVEvent: the one
conversion both backends use."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, compress, repeat
from operator import attrgetter, is_
from typing import Any

from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, V
from engine.backends.vllm_v1.internals import AdapterMismatch
from engine.model import NO_EVENTS, EventKind, KVEvent, Rows


_HASHES = attrgetter("block_hashes")
_GROUP = attrgetter("group_idx")
_MEDIUM = attrgetter("medium")


def convert(raw: Iterable[Any]) -> Rows[KVEvent]:
    """vLLM's events as KVEvent columns. Thousands a step on a big pool (vLLM emits one
    BlockRemoved per evicted block), so a step of BlockStored and BlockRemoved events only,
    the usual step, is converted column by column in C; others event by event."""
    raw = raw if isinstance(raw, list) else list(raw)
    if not raw:
        return NO_EVENTS
    stored, removed = V.BlockStored, V.BlockRemoved
    types = list(map(type, raw))
    if not set(types) <= {stored, removed}:
        return Rows.of(KVEvent, map(_one, raw))
    # Column by column with C-level maps; BlockRemoved has no parent or tokens.
    kind_of = {stored: EventKind.STORED, removed: EventKind.REMOVED}
    return Rows(KVEvent, (
        tuple(map(kind_of.__getitem__, types)),
        tuple(map(tuple, map(_HASHES, raw))),
        tuple(map(getattr, raw, repeat("parent_block_hash"), repeat(None))),
        tuple(map(len, map(getattr, raw, repeat("token_ids"), repeat(())))),
        tuple(map(_GROUP, raw)),
        tuple(map(_MEDIUM, raw)),
    ))


def _one(ev: Any) -> KVEvent:
    stored, removed, cleared = V.BlockStored, V.BlockRemoved, V.AllBlocksCleared
    if isinstance(ev, removed):
        return KVEvent(EventKind.REMOVED, tuple(ev.block_hashes), None, 0, ev.group_idx,
                       ev.medium)
    if isinstance(ev, stored):
        return KVEvent(EventKind.STORED, tuple(ev.block_hashes), ev.parent_block_hash,
                       len(ev.token_ids), ev.group_idx, ev.medium)
    if isinstance(ev, cleared):
        return KVEvent(EventKind.CLEARED, medium=getattr(ev, "medium", None))
    # A new event class would be silently miscounted: say so instead.
    raise AdapterMismatch(
        f"vLLM {V.version} emitted a KV event prefix-tui does not know "
        f"({type(ev).__name__}; tested with {TESTED_VLLM_VERSION})"
    )


def count_removed(raw: Iterable[Any]) -> int:
    """Hashes in BlockRemoved events: cached blocks vLLM evicted (the headless fast path)."""
    removed = V.BlockRemoved
    return sum(len(ev.block_hashes) for ev in raw if isinstance(ev, removed))


def hashes(raw: Iterable[Any], group: int = 0) -> tuple[list[bytes], list[bytes], int]:
    """The hashes of one KV cache group's BlockStored and BlockRemoved events, in order
    (what the miss-reason history needs when a replay keeps no KVEvent records), and the
    hashes removed in every group (the step's evictions). Column by column in C when every
    event is the group's (one group: the usual layout), as vLLM emits one BlockRemoved per
    evicted block: thousands a step on a big pool."""
    raw = raw if isinstance(raw, list) else list(raw)
    stored_cls, removed_cls = V.BlockStored, V.BlockRemoved
    mine = {None, 0} if group == 0 else {group}  # vLLM 0.33 names group 0; older None
    if set(map(getattr, raw, repeat("group_idx"), repeat(None))) <= mine:
        types = list(map(type, raw))
        removed = list(chain.from_iterable(
            map(_HASHES, compress(raw, map(is_, types, repeat(removed_cls))))))
        stored = list(chain.from_iterable(
            map(_HASHES, compress(raw, map(is_, types, repeat(stored_cls))))))
        return stored, removed, len(removed)
    stored, removed, n_removed = [], [], 0
    for ev in raw:
        mine = (getattr(ev, "group_idx", None) or 0) == group
        if isinstance(ev, removed_cls):
            n_removed += len(ev.block_hashes)
            if mine:
                removed.extend(ev.block_hashes)
        elif mine and isinstance(ev, stored_cls):
            stored.extend(ev.block_hashes)
    return stored, removed, n_removed
