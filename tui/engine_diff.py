"""compare --engines v0,v1: the per-request differences table (engine.differences)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.differences import RequestDifference, difference_dict, request_differences
from tui.report import RunResult
from tui.widgets.safe import safe_text

SHOWN = 40  # rows printed; --json has them all

__all__ = ["difference_dict", "engine_differences", "print_differences"]


def engine_differences(runs: list[RunResult], engines: list[str]) -> list[RequestDifference]:
    a, b = runs
    return request_differences(rows(a), rows(b), (engines[0], engines[1]),
                               a.settings["block_size"])


def rows(run: RunResult) -> list[dict]:
    return [row for _index, batch in run.row_batches for row in batch]


def print_differences(console: Console, diffs: list[RequestDifference],
                      labels: tuple[str, str], compared: int) -> None:
    la, lb = labels
    table = Table(title=f"Per-request differences, {la} vs {lb}: {len(diffs):,} of "
                  f"{compared:,} requests", show_lines=False)
    for name, justify in (("#", "right"), ("request", "left"), ("prompt", "right"),
                          (f"hit {la}", "right"), (f"hit {lb}", "right"),
                          (f"evicted {la}/{lb}", "right"), ("reason", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for d in diffs[:SHOWN]:
        hit_a = f"{d.a.hit_tokens:,}" if d.a.outcome.served else d.a.outcome.value
        hit_b = f"{d.b.hit_tokens:,}" if d.b.outcome.served else d.b.outcome.value
        table.add_row(str(d.index), Text(safe_text(d.request_id)), f"{d.a.prompt_tokens:,}",
                      hit_a, hit_b, f"{d.a.evicted_blocks:,}/{d.b.evicted_blocks:,}",
                      Text(safe_text(d.reason)))
    if not diffs:
        table.caption = "every request got the same hit tokens, outcome and evictions"
    elif len(diffs) > SHOWN:
        table.caption = f"… {len(diffs) - SHOWN:,} more (all of them with --json)"
    console.print(table)
