"""Searching step records: the inspector's arrival and finish jumps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.model import StepRecord


def _finishes(record: StepRecord) -> bool:
    return bool(record.finished)


def _arrives(record: StepRecord) -> bool:
    return record.arrives


def _search(records: Sequence[StepRecord], start: int, step: int,
            pred: Callable[[StepRecord], bool]) -> int | None:
    i = start + step
    while 0 <= i < len(records):
        if pred(records[i]):
            return i
        i += step
    return None


def next_arrival(records: Sequence[StepRecord], after: int) -> int | None:
    """Index of the first record after ``after`` where a request arrives (None: none yet)."""
    return _search(records, after, 1, _arrives)


def next_finish(records: Sequence[StepRecord], after: int) -> int | None:
    """Index of the first record after ``after`` where a request finishes."""
    return _search(records, after, 1, _finishes)


def prev_arrival(records: Sequence[StepRecord], before: int) -> int | None:
    return _search(records, before, -1, _arrives)


def prev_finish(records: Sequence[StepRecord], before: int) -> int | None:
    return _search(records, before, -1, _finishes)
