"""Hit rates per tenant (cache_salt), LoRA adapter and request type at the cursor, from
engine.metrics' Breakdown: one line per dimension the trace has, most requests first, and
one for the chat-template check when later conversation turns were checked (prefix-tui's
figure). Hidden while there is none of these.

Names come from the trace: they pass through safe_text into Text pieces, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.metrics import DIMENSIONS, Breakdown
from tui.widgets.safe import safe_text


def breakdown_lines(b: Breakdown) -> list[tuple[str, list[str]]]:
    """(the dimension's word, one "name hit% (requests)" entry per group), for each
    dimension that has groups; one definition for the widget and its tests."""
    out = []
    for dim, _section, word, none_words in DIMENSIONS:
        groups = b.split(dim)
        if groups:
            entries = [
                f"{safe_text(key) if key is not None else '(' + none_words + ')'} "
                f"{g.hit_rate:.1%} ({g.requests:,})"
                for key, g in groups
            ]
            out.append((word, entries))
    return out


def template_line(b: Breakdown) -> str | None:
    """The chat-template check (engine.trace.chat) so far, None while nothing was checked."""
    if not b.checked_turns:
        return None
    return f"{b.template_breaks:,} of {b.checked_turns:,} later turns do not extend the previous one"


class BreakdownLines(Widget):
    """A render() widget: a step refreshes it without a relayout while its line count
    stays the same."""

    COMPONENT_CLASSES = {"breakdown--label"}
    DEFAULT_CSS = "BreakdownLines { height: auto; display: none; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.lines: list[tuple[str, list[str]]] = []
        self.template: str | None = None

    def show(self, b: Breakdown | None) -> None:
        lines = breakdown_lines(b) if b is not None else []
        template = template_line(b) if b is not None else None
        relayout = len(lines) != len(self.lines) or (template is None) != (self.template is None)
        self.lines = lines
        self.template = template
        self.display = bool(lines) or template is not None
        self.refresh(layout=relayout)

    def render(self) -> Text:
        dim = self.get_component_rich_style("breakdown--label")
        width = max(1, self.size.width)
        rows = []
        for word, entries in self.lines:
            line = Text.assemble((f"hit by {word}: ", dim), " · ".join(entries))
            line.truncate(width, overflow="ellipsis")
            rows.append(line)
        if self.template is not None:
            line = Text.assemble(("chat template: ", dim), self.template)
            line.truncate(width, overflow="ellipsis")
            rows.append(line)
        return Text("\n").join(rows)
