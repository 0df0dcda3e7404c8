"""Lessons as data: the bundled lessons agree with vLLM's records (each question's expected
answer is what the record says, replayed here through the registry), and every mistake in
a lesson file is one line naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import UserError
from engine.lessons.answers import ANSWERS, AnswerError, answer_of
from engine.lessons.catalog import bundled, find
from engine.lessons.check import check_lesson, replay_lesson
from engine.lessons.format import LessonError, load_lesson
from engine.lessons.walk import LessonWalk, Phase
from tui.cli import main

V1_LESSONS = [p for p in bundled() if load_lesson(p).engine == "v1"]


def test_the_bundled_lessons_cover_the_issue():
    titles = " ".join(load_lesson(p).title.lower() for p in bundled())
    for topic in ("full blocks", "system prompt", "multi-turn", "last prompt token",
                  "lazy eviction", "sharing", "preemption", "salt", "v0", "sliding-window",
                  "cpu tier"):
        assert topic in titles, topic
    assert len(bundled()) >= 10


@pytest.mark.parametrize("path", V1_LESSONS, ids=lambda p: p.stem)
def test_every_expected_answer_is_what_vllms_record_says(path):
    lesson = load_lesson(path)
    records = replay_lesson(lesson)
    for step in lesson.steps:
        assert step.at <= len(records)
        if step.question is not None:
            q = step.question
            assert answer_of(q.answer, records, step.at - 1, q.request, q.group) == q.expected, step
    assert check_lesson(lesson, records) == []


def test_hand_worked_answers_of_the_first_lessons():
    # Lesson 1, block size 4: 10 tokens = 2 full blocks + a partial one; resent, the two
    # full ones hit (8 tokens); one changed token in the first block loses both.
    records = replay_lesson(find("1"))
    assert [answer_of("hit_blocks", records, i, None) for i in range(4)] == [0, 2, 2, 0]
    assert answer_of("hit_tokens", records, 1, None) == 8
    # Lesson 4: a 12-token (block-aligned) prompt resent hits 8 tokens, not 11 or 12.
    records = replay_lesson(find("4"))
    assert answer_of("hit_tokens", records, 1, None) == 8
    assert answer_of("hit_blocks", records, 2, None) == 3
    # Lesson 10, window 128 at block size 16: 320 tokens resent; the full group hits 19
    # blocks (the 20th recomputed), the sliding group only the 8 blocks of the window
    # before the recomputed one, and the 11 places before them are null blocks.
    records = replay_lesson(find("10"))
    assert answer_of("group_hit_blocks", records, 1, group=1) == 19
    assert answer_of("group_hit_blocks", records, 1, group=0) == 8
    assert answer_of("group_skipped_blocks", records, 1, group=0) == 11


def test_the_cpu_tier_lesson_hand_worked_and_without_its_tier():
    """Lesson 11, block size 4, 6 usable GPU blocks: alice's 17 tokens (4 full blocks +
    1) are stored in the CPU tier too; bob's 5 blocks take the unused block, her partial
    one and 3 of her 4 cached ones; her second turn (her 16 tokens + 6) hits 1 block on
    the GPU and loads 3 from the CPU tier. Without the tier those 3 are recomputed."""
    import dataclasses

    lesson = load_lesson(next(p for p in bundled() if p.stem == "11-cpu-tier"))
    records = replay_lesson(lesson)
    admitted = {r.request_id: i for i, rec in enumerate(records) for r in rec.admitted}
    assert answer_of("evicted", records, admitted["bob"]) == 3
    assert answer_of("cpu_hit_blocks", records, admitted["alice-2"]) == 3
    assert answer_of("hit_blocks", records, admitted["alice-2"]) == 4
    assert answer_of("cpu_hit_blocks", records, admitted["alice-1"]) == 0
    off = dataclasses.replace(lesson, serve=dataclasses.replace(
        lesson.serve, tier=dataclasses.replace(lesson.serve.tier, num_cpu_blocks=0)))
    records = replay_lesson(off)
    at = next(i for i, rec in enumerate(records) for r in rec.admitted if r.request_id == "alice-2")
    assert answer_of("hit_blocks", records, at) == 1
    with pytest.raises(AnswerError, match="no CPU offloading tier"):
        answer_of("cpu_hit_blocks", records, at)


def test_walk_checks_answers_against_the_record_not_the_lesson():
    lesson = find("1")
    records = replay_lesson(lesson)
    walk = LessonWalk(lesson)
    assert walk.phase is Phase.SHOW and walk.cursor_step() == 1
    assert walk.forward() and walk.phase is Phase.ASK
    assert walk.cursor_step() == 1  # asked before the step it is about
    assert not walk.forward()  # the question waits
    verdict = walk.answer(3, records)
    assert not verdict.correct and verdict.truth == 2 and walk.cursor_step() == 2
    assert walk.forward() and walk.answer(None, records).given is None  # skipped
    # A lesson whose expected answer is wrong: the record wins and the walk says so.
    wrong = lesson.steps[1].question.__class__(**{**lesson.steps[1].question.__dict__, "expected": 3})
    bad = lesson.__class__(**{**lesson.__dict__, "steps": (lesson.steps[0], lesson.steps[1].__class__(
        **{**lesson.steps[1].__dict__, "question": wrong}))})
    walk = LessonWalk(bad)
    walk.forward()
    verdict = walk.answer(3, records)
    assert not verdict.correct and verdict.truth == 2 and "expected 3" in verdict.note
    assert [str(p).split(": ", 1)[1] for p in check_lesson(bad, records)] == [
        "step 2: expected = 3, but vLLM's record says hit_blocks = 2 at replay step 2"]


GOOD = '''title = "t"
trace = "t.jsonl"
block_size = 4
num_blocks = 16

[[step]]
at = 1
text = """
two lines
of text
"""

[[step]]
at = 2
text = "q"
question = "how many?"
answer = "hit_blocks"
expected = 2
explain = "because"
'''


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "t.jsonl").write_text('{"prompt_token_ids": [1, 2, 3, 4, 5]}\n'
                                      '{"prompt_token_ids": [1, 2, 3, 4, 5]}\n')
    path = tmp_path / "l.toml"
    path.write_text(text)
    return path


def test_a_good_lesson_file_loads(tmp_path):
    lesson = load_lesson(write(tmp_path, GOOD))
    assert [s.at for s in lesson.steps] == [1, 2]
    q = lesson.steps[1].question
    assert (q.answer, q.expected, q.ask_at, q.line) == ("hit_blocks", 2, 1, 18)
    assert lesson.steps[1].line == 13


@pytest.mark.parametrize("change, line, words", [
    (("expected = 2", "expected = two"), 18, "not valid TOML"),
    (("answer = \"hit_blocks\"", "answer = \"hits\""), 17, "unknown answer 'hits'"),
    (("expected = 2", "expected = \"2\""), 18, "expected must be a whole number"),
    (("at = 2", "at = 0"), 14, "at must be >= 1"),
    (("at = 2", "att = 2"), 14, "unknown key 'att'"),
    (("num_blocks = 16", "num_blocks = 1"), 4, "num_blocks must be >= 2"),
    (("block_size = 4", "block_size = 4\nmode = \"batch\""), 4, "mode must be one of"),
    (("trace = \"t.jsonl\"", "trace = \"missing.jsonl\""), 2, "is not a file"),
    (("explain = \"because\"", ""), 16, "missing explain"),
    (("text = \"q\"", "text = \"q\"\nhighlight = [\"X\"]"), 16, "unknown highlight 'X'"),
    (("text = \"q\"", "text = \"q\"\nask_at = 3"), 16, "ask_at must be between 1 and at = 2"),
    (("title = \"t\"", "titel = \"t\""), 1, "unknown key 'titel'"),
    (("at = 1", "at = 1\nmax_num_seqs = 4"), 8, "unknown key 'max_num_seqs'"),
    (("answer = \"hit_blocks\"", "answer = \"group_hit_blocks\""), 17, "needs group = N"),
    (("at = 1", "at = 1\ngroup = 1"), 8, "group belongs to a question"),
    (("block_size = 4", "block_size = 4\nhf_config = \"none.json\""), 4, "hf_config: "),
])
def test_a_mistake_is_one_line_with_file_and_line(tmp_path, capsys, change, line, words):
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(LessonError) as err:
        load_lesson(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert words in str(err.value)
    # The CLI: the same single line, exit 2, no traceback.
    assert main(["learn", str(path)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert out == [f"prefix-tui: {err.value}"]


def test_serve_keys_outside_serve_mode_and_bad_bytes(tmp_path):
    path = write(tmp_path, GOOD.replace("block_size = 4", "block_size = 4\nmax_num_seqs = 2"))
    with pytest.raises(LessonError, match=r":4: max_num_seqs applies only to mode = \"serve\""):
        load_lesson(path)
    path.write_bytes(b'title = "t"\n\xff\n')
    with pytest.raises(LessonError, match=r"l.toml:2: not UTF-8"):
        load_lesson(path)


@pytest.mark.parametrize("setting, words", [
    ("num_cpu_blocks = -1", "num_cpu_blocks must be >= 0 (got -1)"),
    ("num_cpu_blocks = \"many\"", "num_cpu_blocks must be a whole number"),
    ("cpu_eviction_policy = \"fifo\"", "cpu_eviction_policy must be one of lru, arc"),
    ("offload_latency = 500", "offload_latency must be in 0..100"),
])
def test_a_bad_cpu_tier_key_is_one_line(tmp_path, capsys, setting, words):
    path = write(tmp_path, GOOD.replace("num_blocks = 16", f"num_blocks = 16\nmode = "
                                        f"\"serve\"\n{setting}"))
    with pytest.raises(LessonError) as err:
        load_lesson(path)
    assert str(err.value).startswith(f"{path}:6: "), str(err.value)
    assert words in str(err.value)
    assert main(["learn", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"prefix-tui: {err.value}"]
    sequential = write(tmp_path, GOOD.replace("num_blocks = 16", "num_blocks = 16\n"
                                              "num_cpu_blocks = 8"))
    with pytest.raises(LessonError, match=r":5: num_cpu_blocks applies only to mode = \"serve\""):
        load_lesson(sequential)


def test_learn_lists_numbered_lessons_and_refuses_unknown_numbers(capsys):
    assert main(["learn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    numbered = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(numbered) == len(bundled())
    assert [int(line.split()[0]) for line in numbered] == list(range(1, len(bundled()) + 1))
    assert main(["learn", "99"]) == 2
    assert f"no lesson 99: there are {len(bundled())}" in capsys.readouterr().err


def test_learn_check_names_the_line_of_a_wrong_expected_answer(tmp_path, capsys):
    # Hand-worked: 5 tokens resent at block size 4 hit one full block.
    path = write(tmp_path, GOOD.replace("expected = 2", "expected = 1"))
    assert main(["learn", str(path), "--check"]) == 0
    assert "agree with vLLM's records" in capsys.readouterr().out
    path = write(tmp_path, GOOD)
    assert main(["learn", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prefix-tui: {path}:18: step 2: expected = 2, but vLLM's record says "
                   "hit_blocks = 1 at replay step 2"]


def test_the_v0_lesson_without_legacy_venv_says_how_to_build_it(monkeypatch, capsys):
    monkeypatch.setenv("PREFIX_TUI_LEGACY_PYTHON", "/nonexistent/bin/python")
    number = next(n for n, p in enumerate(bundled(), 1) if load_lesson(p).engine == "v0")
    assert main(["learn", str(number)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make legacy" in err[0]
    assert main(["learn"]) == 0
    assert "needs `make legacy`" in capsys.readouterr().out


def test_every_answer_kind_is_documented():
    readme = (bundled()[0].parent / "README.md").read_text()
    for name in ANSWERS:
        assert f"`{name}`" in readme, name


def test_find_refuses_what_is_not_a_lesson(tmp_path):
    with pytest.raises(UserError, match="not a lesson number"):
        find(str(tmp_path / "nothing"))
