"""``prefix-tui learn``: list the bundled lessons, open one, or check a lesson file."""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError
from tui.exit_codes import EXIT_OK, EXIT_USAGE
from tui.widgets.safe import safe_text


def learn_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefix-tui learn",
        description="Guided lessons on vLLM's real block manager. Without LESSON: the list.",
        epilog="Lesson files: traces/lessons/README.md (the format, to write your own).",
    )
    p.add_argument("lesson", nargs="?", help="a lesson's number in the list, or a lesson file (.toml)")
    p.add_argument("--check", action="store_true",
                   help="replay the lesson on vLLM and check it against vLLM's records "
                        "(each question's expected answer, each step, each highlight)")
    p.add_argument("--verbose", action="store_true", help="let vLLM's and torch's log lines through")
    from tui.pictures import add_web_arguments

    add_web_arguments(p)
    return p


def lesson_list() -> list[str]:
    """One line per bundled lesson, numbered; a file that does not load says why."""
    from engine.backends import lookup
    from engine.lessons.catalog import bundled
    from engine.lessons.format import load_lesson

    lines = []
    files = bundled()
    width = len(str(len(files)))
    for n, path in enumerate(files, start=1):
        try:
            lesson = load_lesson(path)
        except UserError as err:
            lines.append(f"{n:>{width}}  (does not load) {err}")
            continue
        asked = sum(s.question is not None for s in lesson.steps)
        engine = "vLLM V0, " if lesson.engine == "v0" else ""
        what = f"{engine}{lesson.mode}, {len(lesson.steps)} steps, {asked} questions"
        entry = lookup(lesson.engine, lesson.mode)
        if entry.precheck is not None:
            try:
                entry.precheck()
            except UserError:
                what += "; needs `make legacy`"
        lines.append(f"{n:>{width}}  {lesson.title}  ({what})")
    return [safe_text(line) for line in lines]


def run_learn(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """``argv``: the arguments after ``learn`` (what --web runs in each browser)."""
    from engine.backends import lookup
    from engine.lessons.catalog import find

    if args.lesson is None:
        print("\n".join(lesson_list()) or "no lessons found")
        print("\nprefix-tui learn N opens lesson N; prefix-tui learn FILE.toml opens your own.")
        return EXIT_OK
    lesson = find(args.lesson)
    entry = lookup(lesson.engine, lesson.mode)
    if entry.precheck is not None:
        entry.precheck()  # V0 without .venv-legacy: one line saying how to build it
    if args.check:
        from engine.lessons.check import check_lesson, replay_lesson

        problems = check_lesson(lesson, replay_lesson(lesson, args.verbose))
        for problem in problems:
            print(f"prefix-tui: {safe_text(str(problem))}", file=sys.stderr)
        if problems:
            return EXIT_USAGE
        asked = sum(s.question is not None for s in lesson.steps)
        print(f"{safe_text(str(lesson.path))}: {len(lesson.steps)} steps and {asked} "
              "questions agree with vLLM's records")
        return EXIT_OK
    if args.web:
        from tui.web import serve

        return serve(["learn", *(argv or [])], args.host, args.port, f"prefix-tui · {lesson.title}")
    from engine.lessons.check import build_options
    from tui.lesson_app import LessonApp

    app = LessonApp(lesson, entry, build_options(lesson, args.verbose))
    app.run()
    return app.return_code or 0
