"""Pool map geometry: cells laid out in rows, sized to how many blocks there are.

The first layout that fits the visible height wins, biggest first, so a 24-block teaching
pool becomes large chips on a projector and a 100,000-block pool one glyph per block:

    roomy   " c17 " chips, a blank line between rows
    wide    "c17" chips
    normal  "c" and a gap, rows labelled with their first block id
    dense   "c" alone (colour bands, still one glyph per block)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grid:
    count: int  # cells
    id_width: int  # digits of the largest block id
    chip: int  # columns of one cell's coloured chip
    gap: int  # blank columns after each chip
    pad: int  # blank columns inside the chip before the glyph (roomy)
    show_id: bool  # the chip prints the block id after the glyph
    label: int  # columns of the row label ("  1200 "), 0 when chips show ids
    per_row: int
    row_height: int  # 2: a blank line under each row of chips

    @property
    def cell(self) -> int:
        return self.chip + self.gap

    @property
    def rows(self) -> int:
        return -(-self.count // self.per_row) if self.count else 0

    @property
    def lines(self) -> int:
        return self.rows * self.row_height

    def row_of(self, index: int) -> int:
        return index // self.per_row

    def index_at(self, x: int, line: int) -> int | None:
        """The cell under column ``x`` of display line ``line``, or None (label, gap, past
        the end)."""
        row, sub = divmod(line, self.row_height)
        if sub or x < self.label:
            return None
        col, within = divmod(x - self.label, self.cell)
        if col >= self.per_row or within >= self.chip:
            return None
        index = row * self.per_row + col
        return index if index < self.count else None


def make_grid(count: int, width: int, height: int, max_id: int) -> Grid:
    idw = len(str(max(max_id, 0)))
    width, height = max(width, 1), max(height, 1)

    def fits(cell: int, label: int = 0) -> tuple[int, int]:
        per_row = max(1, (width - label) // cell)
        return per_row, -(-count // per_row)

    per_row, rows = fits(idw + 4)
    if rows <= height:
        row_height = 2 if 2 * rows - 1 <= height else 1
        return Grid(count, idw, idw + 3, 1, 1, True, 0, per_row, row_height)
    per_row, rows = fits(idw + 2)
    if rows <= height:
        return Grid(count, idw, idw + 1, 1, 0, True, 0, per_row, 1)
    label = idw + 1
    per_row, rows = fits(2, label)
    if rows <= 8 * height:
        return Grid(count, idw, 1, 1, 0, False, label, per_row, 1)
    per_row, rows = fits(1, label)
    return Grid(count, idw, 1, 0, 0, False, label, per_row, 1)
