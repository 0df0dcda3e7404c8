"""The per-block parts of step records, stored as columns: Rows; the pool's Slot,
PoolChange and PoolDelta; evicted blocks and vLLM's KV events.

Standard library only, Python 3.10 syntax: engine.model imports it, and a V0 worker under
an older vLLM imports engine.model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import compress, repeat
from operator import is_
from typing import Generic, NamedTuple, TypeVar

RowT = TypeVar("RowT", bound=tuple)


class Rows(Generic[RowT]):
    """An immutable sequence of NamedTuple rows stored as one tuple per field.

    Records hold thousands of evicted blocks and KV events a step. NamedTuples stay tracked
    by the garbage collector for good (CPython untracks only exact tuples), so a long
    history of them made every full collection walk millions of objects; a column of ints
    or bytes is one object. Iterating, indexing and comparing give the NamedTuples."""

    __slots__ = ("row_type", "columns")

    def __init__(self, row_type: type[RowT], columns: tuple[tuple, ...] = ()) -> None:
        self.row_type = row_type
        self.columns = columns or tuple(() for _ in row_type._fields)

    @classmethod
    def of(cls, row_type: type[RowT], rows: Iterable[RowT]) -> Rows[RowT]:
        listed = list(rows)
        if not listed:
            return cls(row_type)
        return cls(row_type, tuple(map(tuple, zip(*listed))))

    def column(self, name: str) -> tuple:
        return self.columns[self.row_type._fields.index(name)]

    def __len__(self) -> int:
        return len(self.columns[0])

    def __iter__(self) -> Iterator[RowT]:
        return map(tuple.__new__, repeat(self.row_type), zip(*self.columns))

    def __getitem__(self, i: int) -> RowT:
        return tuple.__new__(self.row_type, [c[i] for c in self.columns])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            return self.row_type is other.row_type and self.columns == other.columns
        if isinstance(other, (tuple, list)):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.columns)

    def __repr__(self) -> str:
        return f"Rows[{self.row_type.__name__}]({list(self)!r})"

    # Pickled to and from the V0 worker: __slots__ classes need their state spelled out.
    def __getstate__(self) -> tuple:
        return (self.row_type, self.columns)

    def __setstate__(self, state: tuple) -> None:
        self.row_type, self.columns = state


class Slot(NamedTuple):
    """One physical block as vLLM holds it."""

    ref_cnt: int
    block_hash: bytes | None  # the bare hash (as vLLM's KV events carry it), None: uncached
    group: int = 0  # the KV cache group its hash was cached for


FREE_SLOT = Slot(0, None)


class PoolChange(NamedTuple):
    block_id: int
    before: Slot
    after: Slot


@dataclass(frozen=True, slots=True)
class PoolDelta:
    """The blocks one step changed, as columns (one tuple per field, equal lengths).

    A detailed replay changes thousands of blocks a step; a PoolChange and two Slots per
    block cost more than vLLM's own work and, being tuples of objects the garbage collector
    must track, made full collections dominate. Columns of ints and bytes are a handful of
    objects a step. Iterating still yields PoolChange(block_id, before, after)."""

    block_ids: tuple[int, ...] = ()
    ref_before: tuple[int, ...] = ()
    ref_after: tuple[int, ...] = ()
    hash_before: tuple[bytes | None, ...] = ()
    hash_after: tuple[bytes | None, ...] = ()
    group_before: tuple[int, ...] = ()
    group_after: tuple[int, ...] = ()

    @classmethod
    def of(cls, changes: Iterable[PoolChange]) -> PoolDelta:
        rows = [(c.block_id, c.before.ref_cnt, c.after.ref_cnt, c.before.block_hash,
                 c.after.block_hash, c.before.group, c.after.group) for c in changes]
        return cls(*map(tuple, zip(*rows))) if rows else NO_CHANGE

    def __len__(self) -> int:
        return len(self.block_ids)

    def __iter__(self) -> Iterator[PoolChange]:
        make = tuple.__new__
        for bid, rb, ra, hb, ha, gb, ga in zip(
            self.block_ids, self.ref_before, self.ref_after, self.hash_before,
            self.hash_after, self.group_before, self.group_after,
        ):
            yield make(PoolChange, (bid, make(Slot, (rb, hb, gb)), make(Slot, (ra, ha, ga))))

    def __reversed__(self) -> Iterator[PoolChange]:
        return reversed(list(self))

    def after_slots(self) -> Iterator[Slot]:
        return map(tuple.__new__, repeat(Slot), zip(self.ref_after, self.hash_after,
                                                    self.group_after))

    def before_slots(self) -> Iterator[Slot]:
        return map(tuple.__new__, repeat(Slot), zip(self.ref_before, self.hash_before,
                                                    self.group_before))

    def __eq__(self, other: object) -> bool:
        # Also equal to a plain sequence of the same PoolChanges (tests compare with ()).
        if isinstance(other, PoolDelta):
            return tuple.__eq__(self._columns(), other._columns())
        if isinstance(other, (tuple, list)):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._columns())

    def _columns(self) -> tuple:
        return (self.block_ids, self.ref_before, self.ref_after, self.hash_before,
                self.hash_after, self.group_before, self.group_after)


NO_CHANGE = PoolDelta()


class EvictedBlock(NamedTuple):
    block_id: int
    block_hash: bytes  # the content it lost


class EventKind(str, Enum):
    STORED = "stored"
    REMOVED = "removed"
    CLEARED = "cleared"

    # Shown and used as a style name by its value ("stored"), as a plain string was.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


class KVEvent(NamedTuple):
    """vLLM's KV-cache event, reduced to plain data (hashes as bytes). A NamedTuple: a
    detailed replay makes one per evicted block (vLLM emits BlockRemoved block by block)."""

    kind: EventKind
    block_hashes: tuple[bytes, ...] = ()
    parent_hash: bytes | None = None
    num_tokens: int = 0
    group: int | None = None  # vLLM's group_idx (None: vLLM did not say)
    medium: str | None = None  # vLLM's medium ("GPU", "CPU"; None: vLLM did not say)


def removed_count(events: Rows[KVEvent] | Iterable[KVEvent]) -> int:
    """Hashes in BlockRemoved events: the cached blocks vLLM evicted."""
    removed = EventKind.REMOVED
    if isinstance(events, Rows):
        kinds, hashes = events.columns[0], events.columns[1]
        return sum(map(len, compress(hashes, map(is_, kinds, repeat(removed)))))
    return sum(len(e.block_hashes) for e in events if e.kind is removed)


NO_EVENTS: Rows[KVEvent] = Rows(KVEvent)
NO_EVICTIONS: Rows[EvictedBlock] = Rows(EvictedBlock)


def evictions(blocks: Iterable[EvictedBlock] = ()) -> Rows[EvictedBlock]:
    return Rows.of(EvictedBlock, blocks)


def kv_events(events: Iterable[KVEvent] = ()) -> Rows[KVEvent]:
    return Rows.of(KVEvent, events)
