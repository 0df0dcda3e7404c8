"""The attach view: a live KV event stream (`prefix-tui attach`) or a recorded one
(`prefix-tui events FILE`), one Screen over engine.kvevents.state.CacheState.

Threads: one worker runs the source (the subscriber loop, or the file read) and owns the
state; every UPDATE_S it posts a LiveUpdate carrying engine.kvevents.summary.LiveFigures
computed on its own thread. The screen only draws what it is handed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from engine.kvevents.prometheus import PrefixCacheCounters
from engine.kvevents.state import LogEntry
from engine.kvevents.summary import LiveFigures
from tui.widgets.safe import safe_text

UPDATE_S = 0.5


class LiveUpdate(Message):
    def __init__(self, figures: LiveFigures, metrics: MetricsView | None) -> None:
        super().__init__()
        self.figures = figures
        self.metrics = metrics

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LiveUpdate)


class LiveFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


@dataclass(frozen=True, slots=True)
class MetricsView:
    counters: PrefixCacheCounters
    interval_hit_rate: float | None  # between the last two polls


# A source runs on the worker thread: it feeds its state and calls post(figures, metrics)
# every UPDATE_S until ``stop`` is set (or it ends, for a file).
Source = Callable[[Callable[[LiveFigures, MetricsView | None], None], threading.Event], None]


def short_hash(h: bytes | int | None) -> str:
    if h is None:
        return "-"
    if isinstance(h, int):  # vLLM's int hashes are 64 bits: all 16 hex digits
        return f"{h & ((1 << 64) - 1):016x}"
    return h.hex()[:16]


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


class LiveScreen(Screen):
    BINDINGS = [Binding("q", "app.quit", "Quit")]
    DEFAULT_CSS = """
    LiveScreen #live-header { height: 1; background: $boost; }
    LiveScreen #live-left { width: 1fr; }
    LiveScreen #live-right { width: 2fr; }
    LiveScreen .live-pane { border: round $primary 50%; height: auto; padding: 0 1; }
    LiveScreen #live-log { height: 1fr; }
    LiveScreen #live-prefixes { height: auto; max-height: 14; }
    """

    def __init__(self, title: str, source: Source) -> None:
        super().__init__()
        self.title_text = title
        self.source = source
        self.stop = threading.Event()
        self.figures: LiveFigures | None = None
        self.metrics: MetricsView | None = None
        self.failure = ""

    def compose(self) -> ComposeResult:
        yield Static(id="live-header")
        with Horizontal():
            with Vertical(id="live-left"):
                yield Static(id="live-figures", classes="live-pane")
                yield Static(id="live-groups", classes="live-pane")
                yield Static(id="live-gaps", classes="live-pane")
            with Vertical(id="live-right"):
                yield Static(id="live-prefixes", classes="live-pane")
                yield Static(id="live-log", classes="live-pane")
        yield Footer()

    def on_mount(self) -> None:
        for pane, title in (("figures", "stream"), ("groups", "cached now, by group / medium"),
                            ("gaps", "gaps and problems"),
                            ("prefixes", "cached prefix tree: biggest trees and branches"),
                            ("log", "event log (newest last)")):
            self.query_one(f"#live-{pane}").border_title = title
        self._draw()
        self.run_source()

    def on_unmount(self) -> None:
        self.stop.set()

    @work(thread=True, exclusive=True)
    def run_source(self) -> None:
        def post(figures: LiveFigures, metrics: MetricsView | None) -> None:
            self.post_message(LiveUpdate(figures, metrics))

        try:
            self.source(post, self.stop)
        except Exception as exc:  # shown on screen: the worker must not die silently
            self.post_message(LiveFailed(f"{type(exc).__name__}: {exc}"))

    def on_live_update(self, message: LiveUpdate) -> None:
        self.figures = message.figures
        self.metrics = message.metrics
        self._draw()

    def on_live_failed(self, message: LiveFailed) -> None:
        self.failure = message.text
        self._draw()

    # -- drawing -------------------------------------------------------------------------------
    def _draw(self) -> None:
        f = self.figures
        header = Text(safe_text(self.title_text))
        if self.failure:
            header.append(f"  ·  stopped: {safe_text(self.failure)}", style="bold red")
        elif f is None:
            header.append("  ·  starting (importing vLLM's event classes)…")
        else:
            header.append(f"  ·  hashes {f.hash_type or '?'}  ·  last seq "
                          f"{'-' if f.last_seq is None else f.last_seq}")
            if f.done:
                header.append("  ·  end of file")
            elif f.silent_for_s >= 5:
                header.append(f"  ·  silent for {f.silent_for_s:.0f} s", style="bold yellow")
        self.query_one("#live-header", Static).update(header)
        if f is None:
            return
        self.query_one("#live-figures", Static).update(self._figures_text(f))
        self.query_one("#live-groups", Static).update(self._groups_text(f))
        self.query_one("#live-gaps", Static).update(self._gaps_text(f))
        self.query_one("#live-prefixes", Static).update(self._prefixes_text(f))
        self.query_one("#live-log", Static).update(self._log_text(f))

    def _figures_text(self, f: LiveFigures) -> Text:
        t = Text()
        t.append(f"batches   {f.batches:>12,}\n")
        t.append(f"stored    {f.stored:>12,}  {f.stored_per_s:,.1f}/s\n", style="green")
        t.append(f"removed   {f.removed:>12,}  {f.removed_per_s:,.1f}/s\n", style="red")
        t.append(f"cleared   {f.cleared:>12,}\n")
        t.append(f"cached    {f.cached_now:>12,} hashes, {f.cached_blocks:,} blocks")
        m = self.metrics
        if m is not None:
            c = m.counters
            if c.error:
                t.append(f"\nvLLM metrics: {safe_text(c.error)}", style="yellow")
            else:
                t.append(f"\nvLLM hit rate {_rate(c.hit_rate)} cumulative, "
                         f"{_rate(m.interval_hit_rate)} last poll")
        return t

    def _groups_text(self, f: LiveFigures) -> Text:
        if not f.by_group_medium:
            return Text("nothing cached", style="dim")
        t = Text()
        for i, (group, medium, blocks) in enumerate(f.by_group_medium):
            if i:
                t.append("\n")
            t.append(f"group {'-' if group is None else group:<3} "
                     f"{safe_text(medium or '-'):<8} {blocks:>10,} blocks")
        return t

    def _gaps_text(self, f: LiveFigures) -> Text:
        p = f.problems
        t = Text(f"missed {f.missed_batches:,} batches, recovered {f.recovered_batches:,}"
                 f"; history {f.history_batches:,}\n")
        for g in f.gaps[-3:]:
            t.append(f"  seq {g.first:,}..{g.end - 1:,}: {g.recovered}/{g.missed} recovered\n",
                     style="yellow" if g.recovered < g.missed else "")
        t.append(f"malformed {p.malformed_frames:,}  bad events {p.bad_events:,}  "
                 f"unknown tags {p.unknown_tags:,}\nwrong hash types {p.wrong_hash_types:,}  "
                 f"removed unseen {p.unknown_removed:,}  duplicates {p.duplicates:,}")
        for err in f.errors[-3:]:
            t.append(f"\n{safe_text(err)}", style="yellow")
        return t

    def _prefixes_text(self, f: LiveFigures) -> Text:
        if not f.tree:
            return Text("no cached chains yet", style="dim")
        total = max(f.cached_blocks, 1)
        t = Text()
        for i, (level, p) in enumerate(f.tree):
            if i:
                t.append("\n")
            lead = "  " * level + ("└ " if level else "")
            t.append(f"{lead}{short_hash(p.root)}  {p.blocks:,} blocks "
                     f"({100 * p.blocks / total:.1f} %), depth {p.depth:,}",
                     style="bold" if level == 0 else "")
        return t

    def _log_text(self, f: LiveFigures) -> Text:
        rows = self.query_one("#live-log", Static).size.height or 20
        t = Text()
        for i, e in enumerate(f.log[-rows:]):
            if i:
                t.append("\n")
            t.append(log_line(e), style={"stored": "green", "removed": "red",
                                         "cleared": "magenta"}.get(e.kind, "yellow"))
        return t


def log_line(e: LogEntry) -> str:
    seq = "" if e.seq is None else f"#{e.seq} "
    src = "" if e.source in ("live", "file") else f" ({e.source})"
    if e.kind in ("stored", "removed"):
        return f"{seq}{e.kind} {e.count} {short_hash(e.first_hash)}{src}"
    if e.kind == "cleared":
        return f"{seq}all blocks cleared{src}"
    return f"{seq}{e.kind}: {safe_text(e.text)}{src}"
