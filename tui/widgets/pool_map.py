"""The block pool: every physical block as one cell, drawn with the Line API.

A 100,000-block pool must scroll and step smoothly, so there is one widget, not one per
block: ``render_line`` draws only the visible rows, and each row's Strip is kept in an LRU
cache keyed by the step generation, which the app bumps on every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.segment import Segment
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.records import BlockState, Slot, slot_status
from tui.messages import BlockClicked
from tui.widgets import palette
from tui.widgets.cells import Grid, make_grid


class PoolMap(ScrollView, can_focus=True):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def __init__(self, num_blocks: int, null_block_id: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.num_blocks = num_blocks
        self.null_block_id = null_block_id
        self._pool: Sequence[Slot] = ()
        self._current: Mapping[int, BlockState] = {}
        self._evicted: frozenset[int] = frozenset()
        self.selected: int | None = None
        self._generation = 0
        self._grid = make_grid(num_blocks, 40, 10, num_blocks - 1)
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)
        self._palette = palette.Palette(self)

    # -- attributes down: the app calls these on the UI thread --------------------------
    def show(
        self,
        pool: Sequence[Slot],
        current: Mapping[int, BlockState],
        evicted: frozenset[int],
    ) -> None:
        """Draw the pool as of the cursor; ``pool`` is the cursor's live list (read only)."""
        self._pool = pool
        self._current = current
        self._evicted = evicted
        self._invalidate()

    def select(self, block_id: int | None, *, scroll: bool = True) -> None:
        self.selected = block_id
        self._invalidate()
        if block_id is not None and scroll:
            line = self._grid.row_of(block_id) * self._grid.row_height
            top = round(self.scroll_offset.y)
            if not top <= line < top + self.scrollable_content_region.height:
                self.scroll_to(y=max(0, line - 2), animate=False)

    def cell(self, block_id: int) -> tuple[str, str]:
        """(component class, glyph) of one block as drawn now; tests read this."""
        state = self._current.get(block_id)
        if state is not None:
            return palette.STATE_CLASS[state], state.letter
        if block_id in self._evicted:
            return palette.POOL_EVICTED, palette.POOL_GLYPH[palette.POOL_EVICTED]
        slot = self._pool[block_id] if block_id < len(self._pool) else (0, None)
        cls = palette.pool_class(slot_status(block_id, slot, self.null_block_id), slot[0])
        return cls, palette.pool_glyph(cls, slot[0])

    @property
    def grid(self) -> Grid:
        return self._grid

    # -- layout and drawing -----------------------------------------------------------------
    def _invalidate(self) -> None:
        self._generation += 1
        self._cache.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()
        self._cache.clear()

    def on_resize(self, event: events.Resize) -> None:
        region = self.scrollable_content_region
        # Lay out for the width without a vertical scrollbar; if one appears, the grid is
        # recomputed on the resize that follows.
        grid = make_grid(self.num_blocks, region.width, region.height, self.num_blocks - 1)
        if grid != self._grid:
            self._grid = grid
            self._cache.clear()
        self.virtual_size = Size(region.width, max(1, grid.lines - (grid.row_height - 1)))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        line = round(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        key = (line, width, self._generation)
        strip = self._cache.get(key)
        if strip is None:
            row, sub = divmod(line, self._grid.row_height)
            strip = Strip.blank(width, self.rich_style) if sub else self._render_row(row, width)
            self._cache[key] = strip
        return strip

    def _render_row(self, row: int, width: int) -> Strip:
        grid, pal = self._grid, self._palette
        base = self.rich_style
        start = row * grid.per_row
        if start >= self.num_blocks:
            return Strip.blank(width, base)
        end = min(self.num_blocks, start + grid.per_row)
        segments: list[Segment] = []
        if grid.label:
            segments.append(Segment(f"{start:>{grid.label - 1}} ", pal[palette.LABEL]))
        gap = Segment(" " * grid.gap, base)
        pad = " " * grid.pad
        selected = self.selected
        id_w = grid.id_width
        for bid in range(start, end):
            cls, glyph = self.cell(bid)
            style = pal[cls]
            if bid == selected:
                style = style + pal[palette.SELECTED]
            if grid.show_id:
                segments.append(Segment(f"{pad}{glyph}{bid:<{id_w}}{pad}", style))
            else:
                segments.append(Segment(glyph, style))
            if grid.gap:
                segments.append(gap)
        return Strip(segments).simplify().extend_cell_length(width, base).crop(0, width)

    # -- mouse ------------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = round(self.scroll_offset.y) + offset.y
        index = self._grid.index_at(offset.x, line)
        if index is not None:
            event.stop()
            self.post_message(BlockClicked(index, source="pool"))
