"""Running totals at the cursor, from engine.metrics, and a sparkline of hits per step.

``values`` keeps the formatted figures by name so tests compare them with the metrics
functions applied to the record's Totals; the panel prints exactly these strings.

Serve mode adds preemptions and vLLM's own split of prefix lookups made by preempted
requests when they are scheduled again (PrefixCacheStats.preempted_hits /
preempted_queries, in tokens; the hit rate above counts only first lookups), and its
sparkline is the KV usage per iteration.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label, Sparkline
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from engine import metrics
from engine.model import Totals
from tui.widgets.breakdown import BreakdownLines
from tui.widgets.group_lines import GroupLines

SPARK_STEPS = 120  # the sparkline covers the last this-many steps up to the cursor
VALUE_WIDTH = 10  # "99,999,999": columns stay put up to 8-digit counts
BARS = " ▁▂▃▄▅▆▇█"


class HitSparkline(Sparkline):
    """Textual's Sparkline on a fixed 0-100 % scale, one column per step, newest at the
    right (the stock one rescales to the data's min..max and stretches a short series,
    so one 0 % request would draw a full bar)."""

    COMPONENT_CLASSES = Sparkline.COMPONENT_CLASSES | {"sparkline--baseline"}

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, max(1, self.size.height)
        data = list(self.data or [])[-width:] if width else []
        base = self.rich_style
        hi = base + Style(color=self.get_component_rich_style("sparkline--max-color").color)
        lo = base + Style(color=self.get_component_rich_style("sparkline--min-color").color)
        baseline = self.get_component_rich_style("sparkline--baseline")
        line = height - 1 - y  # 0 is the bottom line
        segments = [Segment(" " * (width - len(data)), base)]
        for v in data:
            filled = round(max(0.0, min(1.0, v)) * 8 * height) - line * 8
            if filled <= 0 and line == 0:
                segments.append(Segment("▁", baseline))  # a dim baseline marks 0 % steps
            else:
                segments.append(Segment(BARS[max(0, min(8, filled))], hi if v >= 0.5 else lo))
        return Strip(Segment.simplify(segments)).crop(0, width)


def pct(x: float) -> str:
    return f"{x:.1%}"


def totals_values(t: Totals) -> dict[str, str]:
    """The panel's figures, formatted; one definition for the widget and its tests."""
    return {
        "sharing": pct(metrics.sharing_fraction(t)),
        "sharing_avg": pct(metrics.avg_sharing_fraction(t)),
        "hit_rate": pct(metrics.hit_rate(t)),
        "hit_rate_recent": pct(metrics.recent_hit_rate(t)),
        "reused": f"{t.blocks_reused:,}",
        "new": f"{t.blocks_new:,}",
        "evictions": f"{t.evictions:,}",
        "not_fitted": f"{t.not_fitted:,}",
        "errors": f"{t.errors:,}",
        "requests": f"{t.requests:,}",
    }


def serve_values(t: Totals) -> dict[str, str]:
    """Serve mode's extra figures: preemptions and vLLM's preempted hits / queries."""
    rate = metrics.preempted_hit_rate(t)
    return {
        "preemptions": f"{t.preemptions:,}",
        "preempted_hit_rate": pct(rate),
        "preempted_hits": f"{t.preempted_hits:,}",
        "preempted_queries": f"{t.preempted_queries:,}",
    }


def tier_values(t: Totals) -> dict[str, str]:
    """With vLLM's CPU offloading tier: the report's CPU-tier figures that the running
    totals carry (vLLM's connector PrefixCacheStats, in tokens)."""
    return {
        "cpu_hits": f"{t.host_hits:,}",
        "cpu_hit_rate": pct(metrics.cpu_hit_rate(t)),
        "cached_rate": pct(metrics.cached_rate(t)),
        "external_queries": f"{t.external_queries:,}",
    }


