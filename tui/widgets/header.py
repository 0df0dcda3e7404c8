"""The top line: trace, step i / N, and the vLLM settings the replay runs under.

It fits itself to the width: the status (loading, playing, seeking) always shows, and the
settings drop from their long form to a short one, then away, on a narrow terminal.

Serve mode adds the scheduler (class; sync or async) and the iteration at the cursor: its
number, the simulated clock, the tokens scheduled and the KV blocks held out of the pool's
usable blocks. These shrink last, after the settings.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.settings import EngineSettings
from tui.widgets.safe import clip, safe_text


class InspectorHeader(Widget):
    COMPONENT_CLASSES = {
        "header--title", "header--step", "header--dim", "header--status", "header--serve",
    }

    def __init__(self, trace_name: str, settings: EngineSettings, *, mode: str = "sequential",
                 scheduler: str = "", **kw) -> None:
        super().__init__(**kw)
        self.mode = mode
        self.scheduler = scheduler  # serve: vLLM's scheduler class (Scheduler, AsyncScheduler)
        self.iteration: dict | None = None  # serve: the figures of the iteration shown
        self.trace_name = safe_text(trace_name)
        self.settings = settings
        self.step = 0  # 1-based; 0 before the first step is shown
        self.total = 0
        self.total_final = False
        self.vllm_version: str | None = None
        self.status = ""
        self.replica = ""  # --instances: "replica 2 of 4", the replica shown

    def update_state(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.refresh()

    @property
    def step_text(self) -> str:
        if not self.total_final and not self.total:
            return "starting…" if self.mode == "serve" else "reading trace…"
        total = f"{self.total:,}" if self.total_final else f"≥{self.total:,}"
        step = f"{self.step:,}" if self.step else "–"
        return f"step {step} / {total}"

    def _settings_text(self, form: int) -> str:
        s = self.settings
        version = self.vllm_version or "…"
        caching = f"caching on ({s.hash_algo})" if s.enable_caching else "caching off"
        if form == 0:
            return (
                f"vLLM {version} · block size {s.block_size} · pool {s.num_blocks:,} blocks · "
                f"{caching}"
            )
        short = s.hash_algo if s.enable_caching else "no cache"
        if form == 1:
            return f"vLLM {version} · bs {s.block_size} · {s.num_blocks:,} blk · {short}"
        return f"vLLM {version} bs{s.block_size} {s.num_blocks:,}blk {short if s.enable_caching else 'nocache'}"

    def serve_text(self, form: int) -> str:
        """Serve mode's part: the scheduler and the iteration shown, long (0) to tiny (2)."""
        name = self.scheduler or "Scheduler"
        kind = "async" if name.startswith("Async") else "sync"
        it = self.iteration
        usable = self.settings.num_blocks - 1
        if form == 0:
            head = f"serve · {name}" + ("" if kind == "async" else " (sync)")
            if it is None:
                return head
            share = it["used_blocks"] / usable if usable else 0.0
            return (f"{head} · iteration {it['iteration']:,} · clock {it['clock']:.3f} s · "
                    f"{it['scheduled_tokens']:,} tok scheduled · "
                    f"KV {it['used_blocks']:,}/{usable:,} blocks ({share:.0%})")
        if form == 1:
            head = f"serve {kind}"
            if it is None:
                return head
            return (f"{head} · it {it['iteration']:,} · {it['clock']:.2f} s · "
                    f"{it['scheduled_tokens']:,} tok · KV {it['used_blocks']:,}/{usable:,}")
        if it is None:
            return kind
        return f"{kind} it{it['iteration']} {it['clock']:.2f}s KV{it['used_blocks']}/{usable}"

    def render(self) -> Text:
        if self.mode == "serve":
            return self._render_serve()
        width = self.size.width
        title = self.get_component_rich_style("header--title")
        left = Text.assemble(
            (" prefix-tui ", title) if width >= 100 else "",
            " ",
            (clip(self.trace_name, max(8, width // 4)), "bold"),
            "  ",
            (self.step_text, self.get_component_rich_style("header--step")),
            (f" · {self.replica}" if self.replica else "", self.get_component_rich_style("header--step")),
        )
        status = Text(f"  {self.status}", self.get_component_rich_style("header--status")) if self.status else Text()
        room = width - left.cell_len - status.cell_len - 1
        right = Text()
        for form in (0, 1, 2):
            candidate = self._settings_text(form)
            if len(candidate) <= room:
                right = Text(candidate, self.get_component_rich_style("header--dim"))
                break
        pad = max(1, width - left.cell_len - status.cell_len - right.cell_len - 1)
        line = Text.assemble(left, status, " " * pad, right, " ")
        line.truncate(width)
        return line

    def _render_serve(self) -> Text:
        width = self.size.width
        title = self.get_component_rich_style("header--title")
        left = Text.assemble(
            (" prefix-tui ", title) if width >= 100 else "",
            " ",
            (clip(self.trace_name, max(8, width // 5)), "bold"),
            "  ",
            (self.step_text, self.get_component_rich_style("header--step")),
            (f" · {self.replica}" if self.replica else "", self.get_component_rich_style("header--step")),
        )
        status = Text(f"  {self.status}", self.get_component_rich_style("header--status")) if self.status else Text()
        room = width - left.cell_len - status.cell_len - 1
        serve_style = self.get_component_rich_style("header--serve")
        dim = self.get_component_rich_style("header--dim")
        middle, right = Text(), Text()
        # Richest first: the iteration in full with the settings in one of their forms,
        # then without settings, then shorter iteration texts.
        choices = [(0, f) for f in (0, 1, 2)] + [(0, None), (1, None), (2, None)]
        for sf, ef in choices:
            mid = "  " + self.serve_text(sf)
            rest = self._settings_text(ef) if ef is not None else ""
            if len(mid) + (len(rest) + 1 if rest else 0) <= room:
                middle, right = Text(mid, serve_style), Text(rest, dim)
                break
        pad = max(1, width - left.cell_len - middle.cell_len - status.cell_len - right.cell_len - 1)
        line = Text.assemble(left, middle, status, " " * pad, right, " ")
        line.truncate(width)
        return line
