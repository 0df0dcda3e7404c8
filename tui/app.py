"""The inspector app: layout, keys, and the cursor over recorded steps.

Threads: three workers run the Feed (tui/feed.py): reading the trace, importing
vLLM / building the pool, and replaying. They post messages (tui/messages.py); this
class handles them on the UI thread, copies new records into the History and redraws.
Attributes go down (``feed.want``), messages come up; no worker touches a widget.

The cursor is History's: going back rewinds pool deltas, never re-runs vLLM. A step the
replay has not reached yet becomes ``_target``; the feed is asked for it and the cursor
moves when the records arrive.

Modes: ``sequential`` (one request per step: the request, its block table, the requests
table) and ``serve`` (one vLLM scheduler iteration per step: the iteration, every running
sequence's block table, the queues pane; a / A and f / F jump to arrivals and finishes).
Both share the pool map, totals, block inspector, free queue and KV events.
"""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Tab, Tabs
from textual.worker import Worker, WorkerState, get_current_worker

from engine.backends import BackendEntry, BuildOptions
from engine.model import BlockState, Outcome, StepRecord, TraceRequest
from engine.replay import steps as serve_steps
from engine.replay.history import History
from engine.replay.protocol import View
from tui.feed import Feed
from tui.messages import (
    BlockClicked,
    BlockReport,
    EngineFailed,
    EngineReady,
    EngineStatus,
    ReplayProgress,
    TraceFailed,
    TraceProgress,
)
from tui.widgets.block_inspector import BlockInspector, scan_block
from tui.widgets.block_table import BlockTable
from tui.widgets.events import EventsPanel
from tui.widgets.free_queue import FreeQueuePanel
from tui.widgets.header import InspectorHeader
from tui.widgets.legend import Legend
from tui.widgets.modals import ErrorScreen, HelpScreen, PromptScreen
from tui.widgets.pool_map import PoolMap
from tui.widgets.request_panel import RequestPanel, token_summary
from tui.widgets.running_tables import RunningTables
from tui.widgets.sequences import SequenceTable
from tui.widgets.serve_panel import ServePanel, preempted_index
from tui.widgets.totals import SPARK_STEPS, TotalsPanel

TO_THE_END = 1 << 62  # End pressed before the trace's length is known
SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # steps per second
TICK_S = 1 / 30  # playback never redraws faster than this
TABLE_FLUSH_S = 0.4  # how often new replay results reach the requests table
FOLLOW_IDLE_S = 0.1  # the table cursor follows the step once steps pause this long,
FOLLOW_EVERY_S = 0.5  # or at least this often while they keep coming
SIDE_PANES = (("totals", "Totals"), ("sequences", "Requests"), ("inspector", "Block"),
              ("freeq", "Free queue"), ("events", "Events"))
SERVE_PANES = (("totals", "Totals"), ("queues", "Queues"), ("inspector", "Block"),
               ("freeq", "Free queue"), ("events", "Events"))
SERVE_ONLY = {"arrival", "finish"}  # actions (and footer keys) of serve mode


class InspectorApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = False  # every action has a key; the footer needs the room
    TITLE = "prefix-tui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # wide: a 64-column side
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # tall narrow: taller side pane
    BINDINGS = [
        # Priority: stepping works whichever pane has focus (check_action keeps them out of
        # modal screens, where an Input needs the arrows).
        Binding("right,n", "step(1)", "Next", key_display="→", priority=True),
        Binding("left,p", "step(-1)", "Back", key_display="←", priority=True),
        Binding("space", "play", "Play", priority=True),
        Binding("plus,equals_sign", "speed(1)", "Speed", key_display="+/-"),
        Binding("minus", "speed(-1)", "Slower", show=False),
        Binding("g", "goto", "Go to"),
        Binding("a", "arrival(1)", "Arrival", key_display="a/A"),
        Binding("A", "arrival(-1)", "Prev arrival", show=False),
        Binding("f", "finish(1)", "Finish", key_display="f/F"),
        Binding("F", "finish(-1)", "Prev finish", show=False),
        Binding("home", "first", "First", show=False, priority=True),
        Binding("end", "last", "Last", show=False, priority=True),
        Binding("slash", "find", "Find", key_display="/"),
        Binding("left_square_bracket", "walk_block(-1)", "Prev block", show=False),
        Binding("right_square_bracket", "walk_block(1)", "Next block", show=False),
        Binding("b", "pick_block", "Block id", show=False),
        Binding("escape", "clear_block", "Deselect", show=False),
        Binding("e", "error", "Error", show=False),
        Binding("t", "next_pane", "Pane", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        trace_path: str | None,
        entry: BackendEntry,
        options: BuildOptions,
        *,
        tokenizer_name: str | None = None,
        trace_block_size: int = 512,
        requests: Iterable[TraceRequest] | None = None,
    ) -> None:
        super().__init__()
        settings = options.settings
        self.settings = settings
        self.entry = entry
        self.serve_settings = options.serve
        self.trace_name = Path(trace_path).name if trace_path else "(requests)"
        self.tokenizer_name = tokenizer_name
        self.feed = Feed(
            self.post_message, trace_path, entry, options, tokenizer_name=tokenizer_name,
            trace_block_size=trace_block_size, requests=requests,
        )
        # A checkpoint is a copy of the pool: keep them to ~1 MB-equivalent each interval.
        self.history = History(settings.num_blocks, checkpoint_every=max(512, settings.num_blocks // 64))
        self.vllm_version: str | None = None
        self.engine_status = "starting"
        self.engine_error: tuple[str, str] | None = None
        self.trace_error: str | None = None
        self.read_count = 0
        self.read_fraction = 0.0
        self._target: int | None = None
        self._hit_series: list[float] = []
        self._shown: tuple[int, frozenset[int]] = (-1, frozenset())  # step, blocks lit
        self._table_filled = 0  # sequence-table rows showing their replay results
        self._furthest = -1  # the furthest step shown so far
        self._last_show = self._last_follow = 0.0
        self._auto_rows: set[int] = set()  # table rows the app moved the cursor to
        self._row_seen = 0  # the table's cursor row as of the last highlight handled or made
        self._playing = False
        self._speed = SPEEDS.index(5)
        self._timer = None
        self._show_scheduled = False
        self.selected_block: int | None = None
        self._spinner = 0
        # Serve mode: seq id -> steps it was preempted at; a jump (a/A/f/F) or a find
        # waiting for records the replay has not made yet.
        self._preempted_at: dict[str, list[int]] = {}
        self._pending_jump: tuple[str, int, int] | None = None  # (kind, delta, from step)
        self._pending_find: str | None = None

    @property
    def serving(self) -> bool:
        return self.entry.view is View.SERVE

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes: timers and worker messages may arrive while a
        # modal screen is on top or while the app shuts down, when queries would fail.
        s = self.settings
        serving = self.serving
        scheduler = ""
        if serving:  # until vLLM says, the class its settings resolve to
            sync = self.serve_settings is not None and self.serve_settings.async_scheduling is False
            scheduler = "Scheduler" if sync else "AsyncScheduler"
        self.header = InspectorHeader(self.trace_name, s, mode=self.entry.mode, scheduler=scheduler, id="header")
        self.request_panel = RequestPanel(s.block_size, serve=serving, id="request")
        # Sequential: the step's request's block table and the requests table. Serve: every
        # running sequence's block table and the queues pane.
        self.block_table: BlockTable | None = None
        self.running: RunningTables | None = None
        self.sequences: SequenceTable | None = None
        self.serve_panel: ServePanel | None = None
        if serving:
            self.running = RunningTables(s.num_blocks, id="running")
            self.serve_panel = ServePanel(self._request_id, id="queues", classes="pane")
            table, middle, panes = self.running, self.serve_panel, SERVE_PANES
        else:
            self.block_table = BlockTable(s.num_blocks, id="blocks")
            self.sequences = SequenceTable(s.block_size, id="sequences", classes="pane")
            table, middle, panes = self.block_table, self.sequences, SIDE_PANES
        self.pool_map = PoolMap(s.num_blocks, held_glyphs=serving, id="pool")
        self.tabs = Tabs(*(Tab(label, id=f"tab-{pane}") for pane, label in panes), id="side-tabs")
        self.totals = TotalsPanel(serve=serving, id="totals", classes="pane -active")
        self.inspector = BlockInspector(serve=serving, id="inspector", classes="pane")
        self.free_queue = FreeQueuePanel(id="freeq", classes="pane")
        self.events_panel = EventsPanel(id="events", classes="pane")
        self._panes = (self.totals, middle, self.inspector, self.free_queue, self.events_panel)
        self._side_panes = panes
        yield self.header
        with Container(id="body", classes="serve" if serving else ""):
            with Vertical(id="main"):
                yield self.request_panel
                yield table
                yield self.pool_map
                yield Legend(serve=serving, id="legend")
            # The panes are children of #body, not of a side column: app.tcss lays them
            # out as a grid around #main when wide, and as tabs under it when narrow.
            yield self.tabs
            yield from self._panes
        self.footer = Footer()
        yield self.footer

    def on_mount(self) -> None:
        titles = ("totals", "queues" if self.serving else "requests", "block inspector",
                  "free queue", "KV events")
        for pane, title in zip(self._panes, titles):
            pane.border_title = title
        if self.block_table is not None:
            self.block_table.border_title = "block table"
        if self.running is not None:
            self.running.border_title = "running sequences' block tables"
        self.pool_map.border_title = f"block pool ({self.settings.num_blocks:,} blocks)"
        self.pool_map.show(self.history.pool, {}, frozenset())
        self._show_loading()
        self._spin_timer = self.set_interval(0.2, self._spin)
        self.set_interval(TABLE_FLUSH_S, self._flush_table)
        self.set_interval(FOLLOW_IDLE_S / 2, self._follow_table)
        # Start the workers once the first frame is out: importing vLLM in a thread still
        # competes for the GIL, and the screen should come first.
        self.call_after_refresh(self._start_workers)

    def on_resize(self, event) -> None:  # noqa: ANN001 - events.Resize
        # Serve mode has two more keys (a/A, f/F): on a narrow terminal the footer drops
        # its padding so "? Help" and "q Quit" stay on it.
        self.footer.compact = self.serving and event.size.width < 120

    def _start_workers(self) -> None:
        self._read_trace()
        self._start_engine()

    def on_unmount(self) -> None:
        self.feed.close()

    @property
    def _main(self) -> Screen:
        # Timers and messages keep arriving while a modal (help, a prompt) is on top; the
        # panes live on the first screen, so queries go there, not to the active screen.
        return self.screen_stack[0]

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

    def _request_id(self, seq_id: str) -> str:
        """Serve mode: the trace's request id of a vLLM seq id (the request's index)."""
        req = self._request_of_seq(seq_id)
        return req.request_id if req is not None else seq_id

    def _request_of_seq(self, seq_id: str) -> TraceRequest | None:
        try:
            return self.feed.requests[int(seq_id)]
        except (ValueError, IndexError):
            return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect", name="scan block")
    def _scan_block(self, block_id: int, upto: int, slot, text_trace: bool) -> None:
        worker = get_current_worker()
        decode = None
        if text_trace:
            from engine.trace.tokenize import load_tokenizer

            try:
                decode = load_tokenizer(self.tokenizer_name).decode
            except Exception:  # a tokenizer that cannot load only costs the decoded text
                decode = None
        request_of = (lambda seq: self._request_of_seq(seq.seq_id)) if self.serving else None
        report = scan_block(
            self.history.records, upto, block_id, slot, self.settings.block_size,
            decode=decode, cancelled=lambda: worker.is_cancelled, request_of=request_of,
        )
        if not report.cancelled:
            self.post_message(BlockReport(report))

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
            self._update_status()

    # -- messages from the workers -------------------------------------------------------------
    def on_trace_progress(self, msg: TraceProgress) -> None:
        start = self.read_count
        requests = self.feed.requests[start:msg.count]
        self.read_count = msg.count
        self.read_fraction = msg.bytes_read / msg.total_bytes if msg.total_bytes else 1.0
        if self.sequences is not None:
            self.sequences.add_requests(requests)
        gc.freeze()  # see the note below
        if not self.serving:  # serve mode: steps are iterations, counted by the replay
            self.header.update_state(total=msg.count, total_final=msg.done)
        if msg.done and not msg.count and self.trace_error is None:
            self.trace_error = "the trace has no requests"
        if not self.history.records:
            self._show_loading()
        self._update_status()

    # Why gc.freeze(): records and requests are millions of small immutable tuples that live
    # as long as the app. Left to the cyclic GC, every full collection walks all of them
    # (half a second on a long trace, freezing the screen). Freezing moves what exists now
    # out of the collector's sight; it is O(1), and they hold no reference cycles.

    def on_trace_failed(self, msg: TraceFailed) -> None:
        self.trace_error = msg.text
        self.notify(f"trace error: {msg.text}", severity="error", markup=False, timeout=10)
        self._update_status()

    def on_engine_status(self, msg: EngineStatus) -> None:
        self.engine_status = msg.text
        self._show_loading()
        self._update_status()

    def on_engine_ready(self, msg: EngineReady) -> None:
        self.vllm_version = msg.vllm_version
        self.engine_status = "ready"
        self.header.update_state(vllm_version=msg.vllm_version)
        if msg.info is not None:
            self.header.update_state(scheduler=msg.info.scheduler)
        self._run_replay()
        self._update_status()

    def on_engine_failed(self, msg: EngineFailed) -> None:
        self.engine_error = (msg.text, msg.traceback)
        self.engine_status = "failed"
        self._show_loading()
        self._update_status()

    def on_replay_progress(self, msg: ReplayProgress) -> None:
        start = len(self.history)
        new = self.feed.records[start:msg.count]
        if self.serving:
            usable = max(1, self.settings.num_blocks - 1)
            for rec in new:
                self.history.append(rec)
                self._hit_series.append((rec.serve.used_blocks if rec.serve else 0) / usable)  # KV usage
            preempted_index(new, self._preempted_at)
            self.header.update_state(total=len(self.history), total_final=msg.done)
        else:
            for rec in new:
                self.history.append(rec)
                r = rec.request
                self._hit_series.append(r.hit_tokens / r.prompt_tokens if r and r.prompt_tokens else 0.0)
        gc.freeze()  # see the note above on_trace_failed
        if self._target is not None and (self._target < len(self.history) or msg.done):
            target, self._target = self._target, None
            self._seek(min(target, len(self.history) - 1))
        elif self.history.position < 0 and self.history.records:
            self._seek(0)
        if msg.done:
            self._update_total()
        if self._pending_jump is not None or self._pending_find is not None:
            self._retry_pending(msg.done)
        self._update_status()

    def on_block_report(self, msg: BlockReport) -> None:
        report = msg.report
        if report.block_id == self.selected_block:
            self.inspector.show(report)

    def on_block_clicked(self, msg: BlockClicked) -> None:
        self.action_select_block(msg.block_id)

    @on(DataTable.RowSelected, "#sequences")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self._goto(event.cursor_row)

    @on(DataTable.RowHighlighted, "#sequences")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # One click (or ↑/↓ in the table) jumps to that step. Moves the app made itself
        # to follow the cursor are remembered in _auto_rows and ignored here.
        self._row_seen = event.cursor_row
        if event.cursor_row in self._auto_rows:
            self._auto_rows.discard(event.cursor_row)
            return
        current = self._target if self._target is not None else self.history.position
        if event.cursor_row != current:
            self._goto(event.cursor_row)

    @on(Tabs.TabActivated, "#side-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        pane = (event.tab.id or "").removeprefix("tab-")
        for widget in self._panes:
            widget.set_class(widget.id == pane, "-active")

    # -- the cursor ------------------------------------------------------------------------------
    def _last_index(self) -> int | None:
        """The last step that can exist, when known."""
        if self.feed.replay_done:
            return len(self.history) - 1
        if self.feed.read_done and not self.serving:
            return self.read_count - 1
        return None

    def _goto(self, index: int) -> None:
        last = self._last_index()
        if last is not None:
            index = min(index, last)
        index = max(index, 0)
        if index < len(self.history):
            self._target = None
            self._seek(index)
        else:
            self._target = index
            self.feed.want(index + 1 + Feed.RUN_AHEAD)
            self._update_status()

    def _seek(self, index: int) -> None:
        if index < 0:
            return
        self.history.seek(index)
        self.feed.want(index + 1 + Feed.RUN_AHEAD)
        self._schedule_show()

    def _schedule_show(self) -> None:
        # Coalesce: a burst of keys (a held arrow, top-speed play) redraws once.
        if not self._show_scheduled:
            self._show_scheduled = True
            self.call_later(self._show_step)

    def _show_step(self) -> None:
        self._show_scheduled = False
        rec = self.history.current
        if rec is None:
            return
        if self.serving:
            self._show_serve_step(rec)
            return
        i = rec.index
        seq = rec.seqs[0] if rec.seqs else None
        current = dict(zip(seq.block_ids, seq.states)) if seq else {}
        evicted = frozenset(bid for bid, _ in rec.evicted)
        self.pool_map.show(self.history.pool, current, evicted, self._changed_blocks(i, current, evicted))
        placeholder = ""
        if seq is None and rec.request is not None:
            placeholder = "no blocks: " + rec.note
        self.block_table.show(seq, placeholder)
        summary = token_summary(rec, self.settings.block_size)
        if len(summary) + 18 > self.block_table.size.width:
            summary = token_summary(rec, self.settings.block_size, short=True)
        self.block_table.border_title = Text(f"block table · {summary}")
        self.request_panel.show(rec)
        self.totals.show(rec.totals, self._hit_series[max(0, i + 1 - SPARK_STEPS): i + 1])
        self._last_show = time.monotonic()
        self._furthest = max(self._furthest, i)
        self.free_queue.show(rec, self.history.pool)
        self.events_panel.show(rec)
        self.header.update_state(step=i + 1)
        if self.selected_block is not None:
            self._inspect(self.selected_block)
        if self._playing and rec.error is not None:
            self._set_playing(False)  # stop on an error: it is shown at its step
        self._update_status()

    def _show_serve_step(self, rec: StepRecord) -> None:
        i = rec.index
        pool = self.history.pool
        # The pool map letters what changed this iteration; blocks held from earlier show
        # their ref count (shaded apart above 1), so sharing between live sequences shows.
        current = {
            bid: state
            for seq in rec.seqs for bid, state in zip(seq.block_ids, seq.states)
            if state is not BlockState.HELD
        }
        evicted = frozenset(bid for bid, _ in rec.evicted)
        self.pool_map.show(pool, current, evicted, self._changed_blocks(i, current, evicted))
        self.running.show(rec.seqs, pool, "no sequence running: " + (rec.note or "vLLM is idle"))
        held = {bid for seq in rec.seqs for bid in seq.block_ids}
        shared = sum(1 for bid in held if pool[bid][0] > 1)
        n = len(rec.seqs)
        self.running.border_title = Text(
            f"running sequences' block tables · {n} sequence{'s' * (n != 1)} · "
            f"{len(held):,} blocks held, {shared:,} shared"
        )
        self.request_panel.show(rec)
        self.serve_panel.show(rec, self.history.records[i - 1] if i else None, self._preempted_at)
        self.totals.show(rec.totals, self._hit_series[max(0, i + 1 - SPARK_STEPS): i + 1])
        self._last_show = time.monotonic()
        self._furthest = max(self._furthest, i)
        self.free_queue.show(rec, pool)
        self.events_panel.show(rec)
        x = rec.serve
        if x is not None:
            self.header.update_state(step=i + 1, iteration={
                "iteration": x.iteration, "clock": rec.clock,
                "scheduled_tokens": x.scheduled_tokens, "used_blocks": x.used_blocks,
            })
        if self.selected_block is not None:
            self._inspect(self.selected_block)
        if self._playing and rec.error is not None:
            self._set_playing(False)
        self._update_status()

    def _follow_table(self) -> None:
        """Put the requests table's cursor on the current step, lazily: moving a DataTable
        cursor re-renders all its visible rows, so while steps come fast (a held key,
        play) the table follows at most every FOLLOW_EVERY_S, and right after they stop."""
        i = self.history.position
        table = self.sequences
        if table is None or i < 0 or table.cursor_row == i or i >= table.row_count:
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

    def _flush_table(self) -> None:
        # Any DataTable cell update re-renders its visible rows and re-measures all rows,
        # so new results are written in batches a few times a second, never per step.
        # Results show up to the furthest step visited: the table is the requests "so far",
        # not a preview of what the replay, running ahead, already knows.
        end = min(len(self.history), self._furthest + 1)
        if self.sequences is None or end <= self._table_filled:
            return
        self.sequences.apply_records(self.history.records[self._table_filled : end])
        self._table_filled = end

    def _changed_blocks(self, index: int, current: dict, evicted: frozenset[int]) -> set[int] | None:
        """Blocks whose pool-map cell may differ from the last step shown; None after a
        jump (the pool map then redraws every row)."""
        prev, lit = self._shown
        now = frozenset(current) | evicted
        self._shown = (index, now)
        if prev < 0 or abs(index - prev) > 64:
            return None
        changed = set(lit | now)
        for rec in self.history.records[min(index, prev) + 1 : max(index, prev) + 1]:
            changed.update(bid for bid, _b, _a in rec.pool_delta)  # steps applied or undone
            changed.update(bid for seq in rec.seqs for bid in seq.block_ids)
        return changed

    def _update_total(self) -> None:
        if self.feed.replay_done and len(self.history) < self.read_count:
            # The replay stopped early (vLLM raised): those are all the steps there are.
            self.header.update_state(total=len(self.history), total_final=True)

    # -- status line ------------------------------------------------------------------------------
    def _spin(self) -> None:
        # Animate the status only while something is loading; an idle screen stays still.
        busy = (
            self.engine_status not in ("ready", "failed")
            or self._target is not None
            or self._pending_jump is not None or self._pending_find is not None
            or not (self.feed.read_done or self.feed.reader_paused)
        )
        if busy:
            self._spinner += 1
            self._update_status()

    def _update_status(self) -> None:
        spin = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[self._spinner % 10]
        parts = []
        if self.engine_status == "failed":
            parts.append("vLLM failed (e: details)")
        elif self.engine_status != "ready":
            parts.append(f"{spin} {self.engine_status}")
        if not self.feed.read_done and not self.feed.reader_paused:
            parts.append(f"reading trace {self.read_fraction:.0%}")
        if self.trace_error:
            parts.append("trace error (e)")
        if self._target is not None and self.engine_status == "ready":
            done = len(self.history)
            where = "the end" if self._target >= TO_THE_END else f"step {self._target + 1:,}"
            parts.append(f"{spin} replaying to {where} ({done:,} steps done)")
        if self._pending_jump is not None:
            parts.append(f"{spin} replaying to the next {self._pending_jump[0]} ({len(self.history):,} steps done)")
        if self._pending_find is not None:
            parts.append(f"{spin} replaying until the request arrives")
        if self._playing:
            parts.append(f"▶ {SPEEDS[self._speed]}/s")
        self.header.update_state(status=" · ".join(parts))

    def _show_loading(self) -> None:
        if self.history.records:
            return
        lines = []
        if self.engine_status == "failed" and self.engine_error:
            lines.append(f"vLLM could not start: {self.engine_error[0]}  (press e for the traceback)")
        elif self.serving:
            lines.append(
                f"Starting vLLM's scheduler: {self.engine_status}… (importing vLLM takes a few "
                "seconds)."
            )
        else:
            lines.append(
                f"Starting vLLM's KV-cache manager: {self.engine_status}… (importing vLLM takes a "
                "few seconds). The requests pane lists the trace already."
            )
        if self.trace_error:
            lines.append(f"Trace: {self.trace_error}")
        self.request_panel.show(None, "\n".join(lines))
        if self.block_table is not None:
            self.block_table.show(None, "")

    # -- actions ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # App-level keys belong to the main screen; a modal (help, prompt) gets its own.
        if self.screen is not self.screen_stack[0] and action not in ("quit", "select_block"):
            return False
        if action in SERVE_ONLY and not self.serving:
            return False  # hidden from the footer too
        return True

    def _cancel_pending(self) -> None:
        """Another move replaces a jump or find still waiting for records."""
        self._pending_jump = self._pending_find = None

    def action_step(self, delta: int) -> None:
        self._cancel_pending()
        base = self._target if self._target is not None else self.history.position
        self._goto(base + delta if base >= 0 else 0)

    def action_first(self) -> None:
        self._cancel_pending()
        self._goto(0)

    def action_last(self) -> None:
        self._cancel_pending()
        last = self._last_index()
        self._goto(last if last is not None else TO_THE_END)

    def action_play(self) -> None:
        self._set_playing(not self._playing)

    def action_speed(self, delta: int) -> None:
        self._speed = max(0, min(len(SPEEDS) - 1, self._speed + delta))
        if self._playing:
            self._set_playing(True)
        else:
            self.notify(f"speed {SPEEDS[self._speed]} steps/s", timeout=1.5)
        self._update_status()

    def _set_playing(self, playing: bool) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._playing = playing
        if playing:
            speed = SPEEDS[self._speed]
            interval = max(1 / speed, TICK_S)
            self._per_tick = max(1, round(speed * interval))
            self._timer = self.set_interval(interval, self._tick)
        self._update_status()

    def _tick(self) -> None:
        if self._target is not None:
            return  # waiting for the replay to catch up
        last = self._last_index()
        if last is not None and self.history.position >= last:
            self._set_playing(False)
            return
        self._goto(self.history.position + self._per_tick)

    # -- serve mode: jumps to arrivals and finishes --------------------------------------
    def action_arrival(self, delta: int) -> None:
        self._jump("arrival", delta)

    def action_finish(self, delta: int) -> None:
        self._jump("finish", delta)

    def _jump(self, kind: str, delta: int) -> None:
        base = self._target if self._target is not None else self.history.position
        self._pending_jump = None
        if self._find_jump(kind, delta, base):
            return
        if delta > 0 and not self.feed.replay_done:
            # Not recorded yet: ask for more records and look again as they come.
            self._pending_jump = (kind, delta, base)
            self.feed.want(len(self.history) + Feed.RUN_AHEAD)
            self._update_status()
            return
        self.notify(f"no {'later' if delta > 0 else 'earlier'} {kind}", timeout=2)

    def _find_jump(self, kind: str, delta: int, base: int) -> bool:
        records = self.history.records
        search = {
            ("arrival", 1): serve_steps.next_arrival, ("arrival", -1): serve_steps.prev_arrival,
            ("finish", 1): serve_steps.next_finish, ("finish", -1): serve_steps.prev_finish,
        }[kind, delta]
        index = search(records, base)
        if index is None:
            return False
        self._goto(index)
        return True

    def _retry_pending(self, done: bool) -> None:
        if self._pending_jump is not None:
            kind, delta, base = self._pending_jump
            if self._find_jump(kind, delta, base):
                self._pending_jump = None
            elif done:
                self._pending_jump = None
                self.notify(f"no later {kind}", timeout=2)
            else:
                self.feed.want(len(self.history) + Feed.RUN_AHEAD)
        if self._pending_find is not None:
            query = self._pending_find
            index = self._serve_find(query)
            if index is not None or done:
                self._pending_find = None
                if index is None:
                    self.notify(f"no request id matches {query!r}", severity="warning", markup=False)
                else:
                    self._goto(index)
            else:
                self.feed.want(len(self.history) + Feed.RUN_AHEAD)

    def _serve_find(self, query: str) -> int | None:
        """Serve mode: the step where the request a query names arrives (None: not recorded
        yet, or no such request)."""
        req_index = find_request(self.feed.requests[: self.read_count], query)
        if req_index is None:
            return None
        seq_id = str(req_index)
        for rec in self.history.records:
            if (rec.serve is not None and seq_id in rec.serve.arrived) or any(r.seq_id == seq_id for r in rec.admitted):
                return rec.index
        return None

    def action_goto(self) -> None:
        def done(value: str | None) -> None:
            if value:
                try:
                    self._goto(int(value.replace(",", "")) - 1)
                except ValueError:
                    self.notify(f"not a step number: {value!r}", severity="warning", markup=False)

        count = self.header.step_text.split("/")[-1].strip() if self.serving else f"{self.read_count:,}"
        self.push_screen(PromptScreen(f"Go to step (1–{count}):", "step number"), done)

    def action_find(self) -> None:
        def done(value: str | None) -> None:
            if not value:
                return
            if self.serving:
                index = self._serve_find(value)
                if index is not None:
                    self._goto(index)
                elif find_request(self.feed.requests[: self.read_count], value) is None:
                    self.notify(f"no request id matches {value!r}", severity="warning", markup=False)
                elif not self.feed.replay_done:
                    self._pending_find = value  # it arrives after the steps made so far
                    self.feed.want(len(self.history) + Feed.RUN_AHEAD)
                return
            index = find_request(self.feed.requests[: self.read_count], value)
            if index is None:
                self.notify(f"no request id matches {value!r}", severity="warning", markup=False)
            else:
                self._goto(index)

        self.push_screen(PromptScreen("Find request id (exact, else first containing it):", "id"), done)

    def action_pick_block(self) -> None:
        def done(value: str | None) -> None:
            if value:
                try:
                    self.action_select_block(int(value))
                except ValueError:
                    self.notify(f"not a block id: {value!r}", severity="warning", markup=False)

        self.push_screen(PromptScreen(f"Block id (0–{self.settings.num_blocks - 1:,}):", "block id"), done)

    def action_select_block(self, block_id: int) -> None:
        if not 0 <= block_id < self.settings.num_blocks:
            self.notify(f"no block {block_id} in this pool", severity="warning")
            return
        self.selected_block = block_id
        self.pool_map.select(block_id)
        self._table.select(block_id)
        if self._main.has_class("-narrow"):
            self.tabs.active = "tab-inspector"
        self._inspect(block_id)

    def action_clear_block(self) -> None:
        self.selected_block = None
        self.pool_map.select(None)
        self._table.select(None)
        self.inspector.clear()

    @property
    def _table(self) -> BlockTable | RunningTables:
        """The block table(s) of the mode: the request's, or every running sequence's."""
        return self.running if self.running is not None else self.block_table

    def action_walk_block(self, delta: int) -> None:
        table = self._table
        ids = table.block_ids
        if not ids:
            return
        pos = table.position_of(self.selected_block) if self.selected_block is not None else None
        pos = (0 if delta > 0 else len(ids) - 1) if pos is None else (pos + delta) % len(ids)
        self.action_select_block(ids[pos])

    def _inspect(self, block_id: int) -> None:
        upto = self.history.position
        inspector = self.inspector
        if upto < 0:
            return
        inspector.show_pending(block_id, upto)
        self._scan_block(block_id, upto, self.history.slot(block_id), self.feed.text_trace)

    def action_error(self) -> None:
        rec = self.history.current
        if rec is not None and rec.error is not None:
            self.push_screen(ErrorScreen(f"vLLM raised at step {rec.index + 1}", rec.error.message, rec.error.traceback))
        elif rec is not None and rec.request is not None and rec.request.outcome is not Outcome.OK:
            self.push_screen(ErrorScreen(f"Step {rec.index + 1}: {rec.request.outcome.value}", rec.note))
        elif self.engine_error is not None:
            self.push_screen(ErrorScreen("vLLM could not start", *self.engine_error))
        elif self.trace_error is not None:
            self.push_screen(ErrorScreen("Trace error", self.trace_error))
        else:
            self.notify("nothing went wrong at this step", timeout=2)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(serve=self.serving))

    def action_next_pane(self) -> None:
        tabs = self.tabs
        ids = [f"tab-{pane}" for pane, _ in self._side_panes]
        current = ids.index(tabs.active) if tabs.active in ids else -1
        tabs.active = ids[(current + 1) % len(ids)]


def find_request(requests: list[TraceRequest], query: str) -> int | None:
    for req in requests:
        if req.request_id == query:
            return req.index
    for req in requests:
        if query in req.request_id:
            return req.index
    return None
