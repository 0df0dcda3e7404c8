"""Serve mode with vLLM's CPU offloading tier: a strip under the pool map, one cell per CPU
block as vLLM's CPUOffloadingManager holds it (free, stored and evictable, a store in
flight, read by a load), and its counts in the title. When the tier has more blocks than
the strip has cells, a cell stands for several blocks and shows the busiest of them
(loading, then write-pending, then stored)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.tier_records import CPU_EVICTABLE, CPU_FREE, CPU_LOADING, CPU_WRITE_PENDING, TierPart

GLYPH = {CPU_FREE: "·", CPU_EVICTABLE: "c", CPU_WRITE_PENDING: "w", CPU_LOADING: "L"}
CLASS = {CPU_FREE: "cpu--free", CPU_EVICTABLE: "cpu--stored",
         CPU_WRITE_PENDING: "cpu--pending", CPU_LOADING: "cpu--loading"}
BUSY = (CPU_FREE, CPU_EVICTABLE, CPU_WRITE_PENDING, CPU_LOADING)  # least to most busy
ROWS = 2  # cell rows the strip draws (app.tcss gives it the height)


def title(part: TierPart | None) -> str:
    if part is None:
        return "CPU tier (vLLM CPUOffloadingManager)"
    pct = 100.0 * part.stored / part.num_blocks if part.num_blocks else 0.0
    return (f"CPU tier · {part.num_blocks:,} blocks · {part.stored:,} stored ({pct:.0f} %): "
            f"{part.evictable:,} evictable, {part.write_pending:,} write-pending, "
            f"{part.loading:,} loading")


def cells(codes: bytes, n: int) -> list[int]:
    """``codes`` folded into at most ``n`` cells, each the busiest of its blocks."""
    if not codes or n <= 0:
        return []
    per = -(-len(codes) // n)
    rank = {c: i for i, c in enumerate(BUSY)}
    return [max(codes[i:i + per], key=rank.__getitem__) for i in range(0, len(codes), per)]


class CpuTierStrip(Widget):
    COMPONENT_CLASSES = set(CLASS.values()) | {"cpu--dim"}

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.part: TierPart | None = None

    def show(self, part: TierPart | None) -> None:
        self.part = part
        self.border_title = title(part)
        self.refresh()

    def render(self) -> Text:
        part = self.part
        if part is None or not part.cells:
            return Text("no iteration yet", style=self.get_component_rich_style("cpu--dim"))
        width = max(1, self.content_size.width)
        folded = cells(part.cells, width * ROWS)
        out = Text()
        for i in range(0, len(folded), width):
            if i:
                out.append("\n")
            for code in folded[i:i + width]:
                out.append(GLYPH[code], style=self.get_component_rich_style(CLASS[code]))
        return out
