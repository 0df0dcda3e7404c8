"""The block pool: every physical block as one cell, drawn with the Line API.

A 100,000-block pool must scroll and step smoothly, so there is one widget, not one per
block: ``render_line`` draws only the visible rows, and each row's Strip is kept in an LRU
cache; a step drops and repaints (``refresh_lines``) only the rows holding blocks it
changed, a jump drops them all.

``held_glyphs`` (serve mode, where many blocks are held at once): when cells print their
block id, a held block prints "=" (ref count 1) or "s" (ref count > 1), as the running
block tables do, instead of a ref-count digit that would run into the id ("41" for block 1
with ref count 4). Cells without ids keep the digit; the shading follows the ref count.

``group_glyphs`` (a model with several KV cache groups, --hf-config): a block with a hash
prints the number of the group it was cached for (vLLM keys its cache by hash and group),
shaded as in use or cached-free; an in-use block without a hash prints "=".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.model import BlockState, Slot
from tui.messages import BlockClicked
from tui.widgets import palette
from tui.widgets.cells import Grid, make_grid


class PoolMap(ScrollView, can_focus=True):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def __init__(self, num_blocks: int, null_block_id: int = 0, *, held_glyphs: bool = False,
                 **kw) -> None:
        super().__init__(**kw)
        self.num_blocks = num_blocks
        self.held_glyphs = held_glyphs
        self.group_glyphs = False
        self.null_block_id = null_block_id
        self._pool: Sequence[Slot] = ()
        self._current: Mapping[int, BlockState] = {}
        self._evicted: frozenset[int] = frozenset()
        self.selected: int | None = None
        self.marked: frozenset[int] = frozenset()  # cells a lesson points at
        self._grid = make_grid(num_blocks, 40, 10, num_blocks - 1)
        self._width = 40
        # Strips of drawn rows (row -> Strip), dropped row by row as blocks change.
        self._cache: LRUCache[int, Strip] = LRUCache(1024)
        self._palette = palette.Palette(self)
        self._style_map: dict[str, Style] = {}

    # -- attributes down: the app calls these on the UI thread --------------------------
    def show(
        self,
        pool: Sequence[Slot],
        current: Mapping[int, BlockState],
        evicted: frozenset[int],
        changed: Iterable[int] | None = None,
    ) -> None:
        """Draw the pool as of the cursor; ``pool`` is the cursor's live list (read only).

        ``changed``: the only blocks whose cell can differ from what is drawn (one step:
        its pool delta and both requests' blocks); None redraws every row (a jump)."""
        self._pool = pool
        self._current = current
        self._evicted = evicted
        if changed is None:
            self._cache.clear()
            self.refresh()
        else:
            per_row = self._grid.per_row
            self._invalidate_rows({bid // per_row for bid in changed})

    @property
    def pool(self) -> Sequence[Slot]:
        """The pool drawn (the cursor's History's; another replica's after a switch)."""
        return self._pool

    def select(self, block_id: int | None, *, scroll: bool = True) -> None:
        per_row = self._grid.per_row
        self._invalidate_rows({bid // per_row for bid in (self.selected, block_id) if bid is not None})
        self.selected = block_id
        if block_id is not None and scroll:
            line = self._grid.row_of(block_id) * self._grid.row_height
            top = round(self.scroll_offset.y)
            if not top <= line < top + self.scrollable_content_region.height:
                self.scroll_to(y=max(0, line - 2), animate=False)

    def mark(self, block_ids: frozenset[int]) -> None:
        """Light these blocks up (a lesson step's cells); the rows of those that change
        are repainted."""
        per_row = self._grid.per_row
        self._invalidate_rows({bid // per_row for bid in self.marked ^ block_ids})
        self.marked = block_ids

    def _invalidate_rows(self, rows: set[int]) -> None:
        """Drop these grid rows' strips and repaint only their lines."""
        height = self._grid.row_height
        for row in rows:
            self._cache.discard(row)
            self.refresh_lines(row * height)

    @property
    def grid(self) -> Grid:
        return self._grid

    # -- layout and drawing -----------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()
        self._style_map = {}
        self._cache.clear()

    def on_resize(self, event: events.Resize) -> None:
        region = self.scrollable_content_region
        # Lay out for the width without a vertical scrollbar; if one appears, the grid is
        # recomputed on the resize that follows.
        grid = make_grid(self.num_blocks, region.width, region.height, self.num_blocks - 1)
        if grid != self._grid or region.width != self._width:
            self._grid, self._width = grid, region.width
            self._cache.clear()
        self.virtual_size = Size(region.width, max(1, grid.lines - (grid.row_height - 1)))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        line = round(self.scroll_offset.y) + y
        width = self._width
        row, sub = divmod(line, self._grid.row_height)
        if sub:
            return Strip.blank(width, self.rich_style)
        strip = self._cache.get(row)
        if strip is None:
            strip = self._render_row(row, width)
            self._cache[row] = strip
        return strip

    def _render_row(self, row: int, width: int) -> Strip:
        # The hot path of a step on a big pool: one tight loop per visible row, runs of
        # equal cells merged into one Segment (a dense row of free blocks is one segment).
        grid, pal = self._grid, self._palette
        base = self.rich_style
        start = row * grid.per_row
        if start >= self.num_blocks:
            return Strip.blank(width, base)
        end = min(self.num_blocks, start + grid.per_row)
        segments: list[Segment] = []
        if grid.label:
            segments.append(Segment(f"{start:>{grid.label - 1}} ", pal[palette.LABEL]))
        pool, current, evicted = self._pool, self._current, self._evicted
        npool, null_id, selected, marked = len(pool), self.null_block_id, self.selected, self.marked
        show_id, id_w, pad = grid.show_id, grid.id_width, " " * grid.pad
        held_glyphs = self.held_glyphs and show_id
        group_glyphs = self.group_glyphs
        gap = " " * grid.gap
        styles = self._styles()
        run_text: list[str] = []
        run_style = None
        for bid in range(start, end):
            state = current.get(bid)
            if state is not None:
                cls, glyph = palette.STATE_CLASS[state], state.letter
            elif bid in evicted:
                cls, glyph = palette.POOL_EVICTED, "!"
            else:
                ref, block_hash, group = pool[bid] if bid < npool else (0, None, 0)
                if bid == null_id:
                    cls, glyph = palette.POOL_NULL, "x"
                elif group_glyphs and (ref > 0 or block_hash is not None):
                    cls = (palette.POOL_CACHED if ref == 0 else
                           palette.POOL_USED if ref == 1 else palette.POOL_USED_MANY)
                    glyph = "=" if block_hash is None else str(group) if group < 10 else "+"
                elif ref > 0:
                    cls = palette.POOL_USED if ref == 1 else palette.POOL_USED_MANY
                    if held_glyphs:
                        glyph = "s" if ref > 1 else "="
                    else:
                        glyph = str(ref) if ref < 10 else "+"
                elif block_hash is not None:
                    cls, glyph = palette.POOL_CACHED, "c"
                else:
                    cls, glyph = palette.POOL_FREE, "·"
            style = styles[cls]
            if bid == selected:
                style = style + styles[palette.SELECTED]
            elif bid in marked:
                style = style + styles[palette.MARKED]
            text = f"{pad}{glyph}{bid:<{id_w}}{pad}" if show_id else glyph
            if style is not run_style:
                if run_text:
                    segments.append(Segment("".join(run_text), run_style))
                run_text, run_style = [], style
            run_text.append(text)
            if gap:
                # The gap takes the base style, so it ends the run.
                segments.append(Segment("".join(run_text), run_style))
                segments.append(Segment(gap, base))
                run_text, run_style = [], None
        if run_text:
            segments.append(Segment("".join(run_text), run_style))
        return Strip(segments).extend_cell_length(width, base).crop(0, width)

    def _styles(self) -> dict[str, Style]:
        if not self._style_map:
            pal = self._palette
            self._style_map = {name: pal[name] for name in palette.COMPONENT_CLASSES}
        return self._style_map

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
