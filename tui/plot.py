"""``--headless --plot FILE.png|svg``: vLLM's hit rate over the replay, drawn with
matplotlib (the optional ``plot`` extra: pip install 'prefix-tui[plot]').

Per request: hit tokens / prompt tokens of each served request, at the step its row
completes; cumulative: vLLM's own PrefixCacheStats hits / queries after each step. Both are
vLLM's figures (engine/plotdata.py); only the drawing is here.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.export import check_writable
from engine.plotdata import HitRateSeries
from tui.files import write_file

FORMATS = (".png", ".svg")
MANY_POINTS = 20_000  # beyond this the per-request dots are drawn as a raster layer


class Plot:
    def __init__(self, path: str, force: bool) -> None:
        self.path = path
        self.force = force
        self.series = HitRateSeries()

    @classmethod
    def checked(cls, path: str, force: bool, inputs: tuple[str, ...]) -> Plot:
        """Everything that could fail, before the replay: the format, matplotlib, the file."""
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise UserError(f"--plot {path}: the file name must end in .png or .svg")
        try:
            import matplotlib  # noqa: F401 - only whether it is installed
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'prefix-tui[plot]' "
                            "(or pip install matplotlib)") from None
        check_writable(path, force, inputs=tuple(i for i in inputs if i))
        return cls(path, force)

    def write(self, trace: str, settings: str, status: str = "complete") -> None:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        from matplotlib.figure import Figure

        s = self.series
        fig = Figure(figsize=(10, 5.2), dpi=120, layout="constrained")
        ax = fig.add_subplot()
        many = len(s.per_request) > MANY_POINTS
        ax.scatter(s.request_steps, [100 * x for x in s.per_request], s=4 if many else 12,
                   alpha=0.35 if many else 0.6, color="#E69F00", linewidths=0,
                   rasterized=many, label="per request: hit tokens / prompt tokens")
        ax.plot(s.steps, [100 * x for x in s.cumulative], color="#0072B2", linewidth=2,
                label="cumulative: vLLM's PrefixCacheStats hits / queries")
        ax.set_ylim(-2, 102)
        ax.set_ylabel("vLLM prefix-cache hit rate (%)")
        ax.set_xlabel("step (a request in sequential mode, a scheduler iteration in serve mode)")
        name = Path(trace).name
        partial = "" if status == "complete" else f" (stopped early: {status})"
        ax.set_title(f"{name}{partial}\n{settings}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fmt = Path(self.path).suffix.lower().lstrip(".")
        write_file(self.path, lambda tmp: fig.savefig(tmp, format=fmt), self.force)


def write_sweep(outcome, path: str, force: bool, title: str) -> None:  # noqa: ANN001 - SweepOutcome
    """``prefix-tui sweep --plot``: the capacity curve and its ceilings, to a file."""
    fig = sweep_figure(outcome, title)
    fmt = Path(path).suffix.lower().lstrip(".")
    write_file(path, lambda tmp: fig.savefig(tmp, format=fmt), force)


def sweep_figure(outcome, title: str):  # noqa: ANN001, ANN201 - SweepOutcome -> a Figure
    """The capacity curve (vLLM's hit rate per pool, one line per block size), prefix-tui's
    farthest-next-use bound beside it, and the ceilings (vLLM's never-evicting pool;
    prefix-tui's reuse bound), each labelled whose it is."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from engine import metrics
    from tui.sweep_plot import curve_series

    fig = Figure(figsize=(10, 5.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
    series = curve_series(outcome)
    xs = [x for pts in series.values() for x, _h, _b in pts]
    for k, (name, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        ax.plot([x for x, _h, _b in pts], [100 * h for _x, h, _b in pts], "o-", color=c,
                label=f"vLLM hit rate, {name}")
        bound = [(x, b) for x, _h, b in pts if b is not None]
        if bound:
            ax.plot([x for x, _ in bound], [100 * b for _, b in bound], "x:", color=c,
                    label=f"farthest-next-use bound (prefix-tui's), {name}")
    for k, ceiling in enumerate(outcome.ceilings()):
        c = colors[k % len(colors)]
        if ceiling.unbounded is not None and ceiling.unbounded.status == "complete":
            ax.axhline(100 * metrics.hit_rate(ceiling.unbounded.totals), color=c, linestyle="-",
                       alpha=0.5, label=f"unbounded pool (vLLM), block {ceiling.block_size}")
        if ceiling.reuse is not None:
            ax.axhline(100 * ceiling.reuse.hit_rate, color=c, linestyle="--", alpha=0.5,
                       label=f"reuse bound (prefix-tui's), block {ceiling.block_size}")
    if xs and min(xs) > 0:
        ax.set_xscale("log")
    ax.set_ylim(-2, 102)
    ax.set_xlabel("KV cache capacity (tokens: usable blocks × block size)")
    ax.set_ylabel("prefix-cache hit rate (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return fig
