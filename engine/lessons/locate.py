"""Line numbers for a lesson file's keys, which tomllib does not keep.

A lesson file is TOML: top-level keys, then ``[[step]]`` tables. tomllib reports syntax
errors with a line but hands back plain values, so a wrong value (a typo'd key, a bad
type) would have no line to name. This scan finds, per table, the line each key is set
on: good enough for the flat files lessons are (no inline tables spanning lines, no
dotted keys), and it falls back to the table's header line, never to a wrong place.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")


class KeyLines:
    """``top``: key -> line of the top-level table; ``tables[name][i]``: the i-th
    ``[[name]]`` table's header line and its key -> line."""

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.tables: dict[str, list[tuple[int, dict[str, int]]]] = {}
        current = self.top
        quote: str | None = None  # inside a multi-line string opened by this delimiter
        for number, line in enumerate(text.splitlines(), start=1):
            if quote is not None:
                if line.count(quote) % 2 == 1:
                    quote = None
                continue
            header = _HEADER.match(line)
            if header:
                current = {}
                self.tables.setdefault(header.group(1), []).append((number, current))
                continue
            key = _KEY.match(line)
            if key:
                name = next(g for g in key.groups() if g is not None)
                current.setdefault(name, number)
            for delim in ('"""', "'''"):
                if line.count(delim) % 2 == 1:
                    quote = delim
                    break

    def line_of(self, key: str | None = None, table: str | None = None, index: int = 0) -> int:
        """The line ``key`` is set on (in the index-th ``[[table]]``, or at the top); the
        table's header line (or 1) when the key is not there."""
        if table is None:
            return self.top.get(key, 1) if key is not None else 1
        entries = self.tables.get(table, [])
        if index >= len(entries):
            return 1
        header, keys = entries[index]
        return keys.get(key, header) if key is not None else header