TIER_ROWS = (
    ("CPU-tier hits", "cpu_hits", "CPU-tier hit %", "cpu_hit_rate"),
    ("cached GPU+CPU", "cached_rate", "past GPU hit", "external_queries"),
)

SERVE_ROWS = (
    ("preemptions", "preemptions", "preempted hit %", "preempted_hit_rate"),
    ("preempted hits", "preempted_hits", "of queried", "preempted_queries"),
)

ROWS = (
    ("sharing fraction", "sharing", "avg / request", "sharing_avg"),
    ("vLLM hit rate", "hit_rate", "last 1,000 req", "hit_rate_recent"),
    ("blocks reused", "reused", "blocks new", "new"),
    ("evictions", "evictions", "did not fit", "not_fitted"),
    ("requests", "requests", "vLLM errors", "errors"),
)


class TotalsFigures(Widget):
    """The figures table; a render() widget so a step refreshes it without a relayout
    (Static.update would relayout the screen)."""

    COMPONENT_CLASSES = {"totals--label"}

    def __init__(self, rows: tuple = ROWS, **kw) -> None:
        super().__init__(**kw)
        self.rows = rows
        self.values: dict[str, str] = totals_values(Totals())

    def render(self) -> Text:
        # Plain fixed-width columns: cheaper per step than a rich Table.
        v = self.values
        dim = self.get_component_rich_style("totals--label")
        two_columns = self.size.width >= 60 or not self.size.width
        lines = []
        w = VALUE_WIDTH
        for label, key, label2, key2 in self.rows:
            if two_columns:
                lines.append(Text.assemble((f"{label:<17}", dim), f"{v[key]:>{w}}   ",
                                           (f"{label2:<15}", dim), f"{v[key2]:>{w}}"))
            else:
                lines.append(Text.assemble((f"{label:<17}", dim), f"{v[key]:>{w}}"))
                lines.append(Text.assemble((f" {label2:<16}", dim), f"{v[key2]:>{w}}"))
        return Text("\n").join(lines)


class TotalsPanel(Vertical):
    """``rows``: the figures shown (ROWS, or ROWS + SERVE_ROWS); ``spark_label``: what the
    sparkline draws, one value per step (the screen supplies the values)."""

    def __init__(self, rows: tuple = ROWS, spark_label: str = "hit rate per request", **kw) -> None:
        super().__init__(**kw)
        self.rows = rows
        self.spark_label = spark_label
        self.values: dict[str, str] = self._values(Totals())
        self.kv_groups: tuple = ()  # vLLM's KV cache groups (a line per group when several)

    def _values(self, totals: Totals) -> dict[str, str]:
        every = {**totals_values(totals), **serve_values(totals), **tier_values(totals)}
        return {key: every[key] for row in self.rows for key in (row[1], row[3])}

    def compose(self) -> ComposeResult:
        figures = TotalsFigures(self.rows, id="totals-figures")
        figures.values = self.values
        yield figures
        yield BreakdownLines(id="totals-breakdown")
        yield GroupLines(id="totals-groups")
        yield Label(self._spark_label(), id="totals-spark-label")
        yield HitSparkline([], id="totals-spark")

    def show(self, totals: Totals, series: list[float],
             breakdown: metrics.Breakdown | None = None) -> None:
        """``breakdown``: hits per tenant, adapter and type at this step (None: none)."""
        self.query_one(BreakdownLines).show(breakdown)
        self.query_one(GroupLines).show(totals, self.kv_groups)
        self.values = self._values(totals)
        figures = self.query_one(TotalsFigures)
        figures.values = self.values
        figures.refresh()
        self.query_one("#totals-spark", Sparkline).data = series

    def _spark_label(self) -> str:
        steps = min(SPARK_STEPS, max(self.size.width - 2, 0)) or SPARK_STEPS
        return f"{self.spark_label}, last {steps} steps"

    def on_resize(self) -> None:
        self.query_one("#totals-spark-label", Label).update(self._spark_label())
