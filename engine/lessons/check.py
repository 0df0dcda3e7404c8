"""Run a lesson's trace on vLLM and check the lesson against the records: every question's
expected answer is what the record says, every step exists, every highlight lights
something. ``prefix-tui learn --check FILE`` and the tests use it; the lesson screen
checks answers against the records the same way (engine.lessons.answers)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.backends import BuildOptions, lookup
from engine.lessons.answers import AnswerError, answer_of
from engine.lessons.format import Lesson, LessonError
from engine.lessons.highlight import highlighted
from engine.model import StepRecord
from engine.replay.history import History
from engine.trace.reader import TraceSource


def build_options(lesson: Lesson, verbose: bool = False) -> BuildOptions:
    return BuildOptions(lesson.settings, lesson.serve, verbose)


def replay_lesson(lesson: Lesson, verbose: bool = False) -> list[StepRecord]:
    """Every record of the lesson's trace under its settings (vLLM's, through the
    registry; a backend that cannot be built here raises its one-line UserError)."""
    entry = lookup(lesson.engine, lesson.mode)
    if entry.precheck is not None:
        entry.precheck()
    backend = entry.build(build_options(lesson, verbose))
    return list(backend.replay(TraceSource(str(lesson.trace)).reader(), detail=True))


def check_lesson(lesson: Lesson, records: Sequence[StepRecord]) -> list[LessonError]:
    """What in the lesson disagrees with vLLM's records (empty: nothing)."""
    problems: list[LessonError] = []
    history = History(lesson.settings.num_blocks)
    for record in records:
        history.append(record)
    for n, step in enumerate(lesson.steps, start=1):
        if step.at > len(records):
            problems.append(LessonError(lesson.path, step.line, f"step {n}: at = {step.at}, but "
                                        f"the replay has {len(records)} steps"))
            continue
        if step.highlight:
            history.seek(step.at - 1)
            if not highlighted(step.highlight, records[step.at - 1], history.pool):
                problems.append(LessonError(
                    lesson.path, step.line, f"step {n}: highlight {list(step.highlight)} "
                    f"names no block at replay step {step.at}"))
        q = step.question
        if q is None:
            continue
        try:
            truth = answer_of(q.answer, records, step.at - 1, q.request, q.group)
        except AnswerError as err:
            problems.append(LessonError(lesson.path, q.line, f"step {n}: {q.answer}: {err}"))
            continue
        if truth != q.expected:
            problems.append(LessonError(
                lesson.path, q.line, f"step {n}: expected = {q.expected}, but vLLM's record "
                f"says {q.answer} = {truth} at replay step {step.at}"))
    return problems
