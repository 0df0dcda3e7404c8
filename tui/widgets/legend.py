"""One line of chips: every glyph the block table and pool map draw, and what it means."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.records import BlockState
from tui.widgets import palette

STATES = (
    BlockState.HIT_FREE, BlockState.HIT_SHARED, BlockState.NEW, BlockState.NEW_EVICTED,
    BlockState.PARTIAL, BlockState.RECOMPUTED,
)
SHORT = {  # for narrow terminals
    BlockState.HIT_FREE: "hit", BlockState.HIT_SHARED: "shared", BlockState.NEW: "new",
    BlockState.NEW_EVICTED: "evicted", BlockState.PARTIAL: "partial",
    BlockState.RECOMPUTED: "recomputed",
}
POOL = (palette.POOL_FREE, palette.POOL_CACHED, palette.POOL_USED, palette.POOL_NULL)
POOL_SHORT = {palette.POOL_FREE: "free", palette.POOL_CACHED: "cached-free",
              palette.POOL_USED: "in use", palette.POOL_NULL: "null"}


class Legend(Widget):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def render(self) -> Text:
        width = self.size.width
        states = self._states(long=True)
        if states.cell_len > width * 0.6:
            states = self._states(long=False)
        pool = Text()
        for cls in POOL:
            glyph = "1" if cls == palette.POOL_USED else palette.POOL_GLYPH[cls]
            pool.append(f" {glyph} ", self.get_component_rich_style(cls))
            pool.append(f" {POOL_SHORT[cls]}  ")
        pool.append("? help", self.get_component_rich_style(palette.LABEL))
        if states.cell_len + 2 + pool.cell_len <= width:
            return Text.assemble(states, ("│ ", self.get_component_rich_style(palette.LABEL)), pool)
        return Text("\n").join([states, pool])  # two lines, split between the two groups

    def _states(self, long: bool) -> Text:
        out = Text()
        for state in STATES:
            out.append(f" {state.letter} ", self.get_component_rich_style(palette.STATE_CLASS[state]))
            out.append(f" {palette.STATE_LABEL[state] if long else SHORT[state]}  ")
        return out
