"""Playback: stepping, first / last, play at a speed. A mixin of InspectorScreen (the
cursor itself, ``goto``, lives there)."""

from __future__ import annotations

from tui.screens.status import SPEEDS, TO_THE_END

TICK_S = 1 / 30  # playback never redraws faster than this


class Playback:
    """Mixed into InspectorScreen: uses its attributes, as named there."""

    def action_step(self, delta: int) -> None:
        self.cancel_waits()
        base = self.target if self.target is not None else self.history.position
        self.goto(base + delta if base >= 0 else 0)

    def action_first(self) -> None:
        self.cancel_waits()
        self.goto(0)

    def action_last(self) -> None:
        self.cancel_waits()
        last = self.last_index()
        self.goto(last if last is not None else TO_THE_END)

    def action_play(self) -> None:
        self._set_playing(not self.playing)

    def action_speed(self, delta: int) -> None:
        self._speed = max(0, min(len(SPEEDS) - 1, self._speed + delta))
        if self.playing:
            self._set_playing(True)
        else:
            self.notify(f"speed {SPEEDS[self._speed]} steps/s", timeout=1.5)
        self.update_status()

    @property
    def speed(self) -> int:
        """Steps per second while playing."""
        return SPEEDS[self._speed]

    def _set_playing(self, playing: bool) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.playing = playing
        if playing:
            interval = max(1 / self.speed, TICK_S)
            self._per_tick = max(1, round(self.speed * interval))
            self._timer = self.set_interval(interval, self._tick)
        self.update_status()

    def _tick(self) -> None:
        if self.target is not None:
            return  # waiting for the replay to catch up
        last = self.last_index()
        if last is not None and self.history.position >= last:
            self._set_playing(False)
            return
        self.goto(self.history.position + self._per_tick)
