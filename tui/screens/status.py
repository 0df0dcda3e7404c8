"""The header's status line: what is loading, replaying or playing, in one line."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui.screens.inspector import InspectorScreen

TO_THE_END = 1 << 62  # End pressed before the trace's length is known
SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # steps per second
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SETTLED = ("ready", "failed", "stopped")  # engine states with nothing loading
ETA_AFTER_S = 1.0  # an estimate needs this much of the run behind it


def duration(seconds: float) -> str:
    """"45 s", "3 min 05 s", "2 h 10 min"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class StatusLine:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.frame = 0
        self._clock = clock
        self._run: tuple[int, float, float] | None = None  # (target, started, fraction then)

    def spin(self) -> None:
        self.frame += 1

    def _progress(self, screen: InspectorScreen, target: int) -> str:
        """How far the replay is towards ``target``, and when it should get there (the
        rate since this target was set)."""
        progress = screen.progress_to(target)
        if progress is None:
            self._run = None
            return ""
        fraction, words = progress
        now = self._clock()
        if self._run is None or self._run[0] != target:
            self._run = (target, now, fraction)
        _t, started, first = self._run
        text = f"{words} ({fraction:.0%})"
        elapsed = now - started
        if elapsed >= ETA_AFTER_S and fraction > first:
            text += f", about {duration(elapsed * (1 - fraction) / (fraction - first))} left"
        return text

    def text(self, screen: InspectorScreen) -> str:
        spin = SPINNER[self.frame % len(SPINNER)]
        feed = screen.feed
        parts = []
        if screen.engine_status == "failed":
            parts.append("vLLM failed (e: details)")
        elif screen.engine_status == "stopped":
            parts.append("vLLM not started: nothing to replay")
        elif screen.engine_status != "ready":
            parts.append(f"{spin} {screen.engine_status}")
        if not feed.read_done and not feed.reader_paused:
            parts.append(f"reading trace {screen.read_fraction:.0%}")
        if screen.trace_error:
            parts.append("trace error (e)")
        done = len(screen.history)
        if screen.target is not None and screen.engine_status == "ready":
            where = "the end" if screen.target >= TO_THE_END else f"step {screen.target + 1:,}"
            progress = self._progress(screen, screen.target)
            parts.append(f"{spin} replaying to {where}: "
                         + (progress or f"{done:,} steps done"))
        else:
            self._run = None
        waiting = screen.waiting_text()
        if waiting is not None:
            parts.append(f"{spin} replaying {waiting} ({done:,} steps done)")
        if screen.playing:
            parts.append(f"▶ {screen.speed}/s")
        return " · ".join(parts)
