"""Per KV cache group at the cursor (a model with several groups, --hf-config): the cached
blocks vLLM's lookups handed back in each group, and the places a sliding window left to
its null block, from engine.layout_metrics. Hidden with one group.

vLLM's hit for a request is the one every group agrees on; the totals above show it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.layout_metrics import group_rows
from engine.model import KVGroupInfo, Totals


def group_entries(t: Totals, groups: tuple[KVGroupInfo, ...]) -> list[str]:
    """"0 sliding 128: 611 hit, 1,926 null" per group; one definition for the widget and
    its tests."""
    out = []
    for _key, _label, hit, skipped, _new in group_rows(t, groups):
        g = int(_key.split(":")[1])
        name = groups[g].label if g < len(groups) else ""
        entry = f"{g} {name}: {hit:,} hit"
        if skipped:
            entry += f", {skipped:,} null"
        out.append(entry)
    return out


class GroupLines(Widget):
    """A render() widget: refreshed per step without a relayout."""

    COMPONENT_CLASSES = {"breakdown--label"}
    DEFAULT_CSS = "GroupLines { height: auto; display: none; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.entries: list[str] = []

    def show(self, t: Totals, groups: tuple[KVGroupInfo, ...]) -> None:
        entries = group_entries(t, groups) if len(groups) > 1 else []
        relayout = bool(entries) != bool(self.entries)
        self.entries = entries
        self.display = bool(entries)
        self.refresh(layout=relayout)

    def render(self) -> Text:
        dim = self.get_component_rich_style("breakdown--label")
        line = Text.assemble(("blocks by KV group: ", dim), " · ".join(self.entries))
        line.truncate(max(1, self.size.width), overflow="ellipsis")
        return line
