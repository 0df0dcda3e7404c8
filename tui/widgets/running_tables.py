"""Serve mode: the block table of every running sequence at once, one row per sequence.

Rows follow vLLM's running queue (its last sequence is the one preempted first). Each cell
is one logical block. The first layout that shows every sequence wins:

    chips  the state letter and the physical block id ("S17"), a bar before the first
           output block, wrapping under the request id
    wrap   the letter alone, one column per block, wrapping
    clip   the letter alone, one line per sequence, cut at the width with "+N" (scroll)

A block held since an earlier step that another live sequence holds too (ref count > 1 in
the pool at the cursor) prints "s" on the shared colour: two rows showing the same id are
one physical block. At the step a sequence takes a held block as a hit it shows S.

Line API with a fixed height and its own scroll offset, like the block table: 256
sequences of 100 blocks are 25,600 cells, so a step only lays out rows (O(sequences)) and
draws the visible lines; nothing changes the widget's size.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.strip import Strip
from textual.widget import Widget

from engine.model import BlockState, SeqView, Slot
from tui.messages import BlockClicked
from tui.widgets import palette
from tui.widgets.line_scroll import LineScroll
from tui.widgets.safe import clip, safe_text

LABEL_MAX = 12  # columns of a request id in the row label


class RunningTables(LineScroll, Widget, can_focus=True):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES
    BINDINGS = [
        Binding("up", "scroll_rows(-1)", "Up", show=False),
        Binding("down", "scroll_rows(1)", "Down", show=False),
        Binding("pageup", "scroll_page(-1)", "Page up", show=False),
        Binding("pagedown", "scroll_page(1)", "Page down", show=False),
    ]

    def __init__(self, num_blocks: int, **kw) -> None:
        super().__init__(**kw)
        self._id_width = len(str(max(num_blocks - 1, 0)))
        self.seqs: tuple[SeqView, ...] = ()
        self._pool: Sequence[Slot] = ()
        self.placeholder = ""
        self.selected: int | None = None
        self.marked: frozenset[int] = frozenset()  # cells a lesson points at
        self.top = 0  # first display line shown
        self.cell_layout = "chips"  # chips | wrap | clip (see the module's docstring)
        self._labels: list[str] = []
        self._label_w = 0
        self._per_line = 1
        self._starts: list[int] = [0]  # first display line of each sequence, then the total
        self._palette = palette.Palette(self)

    # -- attributes down ----------------------------------------------------------------------
    def show(self, seqs: Sequence[SeqView], pool: Sequence[Slot], placeholder: str = "") -> None:
        """The running sequences of a step; ``pool`` is the cursor's live pool (read only)."""
        self.seqs = tuple(seqs)
        self._pool = pool
        self.placeholder = placeholder
        self._layout()

    def mark(self, block_ids: frozenset[int]) -> None:
        if block_ids != self.marked:
            self.marked = block_ids
            self.refresh()

    def select(self, block_id: int | None) -> None:
        self.selected = block_id
        if block_id is not None:
            for k, seq in enumerate(self.seqs):
                if block_id in seq.block_ids:
                    line = self._starts[k] + seq.block_ids.index(block_id) // self._per_line
                    height = self._visible_height()
                    if not self.top <= line < self.top + height:
                        self.top = max(0, min(line, self._starts[-1] - height))
                    break
        self.refresh()

    # -- what is drawn (tests read these) -------------------------------------------------------
    def cell(self, seq: SeqView, i: int) -> tuple[str, str]:
        """(component class, glyph) of logical block ``i`` of ``seq``."""
        state = seq.states[i]
        if state is BlockState.HELD:
            bid = seq.block_ids[i]
            if bid < len(self._pool) and self._pool[bid][0] > 1:
                return palette.HELD_SHARED, palette.HELD_SHARED_GLYPH
        return palette.STATE_CLASS[state], state.letter

    def rows(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(seq id, glyphs, block ids) per row, top to bottom."""
        return [
            (seq.seq_id, "".join(self.cell(seq, i)[1] for i in range(len(seq.block_ids))),
             seq.block_ids)
            for seq in self.seqs
        ]

    @property
    def block_ids(self) -> tuple[int, ...]:
        """Every block of the tables, in row order, each once (for [ / ])."""
        seen: dict[int, None] = {}
        for seq in self.seqs:
            seen.update(dict.fromkeys(seq.block_ids))
        return tuple(seen)

    def position_of(self, block_id: int) -> int | None:
        try:
            return self.block_ids.index(block_id)
        except ValueError:
            return None

    # -- scrolling ----------------------------------------------------------------------------
    def action_scroll_rows(self, delta: int) -> None:
        self._scroll(delta)

    def action_scroll_page(self, delta: int) -> None:
        self._scroll(delta * max(1, self._visible_height() - 1))

    def _line_count(self) -> int:
        return self._starts[-1]

    # -- layout ---------------------------------------------------------------------------------
    def _layout(self) -> None:
        width = max(1, self.content_size.width)
        height = self._visible_height()
        self._labels = [clip(safe_text(s.request_id), LABEL_MAX) for s in self.seqs]
        self._label_w = max((len(x) for x in self._labels), default=0) + 1
        avail = max(1, width - self._label_w)
        counts = [len(s.block_ids) for s in self.seqs]
        chip = self._id_width + 2  # "S17" and a gap (or the prompt/output bar)
        self.cell_layout = "clip"
        for layout, per in (("chips", max(1, (avail + 1) // chip)), ("wrap", avail)):
            if sum(max(1, -(-n // per)) for n in counts) <= height:
                self.cell_layout = layout
                break
        if self.cell_layout == "clip":
            more = len(f" +{max(counts, default=0)}")
            per = max(1, avail - more)
            starts = list(range(len(counts) + 1))
        else:
            starts = [0]
            for n in counts:
                starts.append(starts[-1] + max(1, -(-n // per)))
        self._per_line, self._starts = per, starts
        self.top = max(0, min(self.top, starts[-1] - height))
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette.clear()

    def _locate(self, line: int) -> tuple[int, int] | None:
        """(sequence, line within it) of display line ``line``."""
        if not 0 <= line < self._starts[-1]:
            return None
        k = bisect_right(self._starts, line) - 1
        return k, line - self._starts[k]

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        base = self.rich_style
        pal = self._palette
        if not self.seqs:
            if y == 0 and self.placeholder:
                return self._text_strip(Text(safe_text(self.placeholder), style=pal[palette.LABEL]), width)
            return Strip.blank(width, base)
        height = self._visible_height()
        line = self.top + y
        if y == height - 1 and height > 1 and self._starts[-1] > self.top + height:
            where = self._locate(line)
            hidden = len(self.seqs) - (where[0] if where else len(self.seqs))
            text = Text(f"… {hidden} more sequence{'s' * (hidden != 1)} below (scroll)",
                        style=pal[palette.LABEL])
            return self._text_strip(text, width)
        where = self._locate(line)
        if where is None:
            return Strip.blank(width, base)
        k, sub = where
        seq = self.seqs[k]
        label = self._labels[k] if sub == 0 else ""
        segments = [Segment(f"{label:<{self._label_w}}", pal[palette.LABEL] if sub else base)]
        per = self._per_line
        first = sub * per
        end = min(len(seq.block_ids), first + per)
        run: list[str] = []
        run_style = None
        for i in range(first, end):
            cls, glyph = self.cell(seq, i)
            bid = seq.block_ids[i]
            style = pal[cls]
            if bid == self.selected:
                style = style + pal[palette.SELECTED]
            elif bid in self.marked:
                style = style + pal[palette.MARKED]
            if self.cell_layout == "chips":
                if i > first:
                    bar = "│" if i == seq.num_prompt_blocks else " "
                    segments.append(Segment(bar, pal[palette.LABEL]))
                segments.append(Segment(f"{glyph}{bid:<{self._id_width}}", style))
                continue
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            run.append(glyph)
        if run:
            segments.append(Segment("".join(run), run_style))
        if self.cell_layout == "clip" and end < len(seq.block_ids):
            segments.append(Segment(f" +{len(seq.block_ids) - end}", pal[palette.LABEL]))
        return Strip(segments).extend_cell_length(width, base).crop(0, width)

    def _text_strip(self, text: Text, width: int) -> Strip:
        base = self.rich_style
        strip = Strip(text.render(self.app.console)).apply_style(base)
        return strip.extend_cell_length(width, base).crop(0, width)

    # -- mouse --------------------------------------------------------------------------------
    def block_at(self, x: int, y: int) -> int | None:
        """The block under content offset (x, y), or None."""
        where = self._locate(self.top + y)
        if where is None or x < self._label_w:
            return None
        k, sub = where
        seq = self.seqs[k]
        col = x - self._label_w
        if self.cell_layout == "chips":
            col, within = divmod(col, self._id_width + 2)
            if within > self._id_width:
                return None  # the gap
        i = sub * self._per_line + col
        if col >= self._per_line or i >= len(seq.block_ids):
            return None
        return seq.block_ids[i]

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        bid = self.block_at(offset.x, offset.y)
        if bid is not None:
            event.stop()
            self.post_message(BlockClicked(bid, source="running"))
