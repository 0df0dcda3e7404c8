"""A lesson over the inspector: the view's screen (sequential or serve) with a lesson pane
under the header. → / ← walk the lesson's steps (moving the replay cursor to each), a
question opens a prompt and the answer is checked against vLLM's record of that step
(engine.lessons.walk); the step's cells light up in the pool map and block table(s).
Every other inspector key still works, so a learner can wander off and come back (→).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding

from engine.lessons.format import Lesson
from engine.lessons.highlight import highlighted
from engine.lessons.walk import LessonWalk, Phase
from engine.model import StepRecord
from tui.screens.inspector import InspectorScreen
from tui.screens.sequential import SequentialScreen
from tui.screens.serve import ServeScreen
from tui.widgets.lesson_panel import LessonPanel
from tui.widgets.modals import PromptScreen

LESSON_KEYS = (
    Binding("right,n", "lesson(1)", "Next", key_display="→", priority=True),
    Binding("left,p", "lesson(-1)", "Back", key_display="←", priority=True),
    Binding("enter", "answer", "Answer", show=False),
    Binding("full_stop", "step(1)", "Replay step", key_display="./,", show=False),
    Binding("comma", "step(-1)", "Replay step back", show=False),
)


def lesson_bindings(view_bindings: list[Binding]) -> list[Binding]:
    """The view's keys with → / ← walking the lesson instead of the replay."""
    taken = {"right,n", "left,p"}
    return [*LESSON_KEYS, *(b for b in view_bindings if b.key not in taken)]


class LessonScreenBase:
    """Mixed in before a view's screen class (it calls the view through super())."""

    def __init__(self, lesson: Lesson, *args, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kw)
        self.lesson = lesson
        self.walk = LessonWalk(lesson)
        self.pending_answer: tuple[int | None] | None = None  # given, until its step shows
        self.lesson_panel = LessonPanel(self.walk, id="lesson")

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield widget
            if widget is self.header:
                yield self.lesson_panel

    def view_mounted(self) -> None:
        super().view_mounted()
        self.lesson_panel.border_title = "lesson"
        self._go_to_lesson_step()

    # -- moving through the lesson ---------------------------------------------------------------
    def action_lesson(self, delta: int) -> None:
        if delta > 0 and self.walk.phase is Phase.ASK:
            self.action_answer()
            return
        moved = self.walk.forward() if delta > 0 else self.walk.back()
        if moved:
            self._go_to_lesson_step()

    def _go_to_lesson_step(self) -> None:
        index = self.walk.cursor_step() - 1
        if self.history.position == index and self.shown_step == index:
            self._show_lesson(self.history.current)
        else:
            self.goto(index)
            self._show_lesson(self.history.current)

    def action_answer(self) -> None:
        if self.walk.phase is not Phase.ASK or self.pending_answer is not None:
            return
        q = self.walk.step.question
        assert q is not None

        def done(value: str | None) -> None:
            if value is None:  # Esc: show me
                self._submit(None)
                return
            try:
                self._submit(int(value.replace(",", "")))
            except ValueError:
                self.notify(f"not a whole number: {value!r}; the question is still open",
                            severity="warning", markup=False)

        self.app.push_screen(PromptScreen(f"{q.text}  (a whole number; Esc: show me)", "answer"), done)

    def _submit(self, given: int | None) -> None:
        """Check the answer once the question's step is recorded and shown."""
        self.pending_answer = (given,)
        at = self.walk.step.at - 1
        self.goto(at)
        if self.shown_step == at:
            self._show_lesson(self.history.current)

    # -- drawing -------------------------------------------------------------------------------------
    def show_view(self, rec: StepRecord) -> None:
        super().show_view(rec)
        self._show_lesson(rec)

    def _show_lesson(self, rec: StepRecord | None) -> None:
        walk = self.walk
        if self.pending_answer is not None and rec is not None and rec.index == walk.step.at - 1:
            (given,) = self.pending_answer
            self.pending_answer = None
            walk.answer(given, self.history.records)
        want = walk.cursor_step() - 1
        if walk.phase is not Phase.DONE and (rec is None or rec.index != want):
            lit: frozenset[int] = frozenset()
            waiting = (f"(the replay shows step {rec.index + 1}; → comes back to the lesson's "
                       f"step {want + 1})" if rec is not None else "(waiting for vLLM…)")
        else:
            lit = highlighted(walk.step.highlight, rec, self.history.pool) if rec else frozenset()
            waiting = ""
        self.pool_map.mark(lit)
        self.block_tables().mark(lit)
        self.lesson_panel.show(tuple(sorted(lit)), waiting)


class SequentialLessonScreen(LessonScreenBase, SequentialScreen, inherit_bindings=False):
    BINDINGS: ClassVar = lesson_bindings(SequentialScreen.BINDINGS)


class ServeLessonScreen(LessonScreenBase, ServeScreen, inherit_bindings=False):
    BINDINGS: ClassVar = lesson_bindings(ServeScreen.BINDINGS)


def lesson_screen_for(view_screen: type[InspectorScreen]) -> type[InspectorScreen]:
    return {SequentialScreen: SequentialLessonScreen, ServeScreen: ServeLessonScreen}[view_screen]
