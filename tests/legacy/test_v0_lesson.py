"""The V0 lesson (vLLM 0.10.1.1 in .venv-legacy): its expected answers are what V0's
records say, and it runs to its end in the TUI."""

from __future__ import annotations

from engine.lessons.answers import answer_of
from engine.lessons.catalog import bundled
from engine.lessons.check import check_lesson, replay_lesson
from engine.lessons.format import load_lesson
from tests.test_tui_lessons import run_to_the_end

V0_LESSONS = [p for p in bundled() if load_lesson(p).engine == "v0"]


def test_v0_lesson_answers_are_v0s_records():
    assert V0_LESSONS
    for path in V0_LESSONS:
        lesson = load_lesson(path)
        records = replay_lesson(lesson)
        assert check_lesson(lesson, records) == []
    # Hand-worked (09-v0-evictor): the block-aligned 12-token prompt resent is a whole
    # hit on V0 (V1: 8 tokens), and no block 0 is held back.
    lesson = load_lesson(V0_LESSONS[0])
    records = replay_lesson(lesson)
    assert answer_of("hit_tokens", records, 1, None) == 12
    assert records[0].seqs[0].block_ids == (0, 1, 2)


async def test_v0_lesson_runs_to_its_end():
    for path in V0_LESSONS:
        await run_to_the_end(path, start_timeout=600)  # a new worker's vLLM import
