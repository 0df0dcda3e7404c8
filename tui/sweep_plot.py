"""The sweep's curve drawn in the terminal with plotext: hit rate against capacity in
tokens (log scale), one line per block size, prefix-tui's farthest-next-use bound dotted
beside it, and the ceilings (vLLM's unbounded pool, prefix-tui's reuse bound) as
horizontal lines."""

from __future__ import annotations

import plotext as plt

from engine import metrics
from engine.sweep.plan import SweepOutcome
from tui.widgets.sweep_chart import ChartData

# plotext 6 draws on one module-level figure: callers draw from one thread at a time.


def curve_series(outcome: SweepOutcome) -> dict[str, list[tuple[int, float, float | None]]]:
    """Per curve ("block 16", or with the other axes "block 16, CPU 1 GiB", "block 16, 2×
    prefix-aware"): (capacity tokens, vLLM's (GPU) hit rate, prefix-tui bound) of finite
    points that completed, by capacity. A point with a CPU tier also gives a curve of the
    share cached in either tier ("block 16, CPU 1 GiB · GPU+CPU": vLLM's GPU and CPU-tier
    hit tokens over prompt tokens), since the tier leaves the GPU hit rate as it was."""
    out: dict[str, list[tuple[int, float, float | None]]] = {}
    for spec, r in outcome.point_pairs():
        if spec.num_blocks is None or r.status != "complete":
            continue
        bound = r.bound.hit_rate if r.bound is not None else None
        x = spec.capacity_tokens or 0
        out.setdefault(spec.series, []).append((x, metrics.hit_rate(r.totals), bound))
        if spec.tier is not None and spec.tier.enabled:
            out.setdefault(f"{spec.series} · GPU+CPU", []).append(
                (x, metrics.cached_rate(r.totals), None))
    return {name: sorted(v) for name, v in out.items()}


def curve_text(outcome: SweepOutcome, width: int, height: int, color: bool = True) -> str:
    series = curve_series(outcome)
    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    xs_all = [x for pts in series.values() for x, _h, _b in pts]
    for name, pts in series.items():
        _line(fig, [x for x, _h, _b in pts], [100 * h for _x, h, _b in pts], "hd",
              f"vLLM, {name}")
        bound = [(x, b) for x, _h, b in pts if b is not None]
        if bound:
            _line(fig, [x for x, _ in bound], [100 * b for _, b in bound], "x",
                  f"bound (prefix-tui), {name}")
    lo, hi = (min(xs_all), max(xs_all)) if xs_all else (1, 10)
    if hi == lo:
        hi = lo * 10
    for c in outcome.ceilings():
        if c.unbounded is not None and c.unbounded.status == "complete":
            y = 100 * metrics.hit_rate(c.unbounded.totals)
            _line(fig, [lo, hi], [y, y], "-", f"unbounded (vLLM), block {c.block_size}")
        if c.reuse is not None:
            y = 100 * c.reuse.hit_rate
            _line(fig, [lo, hi], [y, y], ".", f"reuse bound (prefix-tui), block {c.block_size}")
    if lo > 0:
        fig.ruler("x").scale("log")
    fig.ruler("y").lim(0, 100)
    fig.title("hit rate % vs KV capacity (tokens)")
    fig.label("capacity (tokens)", "x")
    return fig.build().string(colorless=not color)


def _line(fig, xs: list, ys: list, marker: str, label: str) -> None:  # noqa: ANN001
    sig = fig.signal(xs, ys, marker=marker)
    sig.lines(True)
    sig.label(label)
    fig.draw(sig)


def chart_data(outcome: SweepOutcome) -> ChartData:
    """What the inspector's sweep chart draws (the same series as the terminal curve)."""
    data = ChartData()
    for name, pts in curve_series(outcome).items():
        data.points[name] = [(x, h) for x, h, _b in pts]
        bounds = [(x, b) for x, _h, b in pts if b is not None]
        if bounds:
            data.bounds[name] = bounds
    for c in outcome.ceilings():
        if c.unbounded is not None and c.unbounded.status == "complete":
            data.unbounded[c.block_size] = metrics.hit_rate(c.unbounded.totals)
        if c.reuse is not None:
            data.reuse[c.block_size] = c.reuse.hit_rate
    return data
