"""vLLM's KV-cache events (vllm.distributed.kv_events) as engine.model.KVEvent: the one
conversion both backends use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, V
from engine.backends.vllm_v1.internals import AdapterMismatch
from engine.model import EventKind, KVEvent


def convert(raw: Iterable[Any]) -> tuple[KVEvent, ...]:
    # Thousands a step on a big pool (one BlockRemoved per evicted block): built with
    # tuple.__new__, not NamedTuple's Python-level __new__.
    make = tuple.__new__
    stored, removed, cleared = V.BlockStored, V.BlockRemoved, V.AllBlocksCleared
    out: list[KVEvent] = []
    append = out.append
    for ev in raw:
        kind = type(ev)
        if kind is removed or (kind is not stored and isinstance(ev, removed)):
            append(make(KVEvent, (EventKind.REMOVED, tuple(ev.block_hashes), None, 0,
                                  ev.group_idx, ev.medium)))
        elif isinstance(ev, stored):
            append(make(KVEvent, (EventKind.STORED, tuple(ev.block_hashes), ev.parent_block_hash,
                                  len(ev.token_ids), ev.group_idx, ev.medium)))
        elif isinstance(ev, cleared):
            append(KVEvent(EventKind.CLEARED, medium=getattr(ev, "medium", None)))
        else:
            # A new event class would be silently miscounted: say so instead.
            raise AdapterMismatch(
                f"vLLM {V.version} emitted a KV event prefix-tui does not know "
                f"({type(ev).__name__}; tested with {TESTED_VLLM_VERSION})"
            )
    return tuple(out)


def count_removed(raw: Iterable[Any]) -> int:
    """Hashes in BlockRemoved events: cached blocks vLLM evicted (the headless fast path)."""
    removed = V.BlockRemoved
    return sum(len(ev.block_hashes) for ev in raw if isinstance(ev, removed))
