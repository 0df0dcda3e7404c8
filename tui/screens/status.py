"""The header's status line: what is loading, replaying or playing, in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui.screens.inspector import InspectorScreen

TO_THE_END = 1 << 62  # End pressed before the trace's length is known
SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # steps per second
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusLine:
    def __init__(self) -> None:
        self.frame = 0

    def spin(self) -> None:
        self.frame += 1

    def text(self, screen: InspectorScreen) -> str:
        spin = SPINNER[self.frame % len(SPINNER)]
        feed = screen.feed
        parts = []
        if screen.engine_status == "failed":
            parts.append("vLLM failed (e: details)")
        elif screen.engine_status != "ready":
            parts.append(f"{spin} {screen.engine_status}")
        if not feed.read_done and not feed.reader_paused:
            parts.append(f"reading trace {screen.read_fraction:.0%}")
        if screen.trace_error:
            parts.append("trace error (e)")
        done = len(screen.history)
        if screen.target is not None and screen.engine_status == "ready":
            where = "the end" if screen.target >= TO_THE_END else f"step {screen.target + 1:,}"
            parts.append(f"{spin} replaying to {where} ({done:,} steps done)")
        waiting = screen.waiting_text()
        if waiting is not None:
            parts.append(f"{spin} replaying {waiting} ({done:,} steps done)")
        if screen.playing:
            parts.append(f"▶ {screen.speed}/s")
        return " · ".join(parts)
