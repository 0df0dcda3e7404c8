"""The current request's block table: one cell per logical block, in order.

Each cell is the block's state letter and its physical block id (" H17 "), coloured by
state. A bar separates prompt blocks from blocks allocated while decoding the output, so
the R cell (vLLM recomputing the last prompt block) sits visibly at the end of the prompt.

Line API with a fixed height and its own scroll offset: a 100k-token prompt has thousands
of blocks, and a ScrollView would change its virtual size (a relayout of the whole screen)
on nearly every step. Wheel, ↑/↓ when focused, and block selection scroll it.

A model with several KV cache groups (--hf-config) has one block table per group: each
is drawn under a line naming the group ("group 0 · sliding window 128 · 12 layers"), and
places where vLLM put its null block (outside a sliding window) show as "-".
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.strip import Strip
from textual.widget import Widget

from engine.replay.common import counted
from engine.model import BlockState, GroupTable, KVGroupInfo, SeqView
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
        self.groups: tuple[KVGroupInfo, ...] = ()  # vLLM's KV cache groups (headers)
        # Per row: its group's index in seq.tables, and (x0, x1, position in that table)
        # per cell; a row without cells is the group's header. Rebuilt on show/resize.
        self._rows: list[list[tuple[int, int, int]]] = []
        self._row_table: list[int] = []
        self._palette = palette.Palette(self)

    # -- attributes down ----------------------------------------------------------------------
    def show(self, seq: SeqView | None, placeholder: str = "",
             groups: tuple[KVGroupInfo, ...] = ()) -> None:
        self.top = 0
        self.seq = seq
        self.placeholder = placeholder
        if len(groups) > 1 and len(self.groups) != len(groups):
            # Once, when vLLM's groups are known: a header and two rows per group (the
            # height stays fixed from then on: no relayout per step).
            self.styles.height = min(2 + 3 * len(groups), 20)
        self.groups = groups
        self._layout()

    @property
    def tables(self) -> tuple[GroupTable, ...]:
        return self.seq.tables if self.seq else ()

    @property
    def several(self) -> bool:
        return len(self.tables) > 1

    def select(self, block_id: int | None) -> None:
        self.selected = block_id
        found = self._find(block_id) if block_id is not None else None
        if found is not None:
            t, pos = found
            row = next((r for r, cells in enumerate(self._rows)
                        if cells and self._row_table[r] == t and cells[0][2] <= pos <= cells[-1][2]), 0)
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
        """The state letters in block-table order (what the cells print first); with
        several groups, each group's letters, separated by "|"."""
        return "|".join("".join(s.letter for s in t.states) for t in self.tables)

    @property
    def block_ids(self) -> tuple[int, ...]:
        """The blocks [ / ] walk: every group's real blocks, in table order (a null block
        is no place to stop)."""
        if not self.several:
            return self.seq.block_ids if self.seq else ()
        return tuple(b for t in self.tables for b, s in zip(t.block_ids, t.states)
                     if s is not BlockState.SKIPPED)

    def position_of(self, block_id: int) -> int | None:
        try:
            return self.block_ids.index(block_id)
        except ValueError:
            return None

    def _find(self, block_id: int) -> tuple[int, int] | None:
        """(table, position) of a block: the first group table holding it."""
        for t, table in enumerate(self.tables):
            if block_id in table.block_ids:
                return t, table.block_ids.index(block_id)
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
        owner: list[int] = []
        seq = self.seq
        first_output = seq.num_prompt_blocks if seq else 0
        for t, table in enumerate(self.tables):
            if self.several:
                rows.append([])  # the group's header line
                owner.append(t)
            row: list[tuple[int, int, int]] = []
            x = 0
            for i in range(len(table.block_ids)):
                if i == first_output and i:
                    x += len(SEPARATOR)
                if x + cell - 1 > width and row:
                    rows.append(row)
                    owner.append(t)
                    row, x = [], len(SEPARATOR) if i == first_output and i else 0
                row.append((x, x + cell - 1, i))
                x += cell
            if row:
                rows.append(row)
                owner.append(t)
        self._rows, self._row_table = rows, owner
        self.refresh()

    def header(self, t: int) -> str:
        """"group 0 · sliding window 128 · 12 layers · 8 blocks (16 null)"."""
        table = self.tables[t]
        g = next((g for g in self.groups if g.index == table.group), None)
        what = f" · {g.label} · {counted(g.num_layers, 'layer')}" if g else ""
        null = sum(1 for s in table.states if s is BlockState.SKIPPED)
        real = counted(len(table.block_ids) - null, "block")
        return f"group {table.group}{what} · {real}" + (f" ({null:,} null)" if null else "")

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
        if seq is None or not any(t.block_ids for t in seq.tables):
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
        table = self.tables[self._row_table[index]]
        if not self._rows[index]:
            return self._text_strip(Text(self.header(self._row_table[index]),
                                         style=pal[palette.LABEL] + Style(bold=True)), width)
        segments: list[Segment] = []
        x = 0
        first_output = seq.num_prompt_blocks
        for x0, _x1, i in self._rows[index]:
            if x0 > x:
                gap = " " * (x0 - x)
                if i == first_output and i and x0 - x >= len(SEPARATOR):
                    gap = " " * (x0 - x - len(SEPARATOR)) + SEPARATOR
                segments.append(Segment(gap, pal[palette.LABEL]))
            bid, state = table.block_ids[i], table.states[i]
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
        table = self.tables[self._row_table[index]]
        for x0, x1, i in self._rows[index]:
            if x0 <= offset.x < x1:
                event.stop()
                if table.states[i] is not BlockState.SKIPPED:  # the null block: nothing to show
                    self.post_message(BlockClicked(table.block_ids[i], source="table"))
                return


def state_at(seq: SeqView | None, block_id: int) -> BlockState | None:
    """The block's state in the sequence's tables (the first group holding it)."""
    if seq is None:
        return None
    for table in seq.tables:
        if block_id in table.block_ids:
            return table.states[table.block_ids.index(block_id)]
    return None
