"""Every bundled lesson, run to its end in the TUI the way a learner would: → through the
steps, each question answered with the lesson's expected answer, which the app checks
against vLLM's record (so a lesson whose answer is wrong fails here)."""

from __future__ import annotations

import pytest

from engine.backends import lookup
from engine.lessons.catalog import bundled
from engine.lessons.check import build_options
from engine.lessons.format import load_lesson
from engine.lessons.walk import Phase
from tests.test_tui_support import wait_until
from tui.lesson_app import LessonApp
from tui.widgets.modals import PromptScreen

V1_LESSONS = [p for p in bundled() if load_lesson(p).engine == "v1"]


def lesson_app(path) -> LessonApp:
    lesson = load_lesson(path)
    return LessonApp(lesson, lookup(lesson.engine, lesson.mode), build_options(lesson))


def on_lesson_step(app) -> bool:
    """The cursor shows the step the lesson is on, with its cells lit."""
    screen, walk = app.main, app.main.walk
    want = walk.cursor_step() - 1
    return (screen.shown_step == want and screen.history.position == want
            and screen.pending_answer is None and not screen.lesson_panel.waiting)


@pytest.mark.parametrize("path", V1_LESSONS, ids=lambda p: p.stem)
async def test_lesson_runs_to_its_end_with_every_answer_right(path):
    await run_to_the_end(path)


async def run_to_the_end(path, start_timeout: float = 120.0) -> None:
    """Also run by tests/legacy for the V0 lesson (its worker imports vLLM 0.10.1.1 first:
    minutes on a busy machine, hence ``start_timeout``)."""
    app = lesson_app(path)
    lesson = app.lesson
    async with app.run_test(size=(160, 50)) as pilot:
        walk = app.main.walk
        await wait_until(pilot, lambda: on_lesson_step(app), timeout=start_timeout)
        seen = 0
        while walk.phase is not Phase.DONE:
            step = walk.step
            if walk.phase is Phase.ASK:
                await pilot.press("right")  # opens the answer prompt
                await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen))
                await pilot.press(*str(step.question.expected), "enter")
                await wait_until(pilot, lambda: walk.phase is Phase.REVEAL and on_lesson_step(app))
                verdict = walk.verdict
                assert verdict.truth == step.question.expected, (path.name, walk.index)
                assert verdict.correct and not verdict.note
                assert "✓ Right" in str(app.main.lesson_panel.text())
            # What the step lights up is drawn: the panel lists it, the pool map marks it.
            if step.highlight:
                assert app.main.pool_map.marked, (path.name, walk.index, step.highlight)
                assert "Lit up" in str(app.main.lesson_panel.text())
            assert app.main.header.step == step.at
            seen += 1
            await pilot.press("right")
            await wait_until(pilot, lambda: walk.phase is Phase.DONE or on_lesson_step(app))
        assert seen == len(lesson.steps)
        assert "End of the lesson" in str(app.main.lesson_panel.text())
