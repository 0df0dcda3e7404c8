"""Sequence history: one row per trace request, filled in as the replay reaches it.

Rows appear as the trace is read (so it can be browsed while vLLM loads); the replay's
columns say "…" until that request's step is recorded. Row i is step i; the app keeps
the cursor row on the current step, and selecting a row (Enter, click) jumps there.
Cells are rich Text built from safe_text: DataTable would parse plain strings as markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from engine.model import Outcome, StepRecord
from engine.model import TraceRequest
from tui.widgets.safe import clip, safe_text

COLUMNS = (  # (label, key, width): 61 columns with the cell padding, for the 64-wide pane
    ("step", "step", 6),
    ("request", "id", 10),
    ("tokens", "prompt", 6),
    ("blocks", "blocks", 6),
    ("hits", "hit", 4),
    ("share", "share", 5),
    ("outcome", "outcome", 10),
)

OUTCOME_TEXT = {
    Outcome.OK: ("ok", "seq--ok"),
    Outcome.TRUNCATED: ("truncated", "seq--warn"),
    Outcome.NOT_FITTED: ("no fit", "seq--warn"),
    Outcome.TOO_LONG: ("too long", "seq--warn"),
    Outcome.ERROR: ("vLLM error", "seq--error"),
}
PENDING = Text("…", style="dim", justify="right")


def _num(n: int) -> Text:
    return Text(f"{n:,}", justify="right")


class SequenceTable(DataTable):
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"seq--ok", "seq--warn", "seq--error"}

    def __init__(self, block_size: int, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=1, **kw)
        self.block_size = block_size
        self.filled = 0  # rows 0..filled-1 show their replay results

    def on_mount(self) -> None:
        for label, key, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def add_requests(self, requests: Sequence[TraceRequest]) -> None:
        for req in requests:
            self._add(req.index, req)

    def add_steps(self, records: Sequence[StepRecord]) -> None:
        """--instances: a row per step of the replica shown (its requests, as routed)."""
        for rec in records:
            if rec.request is not None:
                self._add(rec.index, rec.request.request)

    def restart(self) -> None:
        """No rows (another replica's are added next)."""
        self.clear()
        self.filled = 0

    def _add(self, step: int, req: TraceRequest) -> None:
        bs = self.block_size
        self.add_row(
            Text(str(step + 1), justify="right"),
            Text(clip(safe_text(req.request_id), 10)),
            _num(req.num_prompt_tokens),
            _num(-(-req.num_prompt_tokens // bs)),
            PENDING,
            PENDING,
            Text("…", style="dim"),
            key=str(step),
        )

    def fill_to(self, records: Sequence[StepRecord], end: int) -> None:
        """Fill in the replay's columns of the rows up to ``end`` (exclusive) not filled
        yet, from ``records`` (the history's, indexed by step)."""
        if end > self.filled:
            self._apply(records[self.filled : end])
            self.filled = end

    def _apply(self, records: Sequence[StepRecord]) -> None:
        for rec in records:
            r = rec.request
            key = str(rec.index)
            if r is None or key not in self.rows:
                continue
            label, cls = OUTCOME_TEXT[r.outcome]
            style = self.get_component_rich_style(cls, partial=True)
            fitted = r.outcome in (Outcome.OK, Outcome.TRUNCATED)
            self.update_cell(key, "hit", _num(r.hit_blocks) if fitted else Text("-", justify="right"))
            self.update_cell(key, "share", Text(f"{r.sharing_fraction:.0%}" if fitted else "-", justify="right"))
            self.update_cell(key, "outcome", Text(label, style=style))

    def follow(self, index: int) -> None:
        """Put the cursor on step ``index`` without posting a selection."""
        if 0 <= index < self.row_count and self.cursor_row != index:
            self.move_cursor(row=index, animate=False)
