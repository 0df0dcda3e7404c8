"""Walking through a lesson: which lesson step is on, whether its question waits for an
answer, and the verdicts, checked against the records (no UI here; tui/screens/lesson.py
draws it and moves the cursor to ``cursor_step``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from engine.lessons.answers import AnswerError, answer_of
from engine.lessons.format import Lesson, LessonStep
from engine.model import StepRecord


class Phase(Enum):
    SHOW = "show"  # a step without a question, or before the first move
    ASK = "ask"  # the question waits for an answer
    REVEAL = "reveal"  # answered (or skipped): verdict and explanation
    DONE = "done"  # past the last step


@dataclass(frozen=True)
class Verdict:
    given: int | None  # None: the learner skipped
    truth: int | None  # vLLM's record; None: the record has no such figure (see note)
    note: str = ""  # the record disagrees with the lesson's expected answer, or has none

    @property
    def correct(self) -> bool:
        return self.given is not None and self.given == self.truth


class LessonWalk:
    def __init__(self, lesson: Lesson) -> None:
        self.lesson = lesson
        self.index = 0
        self.verdicts: dict[int, Verdict] = {}
        self.phase = self._phase_of(0)

    @property
    def step(self) -> LessonStep:
        return self.lesson.steps[min(self.index, len(self.lesson.steps) - 1)]

    @property
    def verdict(self) -> Verdict | None:
        return self.verdicts.get(self.index)

    def _phase_of(self, index: int) -> Phase:
        step = self.lesson.steps[index]
        if step.question is None:
            return Phase.SHOW
        return Phase.REVEAL if index in self.verdicts else Phase.ASK

    def cursor_step(self) -> int:
        """The 1-based replay step to show: the question's ask_at while it waits."""
        step = self.step
        if self.phase is Phase.ASK and step.question is not None:
            return step.question.ask_at
        return step.at

    def forward(self) -> bool:
        """The next lesson step; False while a question waits (answer it first) or at the
        end."""
        if self.phase is Phase.ASK:
            return False
        if self.phase is Phase.DONE:
            return False
        if self.index + 1 >= len(self.lesson.steps):
            self.phase = Phase.DONE
            return True
        self.index += 1
        self.phase = self._phase_of(self.index)
        return True

    def back(self) -> bool:
        if self.phase is Phase.DONE:
            self.phase = self._phase_of(self.index)
            return True
        if self.index == 0:
            return False
        self.index -= 1
        self.phase = self._phase_of(self.index)
        return True

    def answer(self, given: int | None, records: Sequence[StepRecord]) -> Verdict:
        """Check ``given`` (None: skipped) against the record at the question's step."""
        step = self.step
        q = step.question
        if q is None or self.phase is not Phase.ASK:
            raise ValueError("no question waits")
        note = ""
        try:
            truth: int | None = answer_of(q.answer, records, step.at - 1, q.request, q.group)
        except AnswerError as err:
            truth, note = None, f"vLLM's record has no answer: {err}"
        else:
            if truth != q.expected:
                note = (f"this lesson expected {q.expected}, but vLLM's record says {truth}: "
                        "the record is what vLLM did (check the lesson: prefix-tui learn --check)")
        verdict = Verdict(given, truth, note)
        self.verdicts[self.index] = verdict
        self.phase = Phase.REVEAL
        return verdict
