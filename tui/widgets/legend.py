"""One line of chips: every glyph the block table and pool map draw, and what it means."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.model import BlockState
from tui.widgets import palette

STATES = (
    BlockState.HIT_FREE, BlockState.HIT_SHARED, BlockState.NEW, BlockState.NEW_EVICTED,
    BlockState.PARTIAL, BlockState.RECOMPUTED,
)
SHORT = {  # for narrow terminals
    BlockState.HIT_FREE: "hit", BlockState.HIT_SHARED: "shared", BlockState.NEW: "new",
    BlockState.NEW_EVICTED: "evicted", BlockState.PARTIAL: "partial",
    BlockState.RECOMPUTED: "recomputed", BlockState.SKIPPED: "null",
}
POOL = (palette.POOL_FREE, palette.POOL_CACHED, palette.POOL_USED, palette.POOL_NULL)
POOL_SHORT = {palette.POOL_FREE: "free", palette.POOL_CACHED: "cached-free",
              palette.POOL_USED: "in use", palette.POOL_NULL: "null"}
POOL_SHORTER = {**POOL_SHORT, palette.POOL_CACHED: "cached"}


class Legend(Widget):
    """``show_held``: also the held states (block tables of sequences that keep their
    blocks from one step to the next, as serve mode's running ones do)."""

    COMPONENT_CLASSES = palette.COMPONENT_CLASSES

    def __init__(self, *, show_held: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.show_held = show_held
        self._groups = False

    @property
    def groups(self) -> bool:
        """Several KV cache groups: the null-block chip, and group digits in the pool."""
        return self._groups

    @groups.setter
    def groups(self, value: bool) -> None:
        self._groups = value
        self.refresh(layout=True)

    def render(self) -> Text:
        width = self.size.width
        states = self._states(long=True)
        if states.cell_len > width * 0.6:
            states = self._states(long=False)
        held = self._held()
        if states.cell_len + held.cell_len <= width:
            states, held = states + held, Text()
        pool = held + self._pool(POOL_SHORT, help_hint=True)
        if held and pool.cell_len > width:  # narrow: the shortest pool labels
            pool = held + self._pool(POOL_SHORTER, help_hint=False)
        if states.cell_len + 2 + pool.cell_len <= width:
            return Text.assemble(states, ("│ ", self.get_component_rich_style(palette.LABEL)), pool)
        return Text("\n").join([states, pool])  # two lines, split between the two groups

    def _states(self, long: bool) -> Text:
        out = Text()
        states = STATES + ((BlockState.SKIPPED,) if self.groups else ())
        for state in states:
            out.append(f" {state.letter} ", self.get_component_rich_style(palette.STATE_CLASS[state]))
            out.append(f" {palette.STATE_LABEL[state] if long else SHORT[state]}  ")
        return out

    def _pool(self, labels: dict[str, str], help_hint: bool) -> Text:
        pool = Text()
        for cls in POOL:
            glyph = "1" if cls == palette.POOL_USED else palette.POOL_GLYPH[cls]
            label = labels[cls]
            if self.groups and cls in (palette.POOL_CACHED, palette.POOL_USED):
                glyph, label = "0", f"{label}, group 0"
            pool.append(f" {glyph} ", self.get_component_rich_style(cls))
            pool.append(f" {label}  ")
        if help_hint:
            pool.append("? help", self.get_component_rich_style(palette.LABEL))
        return pool

    def _held(self) -> Text:
        out = Text()
        if self.show_held:
            held = BlockState.HELD
            out.append(f" {held.letter} ", self.get_component_rich_style(palette.STATE_CLASS[held]))
            out.append(f" {palette.STATE_LABEL[held]}  ")
            out.append(f" {palette.HELD_SHARED_GLYPH} ", self.get_component_rich_style(palette.HELD_SHARED))
            out.append(f" {palette.HELD_SHARED_LABEL}  ")
        return out
