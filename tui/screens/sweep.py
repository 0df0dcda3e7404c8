"""The sweep screen (`prefix-tui sweep TRACE --tui`, or `c` in the inspector): the points
run in the background, a progress bar per point fills as its process reports, and the
curve and the table grow as points arrive.

A thread worker runs the executor (engine.sweep.executors) and posts messages; the screen
handles them on the UI thread. Leaving the screen cancels the points still running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static

from engine import metrics
from engine.sweep.executors import ExecutorChoice, run_points
from engine.sweep.plan import SweepOutcome, SweepPlan
from engine.sweep.points import PointResult, PointSpec
from tui.sweep_cells import (
    axis_cells,
    axis_headers,
    figure_cells,
    figure_headers,
    miss_cell,
    pct as _pct,
)
from tui.sweep_plot import chart_data
from tui.widgets.safe import safe_text
from tui.widgets.sweep_chart import SweepChart

Runner = Callable[..., list[PointResult]]  # engine.sweep.executors.run_points' signature


class PointProgressed(Message):
    def __init__(self, index: int, phase: str, done: int, total: int) -> None:
        super().__init__()
        self.index, self.phase, self.done, self.total = index, phase, done, total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PointProgressed) and message.index == self.index


class PointFinished(Message):
    def __init__(self, result: PointResult) -> None:
        super().__init__()
        self.result = result


class SweepEnded(Message):
    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error


class SweepScreen(Screen[None]):
    BINDINGS = [Binding("q", "quit_sweep", "Quit")]
    DEFAULT_CSS = """
    SweepScreen { layout: vertical; }
    #sweep-title { height: 1; }
    #sweep-bars { height: auto; max-height: 10; }
    .point-row { height: 1; }
    .point-label { width: 46; }
    .point-phase { width: 14; }
    #sweep-table { height: auto; max-height: 12; }
    #sweep-status { height: 1; }
    """

    def __init__(self, plan: SweepPlan, choice: ExecutorChoice,
                 runner: Runner = run_points) -> None:
        super().__init__()
        self.plan = plan
        self.choice = choice
        self.runner = runner
        self.results: list[PointResult] = []
        self.cancel = threading.Event()
        self.finished = False

    def compose(self) -> ComposeResult:
        spec = self.plan.specs[0]
        yield Static(Text(f"CAPACITY SWEEP · {safe_text(spec.source.path)} · mode {spec.mode} "
                          f"· {len(self.plan.specs)} runs, one process each"), id="sweep-title")
        with VerticalScroll(id="sweep-bars"):
            for s in self.plan.specs:
                with Horizontal(classes="point-row"):
                    yield Label(("ceiling · " if s.ceiling else "") + s.label,
                                classes="point-label")
                    yield ProgressBar(total=max(self.plan.requests, 1), show_eta=False,
                                      id=f"bar-{s.index}")
                    yield Label("waiting", id=f"phase-{s.index}", classes="point-phase")
        yield SweepChart(id="sweep-chart")
        yield DataTable(id="sweep-table", zebra_stripes=True)
        yield Static("", id="sweep-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        plan = self.plan
        hit = "GPU hit rate (vLLM)" if plan.tier_axis else "hit rate (vLLM)"
        table.add_columns("block", *axis_headers(plan), "pool", "capacity (tokens)", hit,
                          "bound (prefix-tui)", *figure_headers(plan), "sharing",
                          "evictions", "not fitted", "requests", "missed blocks: why")
        self._status(f"running on {self.choice.kind}…")
        self.run_sweep()

    @work(thread=True, exclusive=True)
    def run_sweep(self) -> None:
        error = None
        try:
            self.runner(self.plan.specs, self.choice,
                        lambda r: self.post_message(PointFinished(r)),
                        lambda *p: self.post_message(PointProgressed(*p)), self.cancel)
        except Exception as exc:  # shown on the status line, one line
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self.post_message(SweepEnded(error))

    @on(PointProgressed)
    def _progressed(self, m: PointProgressed) -> None:
        self.query_one(f"#bar-{m.index}", ProgressBar).update(total=max(m.total, 1),
                                                               progress=m.done)
        self.query_one(f"#phase-{m.index}", Label).update(m.phase)

    @on(PointFinished)
    def _finished(self, m: PointFinished) -> None:
        r = m.result
        self.results.append(r)
        spec = self.plan.specs[r.index]
        bar = self.query_one(f"#bar-{r.index}", ProgressBar)
        if r.status == "complete":
            bar.update(progress=bar.total)
        self.query_one(f"#phase-{r.index}", Label).update(r.status)
        outcome = self.outcome()
        self.query_one(SweepChart).update_data(chart_data(outcome))
        if not spec.ceiling:  # rows in the sweep's order, whichever point finished first
            self.query_one(DataTable).clear()
            for spec_r, done in outcome.point_pairs():
                self._add_row(spec_r, done)
        self._status(f"{len(self.results)} of {len(self.plan.specs)} runs done")

    def _add_row(self, spec: PointSpec, r: PointResult) -> None:
        t = r.totals
        inf = spec.num_blocks is None
        ok = r.status == "complete"
        bound = r.bound.hit_rate if r.bound is not None and not inf else None
        self.query_one(DataTable).add_row(
            str(spec.block_size), *axis_cells(self.plan, spec, r),
            f"inf ({r.num_blocks_run:,})" if inf else f"{spec.num_blocks:,}",
            "inf" if inf else f"{spec.capacity_tokens:,}",
            _pct(metrics.hit_rate(t)) if ok else Text(safe_text(r.status)),
            _pct(bound), *figure_cells(self.plan, spec, r),
            _pct(metrics.sharing_fraction(t)), f"{t.evictions:,}",
            f"{t.not_fitted:,}", f"{t.requests:,}", miss_cell(r.reasons),
        )

    @on(SweepEnded)
    def _ended(self, m: SweepEnded) -> None:
        self.finished = True
        failed = [r for r in self.results if r.status != "complete"]
        text = f"done: {len(self.results)} runs"
        if failed:
            text += f", {len(failed)} not complete ({safe_text(failed[0].message)})"
        if m.error:
            text = f"stopped: {safe_text(m.error)}"
        self._status(text + (" · q goes back to the inspector" if self.over_inspector
                             else " · q quits"))

    def outcome(self) -> SweepOutcome:
        return SweepOutcome(self.plan, tuple(sorted(self.results, key=lambda r: r.index)))

    def _status(self, text: str) -> None:
        self.query_one("#sweep-status", Static).update(Text(text))

    @property
    def over_inspector(self) -> bool:
        """Opened with c from the inspector (q goes back) rather than by sweep --tui."""
        return len(self.app.screen_stack) > 1

    def action_quit_sweep(self) -> None:
        self.cancel.set()  # points still running stop at their next request
        if self.over_inspector:
            self.app.pop_screen()
        else:
            self.app.exit(0)

    def on_unmount(self) -> None:
        self.cancel.set()

