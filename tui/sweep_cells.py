"""Cells of a sweep's table, shared by the printed table (tui/sweep_cli.py) and the sweep
screen (tui/screens/sweep.py), so both say the same thing the same way."""

from __future__ import annotations

from engine.block_reasons import BlockReasons


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def miss_cell(reasons: BlockReasons | None) -> str:
    """Missed prompt blocks by reason, compact: the reasons that occurred, in MissReason's
    order, under the names --json uses ("cold 12 · evicted 30 · partial 16")."""
    if reasons is None:
        return "–"
    parts = [f"{k} {v:,}" for k, v in reasons.counts().items() if v]
    return " · ".join(parts) if parts else "none"
