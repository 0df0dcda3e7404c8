"""Sequential view: one request per step (vLLM's KV-cache manager driven request by
request). The step's request and its block table, and the requests table, whose rows are
the steps: a click or ↑/↓ on a row moves the cursor there."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.widget import Widget
from textual.widgets import DataTable

from engine.model import BlockState, StepRecord, TraceRequest
from tui.messages import TraceProgress
from tui.screens.actions import find_request
from tui.screens.inspector import InspectorScreen
from tui.screens.status import TO_THE_END
from tui.widgets.block_table import BlockTable
from tui.widgets.help_text import SEQUENTIAL_GUIDE
from tui.widgets.request_panel import token_summary
from tui.widgets.sequences import SequenceTable
from tui.widgets.totals import ROWS

TABLE_FLUSH_S = 0.4  # how often new replay results reach the requests table
FOLLOW_IDLE_S = 0.1  # the table cursor follows the step once steps pause this long,
FOLLOW_EVERY_S = 0.5  # or at least this often while they keep coming


class SequentialScreen(InspectorScreen):
    PANES = (("totals", "Totals"), ("sequences", "Requests"), ("inspector", "Block"),
             ("freeq", "Free queue"), ("events", "Events"))
    PANE_TITLES = ("totals", "requests", "block inspector", "free queue", "KV events")
    GUIDE = SEQUENTIAL_GUIDE
    TOTALS_ROWS = ROWS
    SPARK_LABEL = "hit rate per request"
    INSPECTOR_HINT = (
        "Click a block in the pool map or the block table, or press [ / ] to walk the "
        "current request's blocks, or b to pick a block id."
    )
    STARTING = (
        "Starting vLLM's KV-cache manager: {status}… (importing vLLM takes a few seconds). "
        "The requests pane lists the trace already."
    )

    def __init__(self, *args, **kw) -> None:  # noqa: ANN002, ANN003 - InspectorScreen's
        super().__init__(*args, **kw)
        self._last_follow = 0.0
        self._auto_rows: set[int] = set()  # table rows the screen moved the cursor to
        self._row_seen = 0  # the table's cursor row as of the last highlight handled or made

    def compose_table(self) -> Widget:
        self.block_table = BlockTable(self.settings.num_blocks, id="blocks")
        return self.block_table

    def compose_middle(self) -> Widget:
        self.sequences = SequenceTable(self.settings.block_size, id="sequences", classes="pane")
        return self.sequences

    def block_tables(self) -> BlockTable:
        return self.block_table

    def view_mounted(self) -> None:
        self.block_table.border_title = "block table"
        self.set_interval(TABLE_FLUSH_S, self._flush_table)
        self.set_interval(FOLLOW_IDLE_S / 2, self._follow_table)

    # -- records --------------------------------------------------------------------------
    def requests_read(self, requests: Sequence[TraceRequest], msg: TraceProgress) -> None:
        if self.replica_set is not None:
            return  # a replica's rows are its steps, known as the replay routes them
        self.sequences.add_requests(requests)
        self.header.update_state(total=msg.count, total_final=msg.done)  # a step per request

    def records_added(self, new: Sequence[StepRecord], done: bool) -> None:
        if self.replica_set is not None:
            self.sequences.add_steps(new)
            self.header.update_state(total=len(self.history), total_final=done)

    def replica_shown(self) -> None:
        # The table's rows are the replica's steps: start it over for the one now shown.
        # Clearing puts its cursor on row 0: a highlight that is not the user's.
        self.sequences.restart()
        self._auto_rows = {0}
        self._row_seen = 0
        self.sequences.add_steps(self.history.records)
        self._flush_table()

    def series_point(self, rec: StepRecord) -> float:
        r = rec.request
        return r.hit_tokens / r.prompt_tokens if r and r.prompt_tokens else 0.0

    def last_index(self) -> int | None:
        if self.feed.replay_done:
            return len(self.history) - 1
        if self.feed.read_done and self.replica_set is None:
            return self.read_count - 1
        return None

    def show_loading(self) -> None:
        super().show_loading()
        if not self.history.records:
            self.block_table.show(None, "")

    # -- one step -------------------------------------------------------------------------
    def lit_blocks(self, rec: StepRecord) -> dict[int, BlockState]:
        seq = rec.seqs[0] if rec.seqs else None
        if seq is None:
            return {}
        # Every group's blocks (vLLM's null block is not lit: it stands in many places).
        lit: dict[int, BlockState] = {}
        for table in reversed(seq.tables):  # the first group's state wins
            lit.update((b, s) for b, s in zip(table.block_ids, table.states)
                       if s is not BlockState.SKIPPED)
        return lit

    def show_view(self, rec: StepRecord) -> None:
        seq = rec.seqs[0] if rec.seqs else None
        placeholder = "no blocks: " + rec.note if seq is None and rec.request is not None else ""
        self.block_table.show(seq, placeholder, self.kv_groups)
        bs = self.settings.block_size
        summary = token_summary(rec, bs)
        if len(summary) + 18 > self.block_table.size.width:
            summary = token_summary(rec, bs, short=True)
        self.block_table.border_title = Text(f"block table · {summary}")

    def progress_to(self, target: int) -> tuple[float, str] | None:
        known = self.trace_requests()
        if target < TO_THE_END or known is None or not known[0]:
            return super().progress_to(target)
        total, about = known  # a step per request
        if self.replica_set is not None:  # a step per request on one replica: count them all
            done = len(self.feed.records)
            return min(1.0, done / total), f"{done:,} / {about}{total:,} requests replayed"
        done = len(self.history)
        return min(1.0, done / total), f"{done:,} / {about}{total:,} steps"

    def settled_at(self, index: int) -> bool:
        # The requests table fills and follows the cursor on timers: wait for both.
        return (super().settled_at(index) and self.sequences.filled > index
                and self.sequences.cursor_row == index)

    def step_count_text(self) -> str:
        return f"{self.read_count:,}"

    def find(self, query: str) -> None:
        index = find_request(self.feed.requests[: self.read_count], query)
        if index is None:
            self.notify(f"no request id matches {query!r}", severity="warning", markup=False)
        elif self.replica_set is None:
            self.goto(index)
        else:  # its step on the replica the router sent it to
            found = self.find_step(lambda rec: rec.request is not None
                                   and rec.request.request.index == index)
            if found is None:
                self.notify(f"{query!r} is not replayed yet: step on and find it again",
                            severity="warning", markup=False)
            else:
                self.goto_found(found)

    # -- the requests table -----------------------------------------------------------------
    def _flush_table(self) -> None:
        # Any DataTable cell update re-renders its visible rows and re-measures all rows,
        # so new results are written in batches a few times a second, never per step.
        # Results show up to the furthest step visited: the table is the requests "so far",
        # not a preview of what the replay, running ahead, already knows.
        shown = min(len(self.history), self._furthest + 1)
        self.sequences.fill_to(self.history.records, shown)
        title = f"requests · results up to step {shown:,}" if shown else "requests"
        if self.sequences.border_title != title:  # say how far they go
            self.sequences.border_title = title

    def _follow_table(self) -> None:
        """Put the requests table's cursor on the current step, lazily: moving a DataTable
        cursor re-renders all its visible rows, so while steps come fast (a held key,
        play) the table follows at most every FOLLOW_EVERY_S, and right after they stop."""
        i = self.history.position
        table = self.sequences
        if i < 0 or table.cursor_row == i or i >= table.row_count:
            return
        if table.cursor_row != self._row_seen:
            # The user moved the cursor (↑/↓, a click) and its RowHighlighted is still on
            # its way; following now would move the cursor back and lose that move.
            return
        now = time.monotonic()
        if now - self._last_show < FOLLOW_IDLE_S and now - self._last_follow < FOLLOW_EVERY_S:
            return
        self._last_follow = now
        self._auto_rows.add(i)
        self._row_seen = i
        table.follow(i)

    @on(DataTable.RowSelected, "#sequences")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.goto(event.cursor_row)

    @on(DataTable.RowHighlighted, "#sequences")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # One click (or ↑/↓ in the table) jumps to that step. Moves the screen made itself
        # to follow the cursor are remembered in _auto_rows and ignored here.
        self._row_seen = event.cursor_row
        if event.cursor_row in self._auto_rows:
            self._auto_rows.discard(event.cursor_row)
            return
        current = self.target if self.target is not None else self.history.position
        if event.cursor_row != current:
            self.goto(event.cursor_row)
