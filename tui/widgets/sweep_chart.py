"""The sweep's curve as a Line-API widget: hit rate (%) against capacity in tokens (log
scale), vLLM's points per block size joined by dots, prefix-tui's farthest-next-use bound
as ×, and the ceilings as horizontal lines (vLLM's unbounded pool ─, prefix-tui's reuse
bound ┄). It redraws when a point arrives or the widget is resized; every glyph has its own
meaning besides its colour (NO_COLOR and screenshots read the same)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

Y_LABEL = 5  # "100% " on the left
PALETTE = ("#56b4e9", "#e69f00", "#cc79a7", "#009e73")  # per block size (colour-blind safe)
BOUND_STYLE = Style(color="#f0e442")
UNBOUNDED_STYLE = Style(color="#009e73")
REUSE_STYLE = Style(color="#d55e00")
AXIS_STYLE = Style(dim=True)


@dataclass
class ChartData:
    """What the chart shows: per curve ("block 16", "block 16, CPU 1 GiB", ...), (capacity
    tokens, hit rate 0..1) of vLLM's finite points, prefix-tui's bounds at them, and per
    block size the two ceilings."""

    points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    bounds: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    unbounded: dict[int, float] = field(default_factory=dict)
    reuse: dict[int, float] = field(default_factory=dict)

    def xs(self) -> list[int]:
        return [x for pts in (*self.points.values(), *self.bounds.values()) for x, _ in pts]


class SweepChart(Widget):
    DEFAULT_CSS = "SweepChart { height: 1fr; min-height: 10; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.data = ChartData()
        self._rows: list[Strip] | None = None
        self._drawn_size = (0, 0)

    def update_data(self, data: ChartData) -> None:
        self.data = data
        self._rows = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._rows is None or size != self._drawn_size:
            self._drawn_size = size
            self._rows = self._draw(*size)
        return self._rows[y] if y < len(self._rows) else Strip.blank(self.size.width)

    # -- drawing ----------------------------------------------------------------------------
    def _draw(self, width: int, height: int) -> list[Strip]:
        legend = self._legend_lines(width)
        plot_h = max(3, height - 2 - len(legend))  # legend on top, axis and labels below
        plot_w = max(10, width - Y_LABEL - 1)
        cells: list[list[tuple[str, Style | None]]] = [
            [(" ", None)] * plot_w for _ in range(plot_h)]
        xs = self.data.xs()
        lo, hi = (min(xs), max(xs)) if xs else (1, 10)
        if hi <= lo:
            lo, hi = max(1, lo // 2), max(2, hi * 2)
        span = math.log10(hi) - math.log10(lo)

        def col(x: int) -> int:
            return round((math.log10(max(x, 1)) - math.log10(lo)) / span * (plot_w - 1))

        def row(rate: float) -> int:
            return (plot_h - 1) - round(min(max(rate, 0.0), 1.0) * (plot_h - 1))

        for ceilings, glyph, style in ((self.data.unbounded, "─", UNBOUNDED_STYLE),
                                       (self.data.reuse, "┄", REUSE_STYLE)):
            for rate in ceilings.values():
                r = row(rate)
                for c in range(plot_w):
                    if cells[r][c][0] == " ":
                        cells[r][c] = (glyph, style)
        for i, (_name, pts) in enumerate(self.data.points.items()):
            style = Style(color=PALETTE[i % len(PALETTE)], bold=True)
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]):  # dots between neighbours
                c0, c1 = col(x0), col(x1)
                for c in range(c0 + 1, c1):
                    rate = y0 + (y1 - y0) * (c - c0) / (c1 - c0)
                    cells[row(rate)][c] = ("·", style)
            for x, rate in pts:
                cells[row(rate)][col(x)] = ("●", style)
        for pts in self.data.bounds.values():
            for x, rate in pts:
                cells[row(rate)][col(x)] = ("×", BOUND_STYLE)
        out = [Strip([Segment(line[:width].ljust(width))]) for line in legend]
        labelled = {round(k * (plot_h - 1) / 4) for k in range(5)}  # 100, 75, 50, 25, 0 %
        for r, line in enumerate(cells):
            pct = 100 - round(100 * r / max(plot_h - 1, 1))
            label = f"{pct:>3}% " if r in labelled else " " * Y_LABEL
            segs = [Segment(label, AXIS_STYLE), Segment("│", AXIS_STYLE)]
            segs += [Segment(ch, st) for ch, st in line]
            out.append(Strip(segs).crop(0, width))
        out.append(Strip([Segment(" " * Y_LABEL + "└" + "─" * plot_w, AXIS_STYLE)]).crop(0, width))
        out.append(Strip([Segment(self._x_labels(lo, hi, plot_w), AXIS_STYLE)]).crop(0, width))
        return out

    @staticmethod
    def _x_labels(lo: int, hi: int, plot_w: int) -> str:
        text = [" "] * (Y_LABEL + 1 + plot_w)
        span = math.log10(hi) - math.log10(lo)
        for e in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
            x = 10 ** e
            if not lo <= x <= hi:
                continue
            c = Y_LABEL + 1 + round((e - math.log10(lo)) / span * (plot_w - 1))
            word = _tokens(x)
            for k, ch in enumerate(word):
                if c + k < len(text):
                    text[c + k] = ch
        tail = " tokens"
        return ("".join(text).rstrip() + tail)[: Y_LABEL + 1 + plot_w + len(tail)]

    def _legend_lines(self, width: int) -> list[str]:
        """The legend, wrapped between its entries (a sweep with CPU-tier or replica axes
        has a curve per combination)."""
        parts = [f"● vLLM hit rate, {name}" for name in self.data.points]
        if self.data.bounds:
            parts.append("× bound (prefix-tui's)")
        if self.data.unbounded:
            parts.append("─ unbounded (vLLM)")
        if self.data.reuse:
            parts.append("┄ reuse bound (prefix-tui's)")
        if not parts:
            return ["waiting for the first point…"]
        lines = [parts[0]]
        for part in parts[1:]:
            if len(lines[-1]) + 2 + len(part) <= width:
                lines[-1] += "  " + part
            else:
                lines.append(part)
        return lines


def _tokens(x: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if x >= size:
            return f"{x // size}{unit}"
    return str(x)
