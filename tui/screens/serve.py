"""Serve view: one vLLM scheduler iteration per step. Every running sequence's block
table, the queues pane, and jumps to the steps where requests arrive (a / A) and finish
(f / F); a find waits for the step where the request arrives."""

from __future__ import annotations

from dataclasses import replace

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget

from engine.model import BlockState, SeqView, StepRecord, TraceRequest
from engine.replay import steps
from tui.screens.actions import find_request
from tui.screens.inspector import InspectorScreen, bindings
from tui.screens.status import TO_THE_END
from tui.widgets.cpu_tier import CpuTierStrip
from tui.widgets.help_text import SERVE_GUIDE
from tui.widgets.running_tables import RunningTables
from tui.widgets.serve_panel import ServePanel, preempted_index
from tui.widgets.totals import ROWS, SERVE_ROWS, TIER_ROWS

COMPACT_FOOTER_BELOW = 120  # columns: the footer drops its padding to keep ? and q on it

SEARCHES: dict[tuple[str, int], Callable[[Sequence[StepRecord], int], int | None]] = {
    ("arrival", 1): steps.next_arrival, ("arrival", -1): steps.prev_arrival,
    ("finish", 1): steps.next_finish, ("finish", -1): steps.prev_finish,
}


class ServeScreen(InspectorScreen, inherit_bindings=False):
    BINDINGS: ClassVar = bindings(
        Binding("a", "arrival(1)", "Arrival", key_display="a/A"),
        Binding("A", "arrival(-1)", "Prev arrival", show=False),
        Binding("f", "finish(1)", "Finish", key_display="f/F"),
        Binding("F", "finish(-1)", "Prev finish", show=False),
    )
    PANES = (("totals", "Totals"), ("queues", "Queues"), ("inspector", "Block"),
             ("freeq", "Free queue"), ("events", "Events"))
    PANE_TITLES = ("totals", "queues", "block inspector", "free queue", "KV events")
    GUIDE = SERVE_GUIDE
    TOTALS_ROWS = ROWS + SERVE_ROWS
    SPARK_LABEL = "KV blocks in use per iteration"
    BODY_CLASSES = "serve"
    SHOW_HELD = True
    INSPECTOR_HINT = (
        "Click a block in the pool map or a running block table, or press [ / ] to walk "
        "the running sequences' blocks, or b to pick a block id."
    )
    INSPECTOR_STATE_LABEL = "in its latest holder: "
    STARTING = "Starting vLLM's scheduler: {status}… (importing vLLM takes a few seconds)."

    def __init__(self, *args, **kw) -> None:  # noqa: ANN002, ANN003 - InspectorScreen's
        super().__init__(*args, **kw)
        self.preempted_at: dict[str, list[int]] = {}  # seq id -> steps it was preempted at
        # A jump or a find waiting for records the replay has not made yet.
        self.pending_jump: tuple[str, int, int] | None = None  # (kind, delta, from step)
        self.pending_find: str | None = None
        self.cpu_strip: CpuTierStrip | None = None  # with vLLM's CPU offloading tier
        if self.serve_settings is not None and self.serve_settings.tier.enabled:
            self.TOTALS_ROWS = ROWS + SERVE_ROWS + TIER_ROWS  # the report's CPU-tier rows

    def starting_scheduler(self) -> str:
        # Until vLLM says, the class its settings resolve to.
        sync = self.serve_settings is not None and self.serve_settings.async_scheduling is False
        return "Scheduler" if sync else "AsyncScheduler"

    def compose_table(self) -> Widget:
        self.running = RunningTables(self.settings.num_blocks, id="running")
        return self.running

    def compose_middle(self) -> Widget:
        self.serve_panel = ServePanel(self.request_id, id="queues", classes="pane")
        return self.serve_panel

    def block_tables(self) -> RunningTables:
        return self.running

    def view_mounted(self) -> None:
        self.running.border_title = "running sequences' block tables"
        tier = self.serve_settings.tier if self.serve_settings is not None else None
        if tier is not None and tier.enabled:  # vLLM's CPU offloading tier, under the pool
            self.cpu_strip = CpuTierStrip(id="cpu-tier")
            self.pool_map.parent.mount(self.cpu_strip, after=self.pool_map)
            self.query_one("#totals-figures").styles.height = len(self.TOTALS_ROWS)

    def on_resize(self, event) -> None:  # noqa: ANN001 - events.Resize
        self.footer.compact = event.size.width < COMPACT_FOOTER_BELOW

    # -- trace requests of vLLM's sequences ---------------------------------------------------
    def request_of_seq(self, seq_id: str) -> TraceRequest | None:
        """The trace request of a vLLM seq id (the request's index)."""
        try:
            return self.feed.requests[int(seq_id)]
        except (ValueError, IndexError):
            return None

    def request_id(self, seq_id: str) -> str:
        req = self.request_of_seq(seq_id)
        return req.request_id if req is not None else seq_id

    def holder_request(self) -> Callable[[SeqView], TraceRequest | None]:
        return lambda seq: self.request_of_seq(seq.seq_id)

    # -- records --------------------------------------------------------------------------
    def series_point(self, rec: StepRecord) -> float:
        usable = max(1, self.settings.num_blocks - 1)
        return (rec.serve.used_blocks if rec.serve else 0) / usable  # KV usage

    def replica_shown(self) -> None:
        self.preempted_at = {}  # the index of the replica now shown
        preempted_index(self.history.records, self.preempted_at)

    def records_added(self, new: Sequence[StepRecord], done: bool) -> None:
        preempted_index(new, self.preempted_at)
        self.header.update_state(total=len(self.history), total_final=done)  # steps are iterations
        if self.pending_jump is not None or self.pending_find is not None:
            self._retry_pending(done)

    # -- one step -------------------------------------------------------------------------
    def lit_blocks(self, rec: StepRecord) -> dict[int, BlockState]:
        # The pool map letters what changed this iteration; blocks held from earlier show
        # their ref count (shaded apart above 1), so sharing between live sequences shows.
        return {
            bid: state
            for seq in rec.seqs for t in seq.tables for bid, state in zip(t.block_ids, t.states)
            if state is not BlockState.HELD and state is not BlockState.SKIPPED
        }

    def group_rows(self, seqs: tuple[SeqView, ...]) -> tuple[SeqView, ...]:
        """Several KV cache groups: a row per sequence and group ("q3 · g0")."""
        if len(self.kv_groups) <= 1:
            return seqs
        return tuple(replace(seq, request_id=f"{seq.request_id} · g{t.group}", tables=(t,))
                     for seq in seqs for t in seq.tables)

    def show_view(self, rec: StepRecord) -> None:
        pool = self.history.pool
        i = rec.index
        self.running.show(self.group_rows(rec.seqs), pool,
                          "no sequence running: " + (rec.note or "vLLM is idle"))
        held = {bid for seq in rec.seqs for t in seq.tables for bid in t.block_ids
                if bid != self.entry.null_block_id} if len(self.kv_groups) > 1 else {
            bid for seq in rec.seqs for bid in seq.block_ids}
        shared = sum(1 for bid in held if pool[bid][0] > 1)
        n = len(rec.seqs)
        self.running.border_title = Text(
            f"running sequences' block tables · {n} sequence{'s' * (n != 1)} · "
            f"{len(held):,} blocks held, {shared:,} shared"
        )
        self.serve_panel.show(rec, self.history.records[i - 1] if i else None, self.preempted_at)
        if self.cpu_strip is not None:
            self.cpu_strip.show(rec.tier)
        x = rec.serve
        if x is not None:
            self.header.update_state(iteration={
                "iteration": x.iteration, "clock": rec.clock,
                "scheduled_tokens": x.scheduled_tokens, "used_blocks": x.used_blocks,
            })

    def progress_to(self, target: int) -> tuple[float, str] | None:
        known = self.trace_requests()
        if target < TO_THE_END or known is None or not known[0]:
            return super().progress_to(target)
        # Iterations to come are unknown: count the requests that have arrived.
        total, about = known
        arrived = self.feed.consumed
        return (min(1.0, arrived / total),
                f"{len(self.history):,} iterations, {arrived:,} / {about}{total:,} requests arrived")

    def step_count_text(self) -> str:
        return self.header.step_text.split("/")[-1].strip()

    # -- jumps and finds that may wait for the replay ---------------------------------------------
    def waiting_text(self) -> str | None:
        if self.pending_jump is not None:
            return f"to the next {self.pending_jump[0]}"
        if self.pending_find is not None:
            return "until the request arrives"
        return None

    def cancel_waits(self) -> None:
        self.pending_jump = self.pending_find = None

    def action_arrival(self, delta: int) -> None:
        self._jump("arrival", delta)

    def action_finish(self, delta: int) -> None:
        self._jump("finish", delta)

    def _jump(self, kind: str, delta: int) -> None:
        base = self.target if self.target is not None else self.history.position
        self.pending_jump = None
        if self._find_jump(kind, delta, base):
            return
        if delta > 0 and not self.feed.replay_done:
            # Not recorded yet: ask for more records and look again as they come.
            self.pending_jump = (kind, delta, base)
            self.want_step(len(self.history))
            self.update_status()
            return
        self.notify(f"no {'later' if delta > 0 else 'earlier'} {kind}", timeout=2)

    def _find_jump(self, kind: str, delta: int, base: int) -> bool:
        index = SEARCHES[kind, delta](self.history.records, base)
        if index is None:
            return False
        self.goto(index)
        return True

    def _retry_pending(self, done: bool) -> None:
        if self.pending_jump is not None:
            kind, delta, base = self.pending_jump
            if self._find_jump(kind, delta, base):
                self.pending_jump = None
            elif done:
                self.pending_jump = None
                self.notify(f"no later {kind}", timeout=2)
            else:
                self.want_step(len(self.history))
        if self.pending_find is not None:
            query = self.pending_find
            index = self._arrival_of(query)
            if index is not None or done:
                self.pending_find = None
                if index is None:
                    self.notify(f"no request id matches {query!r}", severity="warning", markup=False)
                else:
                    self.goto_found(index)
            else:
                self.want_step(len(self.history))

    def _arrival_of(self, query: str) -> tuple[int | None, int] | None:
        """The step where the request a query names arrives, with its replica (None: not
        recorded yet, or no such request)."""
        req_index = find_request(self.feed.requests[: self.read_count], query)
        if req_index is None:
            return None
        seq_id = str(req_index)
        return self.find_step(lambda rec: (rec.serve is not None and seq_id in rec.serve.arrived)
                              or any(r.seq_id == seq_id for r in rec.admitted))

    def find(self, query: str) -> None:
        index = self._arrival_of(query)
        if index is not None:
            self.goto_found(index)
        elif find_request(self.feed.requests[: self.read_count], query) is None:
            self.notify(f"no request id matches {query!r}", severity="warning", markup=False)
        elif not self.feed.replay_done:
            self.pending_find = query  # it arrives after the steps made so far
            self.want_step(len(self.history))
