"""vLLM's free queue at the cursor: the blocks it will hand out next, in order.

vLLM V1 allocates from the head of its free queue. A cached-free block there still holds
a prefix's KV and its hash; handing it out is what evicts it. So this list is the
eviction order, and the "c" chips are the cached prefixes about to be lost.
Clicking a chip selects that block.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from engine.records import Slot, StepRecord, slot_status
from tui.widgets import palette


class FreeQueuePanel(Widget):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.record: StepRecord | None = None
        self._pool: Sequence[Slot] = ()
        self._palette = palette.Palette(self)

    def show(self, record: StepRecord | None, pool: Sequence[Slot]) -> None:
        self.record = record
        self._pool = pool
        self.refresh()  # fixed height (app.tcss): no relayout of the screen per step

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()

    def chips(self) -> list[tuple[int, str]]:
        """(block id, glyph) in queue order; tests read this."""
        if self.record is None:
            return []
        out = []
        for bid in self.record.free_head:
            slot = self._pool[bid] if bid < len(self._pool) else (0, None)
            cls = palette.pool_class(slot_status(bid, slot), slot[0])
            out.append((bid, palette.pool_glyph(cls, slot[0])))
        return out

    def render(self) -> Text:
        pal = self._palette
        rec = self.record
        if rec is None:
            return Text("no step yet", style=pal[palette.LABEL])
        text = Text.assemble(
            (f"{rec.num_free:,} free", "bold"),
            (f" ({rec.num_cached_free:,} cached-free)" if rec.num_cached_free >= 0 else "", ""),
            (" · handed out from the left; a c handed out is evicted", pal[palette.LABEL]),
            "\n",
        )
        for bid, glyph in self.chips():
            cls = palette.POOL_CACHED if glyph == palette.POOL_GLYPH[palette.POOL_CACHED] else palette.POOL_FREE
            text.append(f"{glyph}{bid}", pal[cls] + Style(meta={"@click": f"app.select_block({bid})"}))
            text.append(" ")
        if rec.num_free > len(rec.free_head):
            text.append(f"… {rec.num_free - len(rec.free_head):,} more", pal[palette.LABEL])
        return text
