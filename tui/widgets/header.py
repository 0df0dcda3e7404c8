"""The top line: trace, step i / N, and the vLLM settings the replay runs under.

It fits itself to the width: the status (loading, playing, seeking) always shows, and the
settings drop from their long form to a short one, then away, on a narrow terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.vllm_v1 import EngineSettings
from tui.widgets.safe import clip, safe_text


class InspectorHeader(Widget):
    COMPONENT_CLASSES = {"header--title", "header--step", "header--dim", "header--status"}

    def __init__(self, trace_name: str, settings: EngineSettings, **kw) -> None:
        super().__init__(**kw)
        self.trace_name = safe_text(trace_name)
        self.settings = settings
        self.step = 0  # 1-based; 0 before the first step is shown
        self.total = 0
        self.total_final = False
        self.vllm_version: str | None = None
        self.status = ""

    def update_state(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.refresh()

    @property
    def step_text(self) -> str:
        if not self.total_final and not self.total:
            return "reading trace…"
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

    def render(self) -> Text:
        width = self.size.width
        title = self.get_component_rich_style("header--title")
        left = Text.assemble(
            (" prefix-tui ", title) if width >= 100 else "",
            " ",
            (clip(self.trace_name, max(8, width // 4)), "bold"),
            "  ",
            (self.step_text, self.get_component_rich_style("header--step")),
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
