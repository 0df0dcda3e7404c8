"""The bundled lessons (traces/lessons/*.toml, in file-name order) and finding one by
number or path."""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.lessons.format import Lesson, load_lesson

LESSONS_DIR = Path(__file__).resolve().parents[2] / "traces" / "lessons"


def bundled() -> list[Path]:
    """Lesson files in order (their names start with a number: 01-..., 02-...)."""
    return sorted(LESSONS_DIR.glob("*.toml"))


def find(which: str) -> Lesson:
    """``which``: a lesson's number in ``prefix-tui learn``'s list, or a lesson file."""
    files = bundled()
    if which.isdigit():
        n = int(which)
        if not 1 <= n <= len(files):
            raise UserError(f"no lesson {n}: there are {len(files)} (prefix-tui learn lists them)")
        return load_lesson(files[n - 1])
    path = Path(which)
    if path.suffix != ".toml" and not path.exists():
        raise UserError(f"{which}: not a lesson number (1-{len(files)}) or a lesson file")
    return load_lesson(path)
