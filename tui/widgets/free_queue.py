"""vLLM's free queue at the cursor: the blocks it will hand out next, in order.

On vLLM V0 the "queue" is its hashless free list followed by its LRU evictor in the
order LRUEvictor.evict() would take it (the V0 records keep that order).

vLLM V1 allocates from the head of its free queue. A cached-free block there still holds
a prefix's KV and its hash; handing it out is what evicts it. So this list is the
eviction order, and the "c" chips are the cached prefixes about to be lost.
Clicking a chip selects that block.

Drawn with the Line API (chips laid out once per step, a Segment per chip): this pane
changes on every step and a rich Text of 64 styled chips cost more than the pool map.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.strip import Strip
from textual.widget import Widget

from engine.model import Slot, StepRecord, slot_status
from tui.messages import BlockClicked
from tui.widgets import palette


class FreeQueuePanel(Widget):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def __init__(self, null_block_id: int | None = 0, **kw) -> None:
        super().__init__(**kw)
        self.null_block_id = null_block_id  # None: vLLM V0, which has no null block
        self.record: StepRecord | None = None
        self._pool: Sequence[Slot] = ()
        self._palette = palette.Palette(self)
        # Chip rows: per row, a list of (x0, block id, glyph); the first line is the title.
        self._rows: list[list[tuple[int, int, str]]] = []

    def show(self, record: StepRecord | None, pool: Sequence[Slot]) -> None:
        self.record = record
        self._pool = pool
        self._layout()
        self.refresh()  # fixed height (app.tcss): no relayout of the screen per step

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def chips(self) -> list[tuple[int, str]]:
        """(block id, glyph) in queue order; tests read this."""
        if self.record is None:
            return []
        out = []
        for bid in self.record.free_head:
            slot = self._pool[bid] if bid < len(self._pool) else (0, None)
            cls = palette.pool_class(slot_status(bid, slot, self.null_block_id), slot[0])
            out.append((bid, palette.pool_glyph(cls, slot[0])))
        return out

    def _layout(self) -> None:
        width = max(1, self.content_size.width)
        rows: list[list[tuple[int, int, str]]] = [[]]
        x = 0
        for bid, glyph in self.chips():
            w = 1 + len(str(bid))
            if x + w > width and rows[-1]:
                rows.append([])
                x = 0
            rows[-1].append((x, bid, glyph))
            x += w + 1
        self._rows = rows

    def _title(self) -> Text:
        rec = self.record
        if rec is None:
            return Text("no step yet", style=self._palette[palette.LABEL])
        if rec.v0 is not None:
            # V0 hands out its hashless free list first, then evicts in its LRU order.
            return Text.assemble(
                (f"{rec.num_free:,} free", "bold"),
                (f" ({rec.v0.num_evictor:,} in V0's evictor)", ""),
                (" · free list, then the evictor: oldest access first, deepest at equal "
                 "times; a c handed out is evicted", self._palette[palette.LABEL]),
            )
        return Text.assemble(
            (f"{rec.num_free:,} free", "bold"),
            (f" ({rec.num_cached_free:,} cached-free)" if rec.num_cached_free >= 0 else "", ""),
            (" · handed out from the left; a c handed out is evicted", self._palette[palette.LABEL]),
        )

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        base = self.rich_style
        pal = self._palette
        if y == 0:
            strip = Strip(self._title().render(self.app.console)).apply_style(base)
            return strip.extend_cell_length(width, base).crop(0, width)
        row = y - 1
        if row >= len(self._rows):
            return Strip.blank(width, base)
        segments: list[Segment] = []
        x = 0
        cached = pal[palette.POOL_CACHED]
        free = pal[palette.POOL_FREE]
        for x0, bid, glyph in self._rows[row]:
            if x0 > x:
                segments.append(Segment(" " * (x0 - x), base))
            text = f"{glyph}{bid}"
            segments.append(Segment(text, cached if glyph == "c" else free))
            x = x0 + len(text)
        rec = self.record
        last = row == len(self._rows) - 1 or row == self.content_size.height - 2
        if last and rec is not None and rec.num_free > len(rec.free_head):
            more = f" … {rec.num_free - len(rec.free_head):,} more"
            segments.append(Segment(more, pal[palette.LABEL]))
        return Strip(segments).extend_cell_length(width, base).crop(0, width)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1 or offset.y - 1 >= len(self._rows):
            return
        for x0, bid, _glyph in self._rows[offset.y - 1]:
            if x0 <= offset.x < x0 + 1 + len(str(bid)):
                event.stop()
                self.post_message(BlockClicked(bid, source="queue"))
                return
