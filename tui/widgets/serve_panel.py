"""Serve mode: vLLM's queues at the cursor, and what this scheduler iteration did.

    this iteration  arrivals; requests admitted for the first time, with the cached tokens
                    vLLM's scheduler reports for each (its prefill_stats.num_cached_tokens,
                    the prefix hit of its first schedule); resumed after a preemption (they
                    recompute, with a fresh prefix lookup); finished; preempted (blocks
                    freed); rejected
    running         in vLLM's order; when blocks run out vLLM preempts the last one first
    waiting         head first; a request preempted at this step is highlighted, an
                    earlier preemption is noted

Line API with its own scroll offset (a busy server has hundreds of running and thousands of
waiting requests): a step builds plain (text, class) tuples, O(running + waiting), and only
the visible lines are drawn. Request ids come from the trace: safe_text, never markup.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence

from rich.segment import Segment
from textual.binding import Binding
from textual.strip import Strip
from textual.widget import Widget

from engine.model import Outcome, StepRecord
from engine.replay.common import describe_finish
from tui.widgets.line_scroll import LineScroll
from tui.widgets.safe import clip, safe_text

MAX_WAITING = 1_000  # waiting requests listed; the rest are counted
ID_W = 14

Piece = tuple[str, str]  # (text, component class or "")
Line = tuple[Piece, ...]


class ServePanel(LineScroll, Widget, can_focus=True):
    COMPONENT_CLASSES = {
        "serve--title", "serve--dim", "serve--ok", "serve--warn", "serve--preempted",
        "serve--error",
    }
    BINDINGS = [
        Binding("up", "scroll_rows(-1)", "Up", show=False),
        Binding("down", "scroll_rows(1)", "Down", show=False),
        Binding("pageup", "scroll_page(-1)", "Page up", show=False),
        Binding("pagedown", "scroll_page(1)", "Page down", show=False),
    ]

    def __init__(self, request_id: Callable[[str], str], **kw) -> None:
        super().__init__(**kw)
        self._request_id = request_id  # seq id -> the trace's request id
        self.record: StepRecord | None = None
        self._lines: list[Line] = []
        self.top = 0

    # -- attributes down ----------------------------------------------------------------------
    def show(self, rec: StepRecord, prev: StepRecord | None,
             preempted_at: Mapping[str, list[int]]) -> None:
        """``prev``: the step before (blocks a preempted sequence held); ``preempted_at``:
        seq id -> steps it was preempted at, ascending (the app's running index)."""
        self.record = rec
        self._lines = build_lines(rec, prev, preempted_at, self._rid)
        height = max(1, self.content_size.height)
        self.top = max(0, min(self.top, len(self._lines) - height))
        self.refresh()  # fixed height (app.tcss): no relayout of the screen per step

    def _rid(self, seq_id: str) -> str:
        return clip(safe_text(self._request_id(seq_id)), ID_W)

    def lines(self) -> list[str]:
        """The panel's text, one string per line (tests read this)."""
        return ["".join(text for text, _ in line) for line in self._lines]

    # -- scrolling ----------------------------------------------------------------------------
    def action_scroll_rows(self, delta: int) -> None:
        self._scroll(delta)

    def action_scroll_page(self, delta: int) -> None:
        self._scroll(delta * max(1, self.content_size.height - 1))

    def _line_count(self) -> int:
        return len(self._lines)

    # -- drawing --------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        base = self.rich_style
        height = max(1, self.content_size.height)
        index = self.top + y
        if y == height - 1 and height > 1 and len(self._lines) > self.top + height:
            line: Line = ((f"… {len(self._lines) - index} more lines (scroll)", "serve--dim"),)
        elif index < len(self._lines):
            line = self._lines[index]
        else:
            return Strip.blank(width, base)
        segments = [
            Segment(text, base + self.get_component_rich_style(cls, partial=True) if cls else base)
            for text, cls in line
        ]
        return Strip(segments).extend_cell_length(width, base).crop(0, width)


def build_lines(rec: StepRecord, prev: StepRecord | None, preempted_at: Mapping[str, list[int]],
                rid: Callable[[str], str]) -> list[Line]:
    out: list[Line] = []
    x = rec.serve
    assert x is not None, "serve-mode records carry a ServePart"
    dim = "serve--dim"
    # -- this iteration ---------------------------------------------------------------
    out.append((("this iteration", "serve--title"),))
    first = len(out)
    if rec.error is not None:
        out.append((("! vLLM raised: ", "serve--error"), (safe_text(rec.error.message), "serve--error")))
    arrived = x.arrived
    if arrived:
        ids = " ".join(rid(s) for s in arrived[:8]) + (f" … +{len(arrived) - 8}" if len(arrived) > 8 else "")
        out.append(((f"→ arrived {len(arrived)}: ", dim), (ids, "")))
    for r in rec.admitted:
        if r.outcome is Outcome.OK:
            out.append((("+ admitted  ", "serve--ok"), (f"{rid(r.seq_id):<{ID_W}} ", ""),
                        (f"{r.hit_tokens:>6,} cached tok", ""),
                        (f"  ({r.hit_blocks:,} of {r.prompt_blocks:,} blk)", dim)))
        else:
            out.append((("! rejected  ", "serve--warn"), (f"{rid(r.seq_id):<{ID_W}} ", ""),
                        (safe_text(r.message), dim)))
    for seq_id, cached in x.resumed:
        out.append((("↻ resumed   ", "serve--warn"), (f"{rid(seq_id):<{ID_W}} ", ""),
                    (f"{cached:>6,} cached tok", ""), ("  recomputes the rest", dim)))
    held = {s.seq_id: s.block_ids for s in prev.seqs} if prev is not None else {}
    for seq_id in x.preempted:
        blocks = held.get(seq_id)
        if blocks is None:
            what = [("blocks freed, will recompute", "")]
        else:  # vLLM frees them all; one that another sequence held only loses a ref
            others = {b for s in prev.seqs if s.seq_id != seq_id for b in s.block_ids}
            kept = len(set(blocks) & others)
            what = [(f"{len(blocks)} blk freed", ""), (f" ({kept} still shared)" if kept else "", dim)]
        out.append((("✗ preempted ", "serve--preempted"), (f"{rid(seq_id):<{ID_W}} ", ""), *what))
    for r in x.finished_results:
        cls = "serve--ok" if r.outcome is Outcome.OK else "serve--warn"
        out.append((("✓ finished  ", cls), (f"{rid(r.seq_id):<{ID_W}} ", ""),
                    (f"{r.output_tokens:>6,} out tok", ""),
                    (f"  {r.hit_tokens:,} cached" + ("" if r.outcome is Outcome.OK else f", {r.outcome.value}"), dim)))
        # Its serve figures on the simulated clock (the --json row's queue_wait_s, ...).
        out.append(((" " * (13 + ID_W), ""), (describe_finish(r), dim)))
    if len(out) == first:
        out.append((("  no arrival, admission, preemption or finish", dim),))
    # -- running ------------------------------------------------------------------------
    out.append(((f"running {len(x.running):,}", "serve--title"),
                (" · vLLM's order · ▸ preempted first", dim)))
    seqs = {s.seq_id: s for s in rec.seqs}
    last = len(x.running) - 1
    for k, seq_id in enumerate(x.running):
        s = seqs.get(seq_id)
        mark = ("▸ ", "serve--warn") if k == last and k > 0 else ("  ", "")
        pieces: list[Piece] = [mark, (f"{rid(seq_id):<{ID_W}} ", "")]
        if s is not None:
            if s.num_tokens < s.num_prompt_tokens:
                where = f"prefill {s.num_tokens:,}/{s.num_prompt_tokens:,}"
            else:
                where = f"decode +{s.num_tokens - s.num_prompt_tokens:,}"
            pieces += [(f"{where:<16}", ""), (f"{len(s.block_ids):>4} blk ", ""),
                       (f"{s.num_hit_tokens:>6,} cached", dim)]
        out.append(tuple(pieces))
    # -- waiting ------------------------------------------------------------------------
    out.append(((f"waiting {len(x.waiting):,}", "serve--title"), (" · head first", dim)))
    now = set(x.preempted)
    for seq_id in x.waiting[:MAX_WAITING]:
        pieces = [(f"  {rid(seq_id):<{ID_W}} ", "")]
        if seq_id in now:
            pieces.append(("preempted now", "serve--preempted"))
        else:
            steps = preempted_at.get(seq_id)
            k = bisect_right(steps, rec.index) if steps else 0
            if k:
                pieces.append((f"preempted at step {steps[k - 1] + 1:,}", "serve--warn"))
        out.append(tuple(pieces))
    if len(x.waiting) > MAX_WAITING:
        out.append(((f"  … {len(x.waiting) - MAX_WAITING:,} more waiting", dim),))
    return out


def preempted_index(records: Sequence[StepRecord], into: dict[str, list[int]]) -> None:
    """Add ``records``' preemptions to ``into`` (seq id -> steps, ascending)."""
    for rec in records:
        for seq_id in (rec.serve.preempted if rec.serve is not None else ()):
            into.setdefault(seq_id, []).append(rec.index)
