"""The current request: who it is, its tokens, and the sentence saying what vLLM did.

Everything that comes from the trace (id, conversation) goes through safe_text and into
rich.text.Text pieces; nothing here is ever parsed as markup.

In serve mode a step is a scheduler iteration, not a request: the panel says what the
iteration did (queue sizes, arrivals, admissions, preemptions, finishes), and the serve
pane lists the requests.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.model import Outcome, StepRecord, TemplateBreak
from tui.widgets.reasons_text import reasons_line
from tui.widgets.safe import safe_text

OUTCOME_CLASS = {
    Outcome.OK: "request--ok",
    Outcome.TRUNCATED: "request--warn",
    Outcome.NOT_FITTED: "request--warn",
    Outcome.TOO_LONG: "request--warn",
    Outcome.ERROR: "request--error",
}


def token_summary(rec: StepRecord, block_size: int, short: bool = False) -> str:
    """Prompt / hit / output token counts of a step's request: the block table's title.
    Numbers only, so it is safe to use as a border title."""
    r = rec.request
    if r is None:
        return ""
    seq = rec.seqs[0] if rec.seqs else None
    out_blocks = (len(seq.block_ids) - seq.num_prompt_blocks) if seq else 0
    out_tokens = r.output_tokens if seq else r.request.num_output_tokens
    if short:
        text = f"{r.prompt_tokens:,} tok ({r.prompt_blocks:,} blk) · {r.hit_tokens:,} hit · {out_tokens:,} out"
        return text + (f" (+{out_blocks} blk)" if seq else "")
    text = (
        f"prompt {r.prompt_tokens:,} tok = {r.prompt_blocks:,} blocks of {block_size} · "
        f"hit {r.hit_tokens:,} tok · output {out_tokens:,} tok"
    )
    if seq:
        text += f" → {out_blocks} block{'s' * (out_blocks != 1)}"
    return text


def template_break_line(brk: TemplateBreak, dim, width: int) -> Text:  # noqa: ANN001 - a rich Style
    """One line: where this prompt leaves the previous turn's prompt + reply (decoded trace
    text: through safe_text, never markup)."""
    line = Text.assemble(
        ("chat template: ", dim),
        f"leaves the previous turn at token {brk.position:,} of {brk.previous_tokens:,} · ",
        ("…", dim), safe_text(brk.before), ("▏was ", dim), safe_text(brk.expected_text or "(end)"),
        (" ▏now ", dim), safe_text(brk.found_text or "(end)"),
    )
    line.truncate(max(1, width), overflow="ellipsis")
    return line


class RequestPanel(Widget):
    COMPONENT_CLASSES = {
        "request--id", "request--dim", "request--ok", "request--warn", "request--error",
    }

    def __init__(self, block_size: int, **kw) -> None:
        super().__init__(**kw)
        self.block_size = block_size
        self.record: StepRecord | None = None
        self.message = ""  # shown when there is no record yet (loading, failures)

    def show(self, record: StepRecord | None, message: str = "") -> None:
        self.record = record
        self.message = message
        self.refresh()  # fixed height (app.tcss): no relayout of the screen per step

    def render(self) -> Text:
        rec = self.record
        dim = self.get_component_rich_style("request--dim")
        if rec is not None and rec.serve is not None:  # a scheduler iteration
            return self._render_serve(rec, dim)
        if rec is None or rec.request is None:
            # Line by line: safe_text shows a newline as a visible mark.
            return Text("\n").join(Text(safe_text(line), style=dim)
                                   for line in self.message.split("\n"))
        r = rec.request
        req = r.request
        sep = (" · ", dim)
        head = Text.assemble(
            ("request ", dim),
            (safe_text(req.request_id), self.get_component_rich_style("request--id")),
            sep,
            (f"arrives {rec.clock:.3f} s", ""),
        )
        if req.conversation_id is not None or req.turn is not None:
            conv = safe_text(req.conversation_id) if req.conversation_id is not None else "?"
            turn = f", turn {req.turn}" if req.turn is not None else ""
            head.append_text(Text.assemble(sep, f"conversation {conv}{turn}"))
        head.append_text(Text.assemble(sep, (f"trace line {req.line}", dim)))
        head.truncate(max(1, self.content_size.width), overflow="ellipsis")  # one line
        note = Text(safe_text(rec.note), style=self.get_component_rich_style(OUTCOME_CLASS[r.outcome]))
        if rec.error is not None:
            note.append("  (press e for vLLM's traceback)", style=dim)
        elif r.outcome in (Outcome.NOT_FITTED, Outcome.TOO_LONG):
            note.append("  (press e for details)", style=dim)
        lines = [head, note]
        if req.template_break is not None:
            lines.append(template_break_line(req.template_break, dim, self.content_size.width))
        if r.reasons is not None:
            lines.append(Text(reasons_line(r.reasons), style=dim))
        return Text("\n").join(lines)

    def _render_serve(self, rec: StepRecord, dim) -> Text:  # noqa: ANN001 - a rich Style
        x = rec.serve
        assert x is not None, "serve-mode records carry a ServePart"
        sep = (" · ", dim)
        head = Text.assemble(
            ("iteration ", dim),
            (f"{x.iteration:,}", self.get_component_rich_style("request--id")),
            sep, f"clock {rec.clock:.3f} s",
            sep, f"{len(x.running):,} running", sep, f"{len(x.waiting):,} waiting",
        )
        counts = (("arrived", len(x.arrived)), ("admitted", len(rec.admitted)),
                  ("resumed", len(x.resumed)), ("preempted", len(x.preempted)),
                  ("finished", len(rec.finished)))
        for label, n in counts:
            if n:
                head.append_text(Text.assemble(sep, f"{n} {label}"))
        head.truncate(max(1, self.content_size.width), overflow="ellipsis")  # one line
        if rec.error is not None:
            cls = "request--error"
        elif x.preempted or any(r.outcome is not Outcome.OK for r in rec.admitted):
            cls = "request--warn"
        else:
            cls = "request--ok"
        note = Text(safe_text(rec.note or "nothing scheduled"), style=self.get_component_rich_style(cls))
        if rec.error is not None:
            note.append("  (press e for vLLM's traceback)", style=dim)
        lines = [head, note]
        why = [r for r in rec.admitted if r.reasons is not None]
        if why:  # the first request admitted in this iteration
            more = f" (+{len(why) - 1} more admitted)" if len(why) > 1 else ""
            lines.append(Text(f"{safe_text(why[0].request_id)}: "
                              f"{reasons_line(why[0].reasons)}{more}", style=dim))
        return Text("\n").join(lines)
