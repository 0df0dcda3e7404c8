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
