"""Cells of a sweep's table, shared by the printed table (tui/sweep_cli.py) and the sweep
screen (tui/screens/sweep.py), so both say the same thing the same way."""

from __future__ import annotations

from engine import metrics
from engine.block_reasons import BlockReasons
from engine.sweep.plan import SweepPlan
from engine.sweep.points import PointResult, PointSpec


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def miss_cell(reasons: BlockReasons | None) -> str:
    """Missed prompt blocks by reason, compact: the reasons that occurred, in MissReason's
    order, under the names --json uses ("cold 12 · evicted 30 · partial 16")."""
    if reasons is None:
        return "–"
    parts = [f"{k} {v:,}" for k, v in reasons.counts().items() if v]
    return " · ".join(parts) if parts else "none"


# -- the other axes: columns a sweep's table gets only when it has that axis --------------
def axis_headers(plan: SweepPlan) -> list[str]:
    """Columns after "block": the replicas and the CPU tier of each point (blocks; a size
    in GiB with the blocks vLLM built from it)."""
    return (["replicas"] if plan.replica_axis else []) + (
        ["CPU tier"] if plan.tier_axis else [])


def axis_cells(plan: SweepPlan, spec: PointSpec, r: PointResult) -> list[str]:
    out = []
    if plan.replica_axis:
        out.append(f"{spec.instances} × {spec.options.router}"
                   if spec.options.instances is not None else "1")
    if plan.tier_axis:
        t = spec.tier
        if t is None:
            out.append("–")
        elif not t.enabled:
            out.append("off")
        else:
            given = (f"{t.kv_offloading_size:g} GiB" if t.kv_offloading_size is not None
                     else f"{t.num_cpu_blocks:,}")
            built = r.tier.num_blocks // spec.instances if r.tier is not None else 0
            out.append(given if t.num_cpu_blocks is not None else f"{given} ({built:,})")
    return out


def figure_headers(plan: SweepPlan) -> list[str]:
    """Columns after the bound: the CPU tier's figures (hits in tokens) and each
    replica's hit rate."""
    out = []
    if plan.tier_axis:
        out += ["CPU-tier hits", "CPU-tier hit rate", "cached GPU+CPU"]
    if plan.replica_axis:
        out.append("hit rate per replica")
    return out


def figure_cells(plan: SweepPlan, spec: PointSpec, r: PointResult) -> list[str]:
    t = r.totals
    out = []
    if plan.tier_axis:
        out += [f"{t.host_hits:,}", pct(metrics.cpu_hit_rate(t)), pct(metrics.cached_rate(t))]
    if plan.replica_axis:
        rates = [f"{100 * metrics.hit_rate(rt):.1f}" for rt in r.replica_totals]
        out.append(" · ".join(rates) + " %" if rates else "–")
    return out
