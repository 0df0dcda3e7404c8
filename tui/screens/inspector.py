"""The inspector screen every view shares: the cursor over recorded steps, the panes both
views have, the keys, and the Feed's workers.

Threads: three workers run the Feed (tui/feed.py): reading the trace, importing vLLM /
building the pool, and replaying. They post messages (tui/messages.py) to this screen,
which handles them on the UI thread, copies new records into the History and redraws.
Attributes go down (``feed.want``), messages come up; no worker touches a widget.

The cursor is History's: going back rewinds pool deltas, never re-runs vLLM. A step the
replay has not reached yet becomes ``target``; the feed is asked for it and the cursor
moves when the records arrive.

A view is a subclass (tui/screens/sequential.py, serve.py): it composes its block
table(s) and middle pane, says what one step's record lights up, and adds its own keys.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Tab, Tabs
from textual.worker import Worker, WorkerState

from engine import metrics
from engine.backends import BackendEntry, BuildOptions
from engine.model import BlockState, StepRecord, TraceRequest
from engine.replay.history import History
from engine.trace.reader import TraceSource
from tui.feed import Feed
from tui.messages import (
    EngineFailed,
    EngineReady,
    EngineStatus,
    ReplayProgress,
    TraceFailed,
    TraceProgress,
)
from tui.screens.actions import Actions
from tui.screens.blocks import BlockSelection
from tui.screens.playback import Playback
from tui.screens.replicas import REPLICA_KEYS, ReplicaSwitch
from tui.screens.sweep_key import SweepKey
from tui.screens.status import SETTLED, SPEEDS, TO_THE_END, StatusLine
from tui.widgets.block_inspector import BlockInspector
from tui.widgets.events import EventsPanel
from tui.widgets.free_queue import FreeQueuePanel
from tui.widgets.header import InspectorHeader
from tui.widgets.help_text import Guide
from tui.widgets.legend import Legend
from tui.widgets.pool_map import PoolMap
from tui.widgets.request_panel import RequestPanel
from tui.widgets.totals import SPARK_STEPS, TotalsPanel

JUMP_LIMIT = 64  # a move of more steps than this redraws the whole pool map


def bindings(*view_keys: Binding) -> list[Binding]:
    """The keys every view has, with a view's own after "g" (the footer's order)."""
    return [*STEP_KEYS, *view_keys, *REPLICA_KEYS, *MORE_KEYS]


STEP_KEYS = (
    # Priority: stepping works whichever pane has focus (modal screens are other
    # screens, so their Inputs keep the arrows).
    Binding("right,n", "step(1)", "Next", key_display="→", priority=True),
    Binding("left,p", "step(-1)", "Back", key_display="←", priority=True),
    Binding("space", "play", "Play", priority=True),
    Binding("plus,equals_sign", "speed(1)", "Speed", key_display="+/-"),
    Binding("minus", "speed(-1)", "Slower", show=False),
    Binding("g", "goto", "Go to"),
)
MORE_KEYS = (
    Binding("home", "first", "First", show=False, priority=True),
    Binding("end", "last", "Last", show=False, priority=True),
    Binding("slash", "find", "Find", key_display="/"),
    Binding("left_square_bracket", "walk_block(-1)", "Prev block", show=False),
    Binding("right_square_bracket", "walk_block(1)", "Next block", show=False),
    Binding("b", "pick_block", "Block id", show=False),
    Binding("escape", "clear_block", "Deselect", show=False),
    Binding("e", "error", "Error", show=False),
    Binding("t", "next_pane", "Pane", show=False),
    Binding("s", "save_picture", "Screenshot", show=False),
    Binding("c", "sweep", "Capacity sweep", show=False),
    Binding("question_mark", "help", "Help", key_display="?"),
    Binding("q", "app.quit", "Quit"),
)


class InspectorScreen(Playback, BlockSelection, Actions, ReplicaSwitch, SweepKey, Screen[None]):
    BINDINGS: ClassVar = bindings()
    # What a view supplies (class attributes of the subclass).
    PANES: ClassVar[tuple[tuple[str, str], ...]]  # side panes: (widget id, tab label)
    PANE_TITLES: ClassVar[tuple[str, ...]]  # their border titles, in that order
    GUIDE: ClassVar[Guide]
    TOTALS_ROWS: ClassVar[tuple]
    SPARK_LABEL: ClassVar[str]
    BODY_CLASSES: ClassVar[str] = ""
    SHOW_HELD: ClassVar[bool] = False  # block tables and pool map show held blocks
    INSPECTOR_HINT: ClassVar[str]
    INSPECTOR_STATE_LABEL: ClassVar[str] = "in this request: "
    STARTING: ClassVar[str]  # the loading line before vLLM is up

    def __init__(
        self,
        source: TraceSource | None,
        entry: BackendEntry,
        options: BuildOptions,
        *,
        requests: Iterable[TraceRequest] | None = None,
    ) -> None:
        super().__init__(id="inspector-screen")  # not "inspector": the block inspector pane has that id
        settings = options.settings
        self.settings = settings
        self.entry = entry
        self.source, self.options = source, options  # what a sweep (c) of this trace runs
        self.serve_settings = options.serve
        self.trace_name = Path(source.path).name if source is not None else "(requests)"
        self.tokenizer_name = source.tokenizer_name if source is not None else None
        self.feed = Feed(self.post_message, source, entry, options, requests=requests)
        # A checkpoint is a copy of the pool: keep them to ~1 MB-equivalent each interval.
        self.history = History(settings.num_blocks, checkpoint_every=max(512, settings.num_blocks // 64))
        self.setup_replicas(options)  # --instances: a History per replica (tui/screens/replicas.py)
        self.vllm_version: str | None = None
        self.engine_status = "starting"
        self.engine_error: tuple[str, str] | None = None
        self.trace_error: str | None = None
        self.read_count = 0
        self.read_fraction = 0.0
        self.target: int | None = None  # a step asked for that the replay has not made yet
        self.asked_step: int | None = None  # the number typed for ``target`` (g), if any
        self.shown_step = -1  # the step the panes show; -1 until then and while a redraw is due
        self.selected_block: int | None = None
        self._error_block_selected = False  # V0's failing block, selected once at its step
        self.playing = False
        self.series: list[float] = []  # the sparkline's value of every recorded step
        self.breakdowns = metrics.BreakdownSeries()  # hits per tenant/adapter/type per step
        self._shown: tuple[int, frozenset[int]] = (-1, frozenset())  # step, blocks lit
        self._furthest = -1  # the furthest step shown so far
        self._last_show = 0.0
        self._speed = SPEEDS.index(5)
        self._per_tick = 1
        self._timer = None
        self._show_scheduled = False
        self.status_line = StatusLine()

    # -- what a view supplies -------------------------------------------------------------------
    def compose_table(self) -> Widget:
        """The block table(s) under the request panel."""
        raise NotImplementedError

    def compose_middle(self) -> Widget:
        """The side pane after the totals (the requests table, the queues)."""
        raise NotImplementedError

    def block_tables(self) -> Widget:
        """The widget [ / ] walk and a selection highlights (select, block_ids, position_of)."""
        raise NotImplementedError

    def lit_blocks(self, rec: StepRecord) -> dict[int, BlockState]:
        """Blocks the pool map letters at this step, with their state."""
        raise NotImplementedError

    def show_view(self, rec: StepRecord) -> None:
        """Draw the view's own panes for the step under the cursor."""
        raise NotImplementedError

    def series_point(self, rec: StepRecord) -> float:
        """The sparkline's value for one step."""
        raise NotImplementedError

    def find(self, query: str) -> None:
        """Move to the step of the request a query names (``/``)."""
        raise NotImplementedError

    def step_count_text(self) -> str:
        """How many steps there are, for the go-to prompt ("1–N")."""
        raise NotImplementedError

    def progress_to(self, target: int) -> tuple[float, str] | None:
        """How far the replay is towards step ``target`` (TO_THE_END: the last step), as a
        fraction and in words, for the status line; None when it cannot tell."""
        done = len(self.history)
        if target < TO_THE_END:
            return min(1.0, done / (target + 1)), f"{done:,} / {target + 1:,} steps"
        return None

    def trace_requests(self) -> tuple[int, str] | None:
        """The trace's request count and "" once read, else an estimate from the bytes read
        so far and "~"; None before anything is read."""
        if self.feed.read_done:
            return self.read_count, ""
        if self.read_fraction > 0 and self.read_count:
            return round(self.read_count / self.read_fraction), "~"
        return None

    def requests_read(self, requests: Sequence[TraceRequest], msg: TraceProgress) -> None:
        """New requests from the reader (the view may list them, count them as steps)."""

    def records_added(self, new: Sequence[StepRecord], done: bool) -> None:
        """New records, already in the History."""

    def last_index(self) -> int | None:
        """The last step that can exist, when known."""
        return len(self.history) - 1 if self.feed.replay_done else None

    def waiting_text(self) -> str | None:
        """What the view waits on besides ``target`` (a jump, a find), for the status line."""
        return None

    def cancel_waits(self) -> None:
        """Another move replaces what the view was waiting for."""

    def settled_at(self, index: int) -> bool:
        """Step ``index`` is on screen with nothing loading, replaying to it or playing
        (a headless screenshot waits for this)."""
        return (self.shown_step == index and self.history.position == index
                and self.target is None and not self.playing and self.header.status == "")

    def holder_request(self):  # noqa: ANN201 - None or a SeqView -> TraceRequest callable
        """For the block inspector: the trace request of a live sequence (serve), or None."""
        return None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes: timers and worker messages may arrive while a
        # modal screen is on top or while the app shuts down, when queries would fail.
        s = self.settings
        self.header = InspectorHeader(self.trace_name, s, mode=self.entry.mode,
                                      scheduler=self.starting_scheduler(), id="header")
        self.request_panel = RequestPanel(s.block_size, id="request")
        table, middle = self.compose_table(), self.compose_middle()
        self.pool_map = PoolMap(s.num_blocks, self.entry.null_block_id,
                                held_glyphs=self.SHOW_HELD, id="pool")
        self.tabs = Tabs(*(Tab(label, id=f"tab-{pane}") for pane, label in self.PANES), id="side-tabs")
        self.totals = TotalsPanel(self.TOTALS_ROWS, self.SPARK_LABEL, id="totals", classes="pane -active")
        self.inspector = BlockInspector(self.INSPECTOR_HINT, self.INSPECTOR_STATE_LABEL,
                                        id="inspector", classes="pane")
        self.free_queue = FreeQueuePanel(self.entry.null_block_id, id="freeq", classes="pane")
        self.events_panel = EventsPanel(id="events", classes="pane")
        self.panes = (self.totals, middle, self.inspector, self.free_queue, self.events_panel)
        yield self.header
        with Container(id="body", classes=self.BODY_CLASSES):
            with Vertical(id="main"):
                yield self.request_panel
                yield table
                yield self.pool_map
                yield Legend(show_held=self.SHOW_HELD, id="legend")
            # The panes are children of #body, not of a side column: app.tcss lays them
            # out as a grid around #main when wide, and as tabs under it when narrow.
            yield self.tabs
            yield from self.panes
        self.footer = Footer()
        yield self.footer

    def starting_scheduler(self) -> str:
        return ""

    def view_mounted(self) -> None:
        """The view's own set-up once mounted. (Not an on_mount override: Textual calls
        every class's on_mount in the MRO, so a super() call would run this one twice.)"""

    def on_mount(self) -> None:
        for pane, title in zip(self.panes, self.PANE_TITLES):
            pane.border_title = title
        self.pool_map.border_title = f"block pool ({self.settings.num_blocks:,} blocks)"
        self.pool_map.show(self.history.pool, {}, frozenset())
        self.view_mounted()
        self.show_replica_titles()
        self.show_loading()
        self.set_interval(0.2, self._spin)
        # Start the workers once the first frame is out: importing vLLM in a thread still
        # competes for the GIL, and the screen should come first.
        self.call_after_refresh(self._start_workers)

    def _start_workers(self) -> None:
        self._read_trace()
        self._start_engine()

    # -- workers (thread bodies live in the Feed) ----------------------------------------------
    @work(thread=True, exit_on_error=False, group="trace", name="read trace")
    def _read_trace(self) -> None:
        self.feed.read_trace()

    @work(thread=True, exit_on_error=False, group="engine", name="start vLLM")
    def _start_engine(self) -> None:
        self.feed.start_engine()

    @work(thread=True, exit_on_error=False, group="replay", name="replay")
    def _run_replay(self) -> None:
        self.feed.run_replay()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Feed methods report their expected failures as messages; this catches the rest.
        if event.state is WorkerState.ERROR:
            err = event.worker.error
            text = f"{event.worker.name} failed: {type(err).__name__}: {err}"
            trace = "".join(traceback.format_exception(err)) if err is not None else ""
            if event.worker.group in ("engine", "replay"):
                self.engine_error = (text, trace)
                self.engine_status = "failed"
            self.notify(text, severity="error", markup=False, timeout=10)
            self.update_status()

    # -- messages from the workers -------------------------------------------------------------
    def on_trace_progress(self, msg: TraceProgress) -> None:
        requests = self.feed.requests[self.read_count : msg.count]
        self.read_count = msg.count
        self.read_fraction = msg.bytes_read / msg.total_bytes if msg.total_bytes else 1.0
        self.requests_read(requests, msg)
        gc.freeze()  # see the note below
        if msg.done and not msg.count and self.trace_error is None:
            self.trace_error = "the trace has no requests"
        if not self.history.records:
            self.show_loading()
        self.update_status()

    # Why gc.freeze(): records and requests are millions of small immutable tuples that live
    # as long as the app. Left to the cyclic GC, every full collection walks all of them
    # (half a second on a long trace, freezing the screen). Freezing moves what exists now
    # out of the collector's sight; it is O(1), and they hold no reference cycles.

    def on_trace_failed(self, msg: TraceFailed) -> None:
        self.trace_error = msg.text
        if not self.feed.requests:
            # Nothing to replay (a bad first line): stop starting vLLM and say why.
            self.feed.close()
            self.engine_status = "stopped"
            self.show_loading()
        self.notify(f"trace error: {msg.text}", severity="error", markup=False, timeout=10)
        self.update_status()

    def on_engine_status(self, msg: EngineStatus) -> None:
        if self.engine_status == "stopped":
            return
        self.engine_status = msg.text
        self.show_loading()
        self.update_status()

    def on_engine_ready(self, msg: EngineReady) -> None:
        if self.engine_status == "stopped":
            return
        self.vllm_version = msg.vllm_version
        self.engine_status = "ready"
        self.header.update_state(vllm_version=msg.vllm_version)
        if msg.info is not None:
            self.header.update_state(scheduler=msg.info.scheduler)
        self.kv_groups = self.totals.kv_groups = msg.groups
        self.pool_map.group_glyphs = self.query_one(Legend).groups = len(msg.groups) > 1
        self._run_replay()
        self.update_status()

    def on_engine_failed(self, msg: EngineFailed) -> None:
        self.engine_error = (msg.text, msg.traceback)
        self.engine_status = "failed"
        self.show_loading()
        self.update_status()

    def on_replay_progress(self, msg: ReplayProgress) -> None:
        new = self.take_records(msg.count)
        self.records_added(new, msg.done)
        gc.freeze()  # see the note above on_trace_failed
        if self.target is not None and (self.target < len(self.history) or msg.done):
            target, self.target = self.target, None
            if target >= len(self.history) and self.asked_step is not None:
                self.notify(f"there is no step {self.asked_step:,}: the trace has "
                            f"{len(self.history):,} steps; went to the last",
                            severity="warning", timeout=4)
            self.asked_step = None
            self._seek(min(target, len(self.history) - 1))
        elif self.history.position < 0 and self.history.records:
            self._seek(0)
        if msg.done and len(self.history) < self.read_count:
            # The replay stopped early (vLLM raised): those are all the steps there are.
            self.header.update_state(total=len(self.history), total_final=True)
        self.update_status()

    @on(Tabs.TabActivated, "#side-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        pane = (event.tab.id or "").removeprefix("tab-")
        for widget in self.panes:
            widget.set_class(widget.id == pane, "-active")

    # -- the cursor ------------------------------------------------------------------------------
    def goto(self, index: int) -> None:
        """Move the cursor to step ``index`` (clamped), waiting for the replay if needed."""
        last = self.last_index()
        if last is not None:
            index = min(index, last)
        index = max(index, 0)
        if index < len(self.history):
            self.target = None
            self.asked_step = None
            self._seek(index)
        else:
            self.target = index
            self.want_step(index)
            self.update_status()

    def _seek(self, index: int) -> None:
        if index < 0:
            return
        self.history.seek(index)
        self.want_step(index)
        self.shown_step = -1
        # Coalesce: a burst of keys (a held arrow, top-speed play) redraws once.
        if not self._show_scheduled:
            self._show_scheduled = True
            self.call_later(self._show_step)

    def _show_step(self) -> None:
        self._show_scheduled = False
        rec = self.history.current
        if rec is None:
            return
        i = rec.index
        current = self.lit_blocks(rec)
        evicted = frozenset(rec.evicted.column("block_id"))
        self.pool_map.show(self.history.pool, current, evicted, self._changed_blocks(i, current, evicted))
        self.show_view(rec)
        self.request_panel.show(rec)
        self.totals.show(rec.totals, self.series[max(0, i + 1 - SPARK_STEPS): i + 1],
                         None if self.breakdowns.empty else self.breakdowns.at(i))
        self.free_queue.show(rec, self.history.pool)
        self.events_panel.show(rec)
        self.header.update_state(step=i + 1)
        self._last_show = time.monotonic()
        self._furthest = max(self._furthest, i)
        v0_block = rec.v0.error_block if rec.error is not None and rec.v0 is not None else None
        if v0_block is not None and not self._error_block_selected:
            # V0 names the block it was evicting when it raised: select it once, so the
            # block inspector shows it and the hash V0 handed back (the pool is the one
            # before this step: a failed step records no change).
            self._error_block_selected = True
            self.action_select_block(v0_block)
        elif self.selected_block is not None:
            self._inspect(self.selected_block)
        if self.playing and rec.error is not None:
            self._set_playing(False)  # stop on an error: it is shown at its step
        self.shown_step = i
        self.update_status()

    def _changed_blocks(self, index: int, current: dict, evicted: frozenset[int]) -> set[int] | None:
        """Blocks whose pool-map cell may differ from the last step shown; None after a
        jump (the pool map then redraws every row)."""
        prev, lit = self._shown
        now = frozenset(current) | evicted
        self._shown = (index, now)
        if prev < 0 or abs(index - prev) > JUMP_LIMIT:
            return None
        changed = set(lit | now)
        for rec in self.history.records[min(index, prev) + 1 : max(index, prev) + 1]:
            changed.update(rec.pool_delta.block_ids)  # steps applied or undone
            changed.update(bid for seq in rec.seqs for t in seq.tables for bid in t.block_ids)
        return changed

    # -- status line ------------------------------------------------------------------------------
    def _spin(self) -> None:
        # Animate the status only while something is loading; an idle screen stays still.
        busy = (
            self.engine_status not in SETTLED
            or self.target is not None or self.waiting_text() is not None
            or not (self.feed.read_done or self.feed.reader_paused)
        )
        if busy:
            self.status_line.spin()
            self.update_status()

    def update_status(self) -> None:
        self.header.update_state(status=self.status_line.text(self))

    def show_loading(self) -> None:
        if self.history.records:
            return
        lines = []
        if self.engine_status == "stopped":
            lines.append(f"Trace error: {self.trace_error}")
            lines.append("Nothing to replay, so vLLM was not started. Press q to quit.")
        elif self.engine_status == "failed" and self.engine_error:
            lines.append(f"vLLM could not start: {self.engine_error[0]}  (press e for the traceback)")
        else:
            lines.append(self.STARTING.format(status=self.engine_status))
        if self.trace_error and self.engine_status != "stopped":
            lines.append(f"Trace: {self.trace_error}")
        self.request_panel.show(None, "\n".join(lines))

    # -- actions ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a modal (help, a prompt) is on top, the footer beneath it lists only what
        # still works there: q (an app action, not checked here).
        return self.app.screen is self and (action != "replica" or self.replica_set is not None)

    def on_screen_suspend(self) -> None:
        self.refresh_bindings()  # the footer re-asks check_action

    def on_screen_resume(self) -> None:
        self.refresh_bindings()

    def on_unmount(self) -> None:
        self.feed.close()

