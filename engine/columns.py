"""Rows stored as columns: the container step records use for their per-block parts.

Standard library only, Python 3.10 syntax: engine.model imports it, and a V0 worker under
an older vLLM imports engine.model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Generic, TypeVar

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
