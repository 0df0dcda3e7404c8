"""The current request's block table: one cell per logical block, in order.

Each cell is the block's state letter and its physical block id (" H17 "), coloured by
state. A bar separates prompt blocks from blocks allocated while decoding the output, so
the R cell (vLLM recomputing the last prompt block) sits visibly at the end of the prompt.

Line API with a fixed height and its own scroll offset: a 100k-token prompt has thousands
of blocks, and a ScrollView would change its virtual size (a relayout of the whole screen)
on nearly every step. Wheel, ↑/↓ when focused, and block selection scroll it.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.strip import Strip
from textual.widget import Widget

from engine.replay.common import counted
from engine.model import BlockState, SeqView
from tui.messages import BlockClicked
from tui.widgets import palette
from tui.widgets.line_scroll import LineScroll
from tui.widgets.safe import safe_text

SEPARATOR = "│ "


class BlockTable(LineScroll, Widget, can_focus=True):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES
    BINDINGS = [
        Binding("up", "scroll_rows(-1)", "Up", show=False),
        Binding("down", "scroll_rows(1)", "Down", show=False),
    ]

    def __init__(self, num_blocks: int, **kw) -> None:
        super().__init__(**kw)
        self._id_width = len(str(max(num_blocks - 1, 0)))
        self.seq: SeqView | None = None
        self.placeholder = ""
        self.selected: int | None = None
        self.marked: frozenset[int] = frozenset()  # cells a lesson points at
        self.top = 0  # first row of cells shown
        # Per row: list of (x0, x1, position in the block table); rebuilt on show/resize.
        self._rows: list[list[tuple[int, int, int]]] = []
        self._palette = palette.Palette(self)

    # -- attributes down ----------------------------------------------------------------------
    def show(self, seq: SeqView | None, placeholder: str = "") -> None:
        self.top = 0
        self.seq = seq
        self.placeholder = placeholder
        self._layout()

    def select(self, block_id: int | None) -> None:
        self.selected = block_id
        pos = self.position_of(block_id) if block_id is not None else None
        if pos is not None:
            row = next((r for r, cells in enumerate(self._rows) if cells[0][2] <= pos <= cells[-1][2]), 0)
            height = max(1, self.content_size.height)
            if not self.top <= row < self.top + height:
                self.top = max(0, row - height + 1) if row >= self.top else row
        self.refresh()

    def mark(self, block_ids: frozenset[int]) -> None:
        if block_ids != self.marked:
            self.marked = block_ids
            self.refresh()

    @property
    def letters(self) -> str:
        """The state letters in block-table order (what the cells print first)."""
        return "".join(s.letter for s in self.seq.states) if self.seq else ""

    @property
    def block_ids(self) -> tuple[int, ...]:
        return self.seq.block_ids if self.seq else ()

    def position_of(self, block_id: int) -> int | None:
        if self.seq is None:
            return None
        try:
            return self.seq.block_ids.index(block_id)
        except ValueError:
            return None

    # -- scrolling ----------------------------------------------------------------------------
    def action_scroll_rows(self, delta: int) -> None:
        self._scroll(delta)

    def _line_count(self) -> int:
        return len(self._rows)

    # -- layout ---------------------------------------------------------------------------------
    def _layout(self) -> None:
        width = max(1, self.content_size.width)
        cell = self._id_width + 4  # " H17 " and a gap
        rows: list[list[tuple[int, int, int]]] = []
        row: list[tuple[int, int, int]] = []
        x = 0
        seq = self.seq
        n = len(seq.block_ids) if seq else 0
        first_output = seq.num_prompt_blocks if seq else 0
        for i in range(n):
            if i == first_output and i:
                x += len(SEPARATOR)
            if x + cell - 1 > width and row:
                rows.append(row)
                row, x = [], len(SEPARATOR) if i == first_output and i else 0
            row.append((x, x + cell - 1, i))
            x += cell
        if row:
            rows.append(row)
        self._rows = rows
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        base = self.rich_style
        pal = self._palette
        seq = self.seq
        if seq is None or not seq.block_ids:
            if y == 0 and self.placeholder:
                text = Text(safe_text(self.placeholder), style=pal[palette.LABEL], no_wrap=True)
                return self._text_strip(text, width)
            return Strip.blank(width, base)
        height = self.content_size.height
        index = self.top + y
        more = len(self._rows) - (self.top + height)
        if y == height - 1 and more > 0 and height > 1:
            hidden = sum(len(r) for r in self._rows[index:])
            text = Text(f"… {counted(hidden, 'more block')} below (scroll, or select one)", style=pal[palette.LABEL])
            return self._text_strip(text, width)
        if index >= len(self._rows):
            return Strip.blank(width, base)
        segments: list[Segment] = []
        x = 0
        first_output = seq.num_prompt_blocks
        for x0, _x1, i in self._rows[index]:
            if x0 > x:
                gap = " " * (x0 - x)
                if i == first_output and i and x0 - x >= len(SEPARATOR):
                    gap = " " * (x0 - x - len(SEPARATOR)) + SEPARATOR
                segments.append(Segment(gap, pal[palette.LABEL]))
            bid, state = seq.block_ids[i], seq.states[i]
            style = pal[palette.STATE_CLASS[state]]
            if bid == self.selected:
                style = style + pal[palette.SELECTED]
            elif bid in self.marked:
                style = style + pal[palette.MARKED]
            text = f" {state.letter}{bid:<{self._id_width}} "
            segments.append(Segment(text, style))
            x = x0 + len(text)
        return Strip(segments).extend_cell_length(width, base).crop(0, width)

    def _text_strip(self, text: Text, width: int) -> Strip:
        base = self.rich_style
        strip = Strip(text.render(self.app.console)).apply_style(base)
        return strip.extend_cell_length(width, base).crop(0, width)

    # -- mouse --------------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.seq is None:
            return
        index = self.top + offset.y
        if index >= len(self._rows):
            return
        for x0, x1, i in self._rows[index]:
            if x0 <= offset.x < x1:
                event.stop()
                self.post_message(BlockClicked(self.seq.block_ids[i], source="table"))
                return


def state_at(seq: SeqView | None, block_id: int) -> BlockState | None:
    if seq is None:
        return None
    try:
        return seq.states[seq.block_ids.index(block_id)]
    except ValueError:
        return None
