"""Whole-line scrolling shared by the Line-API panes that keep their own ``top`` line."""

from __future__ import annotations

from textual import events


class LineScroll:
    """Mouse-wheel and key scrolling for a widget that draws lines ``top`` onwards.
    Subclasses say how many lines they have (``_line_count``)."""

    top: int

    def _line_count(self) -> int:
        raise NotImplementedError

    def _visible_height(self) -> int:
        return max(1, self.content_size.height)  # type: ignore[attr-defined]

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._scroll(1)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._scroll(-1)

    def _scroll(self, delta: int) -> None:
        top = max(0, min(self.top + delta, self._line_count() - self._visible_height()))
        if top != self.top:
            self.top = top
            self.refresh()  # type: ignore[attr-defined]
