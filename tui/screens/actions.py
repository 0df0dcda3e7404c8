"""Keys that open a prompt, a modal or a note: go to a step, find a request, the error
details, help, switch side panes. A mixin of InspectorScreen (the cursor lives there).

Every key says what it did when it did not do the obvious thing: a step number outside
the trace goes to the nearest step and says so, ``e`` before anything happened says what
is loading, ``t`` on a wide terminal (every pane already on screen) says when it works.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.model import Outcome, TraceRequest
from tui.widgets.modals import ErrorScreen, HelpScreen, PromptScreen

NARROW_BELOW = 140  # columns; InspectorApp.HORIZONTAL_BREAKPOINTS


class Actions:
    """Mixed into InspectorScreen: uses its attributes, as named there."""

    def action_goto(self) -> None:
        def done(value: str | None) -> None:
            if value:
                try:
                    number = int(value.replace(",", ""))
                except ValueError:
                    self.notify(f"not a step number: {value!r}", severity="warning", markup=False)
                    return
                self.goto_number(number)

        self.app.push_screen(PromptScreen(f"Go to step (1–{self.step_count_text()}):", "step number"), done)

    def goto_number(self, number: int) -> None:
        """Go to step ``number`` (1-based), saying so when it is outside the trace."""
        if number < 1:
            self.notify(f"there is no step {number:,}: steps start at 1; went to step 1",
                        severity="warning", timeout=4)
        else:
            last = self.last_index()
            if last is not None and number > last + 1:
                self.notify(f"there is no step {number:,}: the trace has {last + 1:,} steps; "
                            f"went to the last", severity="warning", timeout=4)
            else:
                # Not known yet: the replay goes as far as it can, and says so if it ends
                # before (on_replay_progress).
                self.asked_step = number
        self.goto(number - 1)

    def action_find(self) -> None:
        def done(value: str | None) -> None:
            if value:
                self.find(value)

        self.app.push_screen(PromptScreen("Find request id (exact, else first containing it):", "id"), done)

    def action_error(self) -> None:
        rec = self.history.current
        if rec is not None and rec.error is not None:
            screen = ErrorScreen(f"vLLM raised at step {rec.index + 1}", rec.error.message, rec.error.traceback)
        elif rec is not None and rec.request is not None and rec.request.outcome is not Outcome.OK:
            screen = ErrorScreen(f"Step {rec.index + 1}: {rec.request.outcome.value}", rec.note)
        elif self.engine_error is not None:
            screen = ErrorScreen("vLLM could not start", *self.engine_error)
        elif self.trace_error is not None:
            screen = ErrorScreen("Trace error", self.trace_error)
        elif rec is None:
            self.notify(f"no step yet: {self.engine_status} (vLLM takes a few seconds to "
                        "start); errors and did-not-fit details show here once steps exist",
                        timeout=4, markup=False)
            return
        else:
            self.notify(f"nothing went wrong at step {rec.index + 1:,}", timeout=2)
            return
        self.app.push_screen(screen)

    def action_save_picture(self) -> None:
        """``s``: the screen as an SVG in the current directory, under a new name."""
        from tui.pictures import save_screen

        step = self.history.position + 1
        try:
            path = save_screen(self.app.export_screenshot(), self.trace_name, step)
        except OSError as err:
            self.notify(f"screenshot not saved: {err.strerror or err}", severity="error",
                        markup=False, timeout=6)
            return
        self.notify(f"saved {path}", timeout=4, markup=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.GUIDE))

    def action_next_pane(self) -> None:
        if not self.has_class("-narrow"):
            self.notify(f"every pane is on screen at this width; t switches the side panes "
                        f"when the terminal is narrower than {NARROW_BELOW} columns", timeout=4)
            return
        ids = [f"tab-{pane}" for pane, _ in self.PANES]
        current = ids.index(self.tabs.active) if self.tabs.active in ids else -1
        self.tabs.active = ids[(current + 1) % len(ids)]


def find_request(requests: Sequence[TraceRequest], query: str) -> int | None:
    """The index of the request whose id is ``query``, else the first containing it."""
    for req in requests:
        if req.request_id == query:
            return req.index
    for req in requests:
        if query in req.request_id:
            return req.index
    return None

