"""A lesson's pane: where the lesson is, what to look at, the question, and the verdict
with its explanation. Lesson files are someone's text: everything goes through safe_text
into rich Text, never markup."""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.widgets import Static

from engine.lessons.walk import LessonWalk, Phase, Verdict
from tui.widgets.safe import safe_text

KEYS = "→ next · ← back · . / , replay step · g go to · s screenshot · ? help · q quit"


def paragraphs(text: str) -> str:
    """A TOML multi-line string as paragraphs: single line breaks join (the file's own
    wrapping), blank lines separate."""
    parts = textwrap.dedent(text).strip().split("\n\n")
    return "\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in parts)


def verdict_text(v: Verdict) -> tuple[str, str]:
    """(the verdict line, its style class)."""
    if v.truth is None:
        return f"vLLM's record has no answer here. {v.note}", "lesson--wrong"
    if v.given is None:
        return f"Skipped. vLLM's record: {v.truth:,}.", "lesson--dim"
    if v.correct:
        return f"✓ Right: {v.truth:,}.", "lesson--right"
    return f"✗ You said {v.given:,}; vLLM's record says {v.truth:,}.", "lesson--wrong"


class LessonPanel(Static):
    COMPONENT_CLASSES = {"lesson--title", "lesson--question", "lesson--right",
                         "lesson--wrong", "lesson--dim"}

    def __init__(self, walk: LessonWalk, **kw) -> None:
        super().__init__(**kw)
        self.walk = walk
        self.lit: tuple[int, ...] = ()  # block ids the step lights up, as drawn
        self.waiting = ""  # the replay has not reached the step yet

    def show(self, lit: tuple[int, ...] = (), waiting: str = "") -> None:
        self.lit = lit
        self.waiting = waiting
        self.update(self.text())

    def text(self) -> Text:
        walk, lesson = self.walk, self.walk.lesson
        style = self.get_component_rich_style
        out = Text()
        total = len(lesson.steps)
        if walk.phase is Phase.DONE:
            out.append(f"{safe_text(lesson.title)} · the end\n", style("lesson--title"))
            right = sum(v.correct for v in walk.verdicts.values())
            asked = sum(s.question is not None for s in lesson.steps)
            out.append(f"End of the lesson: {right} of {asked} questions answered right. "
                       "← goes back; q quits; `prefix-tui learn` lists the other lessons.\n")
            out.append(KEYS, style("lesson--dim"))
            return out
        step = walk.step
        out.append(f"{safe_text(lesson.title)} · lesson step {walk.index + 1} of {total} · "
                   f"replay step {walk.cursor_step()}\n", style("lesson--title"))
        out.append(safe_text(paragraphs(step.text), keep_newlines=True) + "\n")
        q = step.question
        if q is not None:
            out.append(f"Q: {safe_text(paragraphs(q.text))}\n", style("lesson--question"))
            if walk.phase is Phase.ASK:
                out.append("→ or Enter: answer (a whole number) · Esc in the prompt: show me\n",
                           style("lesson--dim"))
            elif walk.verdict is not None:
                line, cls = verdict_text(walk.verdict)
                out.append(line + "\n", style(cls))
                out.append(safe_text(paragraphs(q.explain), keep_newlines=True) + "\n")
                if walk.verdict.note and walk.verdict.truth is not None:
                    out.append(f"Note: {safe_text(walk.verdict.note)}\n", style("lesson--wrong"))
        if self.waiting:
            out.append(self.waiting + "\n", style("lesson--dim"))
        elif self.lit:
            ids = ", ".join(str(b) for b in self.lit[:24]) + (" …" if len(self.lit) > 24 else "")
            out.append(f"Lit up: block{'s' * (len(self.lit) > 1)} {ids}\n", style("lesson--dim"))
        out.append(KEYS, style("lesson--dim"))
        return out
