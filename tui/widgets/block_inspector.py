"""The block inspector: one physical block's hash, ref count, tokens and history.

``scan_block`` walks the step records up to the cursor and runs in a thread worker (a
100k-step history takes a moment); it reads only immutable records, returns plain data,
and the app posts the result back as a BlockReport message. The widget just prints it.

Serve mode (``request_of`` given): a sequence holds a block over many iterations, so a use
is counted when a sequence takes the block, not at every step it still holds it, and the
holder's tokens come from its trace request (a step is not one request there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.model import BlockState, EvictorEntry, SeqView, Slot, StepRecord, slot_status
from engine.replay.common import FREE_HEAD_LEN, synth_output_tokens
from engine.model import TraceRequest
from tui.widgets import palette
from tui.widgets.block_tier import HashHome, hash_home, home_line
from tui.widgets.safe import safe_text

MAX_USES = 200  # the newest uses listed; the count covers all


@dataclass(frozen=True, slots=True)
class BlockReport:
    block_id: int
    step: int  # the cursor (0-based) the scan ran up to
    slot: Slot
    status: str
    state: BlockState | None  # its state in the current request's block table, if there
    holder: str | None = None  # request whose tokens are shown
    holder_step: int | None = None
    position: int | None = None  # logical block index in that request
    token_ids: tuple[int, ...] = ()
    first_token: int = 0  # index of token_ids[0] in the holder's prompt + output
    text: str | None = None  # decoded tokens (text traces only)
    uses: tuple[tuple[int, str, str], ...] = ()  # (step, request id, state letter), newest last
    num_uses: int = 0
    cached: tuple[int, ...] = ()  # steps at which it got a hash (vLLM cached it)
    reused: tuple[int, ...] = ()  # steps at which it was a prefix-cache hit
    evicted: tuple[int, ...] = ()  # steps at which it lost its hash to an eviction
    queue_rank: int | None = None  # 1-based: handed out n-th from the free queue's head
    # vLLM V0 records: its entry in V0's LRU evictor (last access, hashed tokens), its
    # place in the evictor's order and the evictor's size; the hash V0 was evicting from
    # this block when it raised at this step.
    evictor: EvictorEntry | None = None
    evictor_rank: int | None = None
    evictor_size: int = 0
    error_hash: bytes | None = None
    home: HashHome | None = None  # with vLLM's CPU tier: where its hash lives
    cancelled: bool = field(default=False)


def status_text(block_id: int, slot: Slot, null_block_id: int | None = 0) -> str:
    status = slot_status(block_id, slot, null_block_id)
    cls = palette.pool_class(status, slot[0])
    if cls in (palette.POOL_USED, palette.POOL_USED_MANY):
        return f"in use, ref count {slot[0]}"
    return palette.POOL_LABEL[cls]


def scan_block(
    records: Sequence[StepRecord],
    upto: int,
    block_id: int,
    slot: Slot,
    block_size: int,
    *,
    decode: Callable[[Sequence[int]], str] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    null_block_id: int | None = 0,
    request_of: Callable[[SeqView], TraceRequest | None] | None = None,
) -> BlockReport:
    """Everything the records say about ``block_id`` in steps [0, upto]. ``request_of``:
    serve mode, the trace request of a running sequence."""
    uses: list[tuple[int, str, str]] = []
    num_uses = 0
    cached: list[int] = []
    reused: list[int] = []
    evicted: list[int] = []
    last: tuple[StepRecord, int] | None = None  # newest record holding it, and its position
    last_seq: SeqView | None = None
    current_state = None
    serve = request_of is not None
    holders: set[str] = set()  # serve: sequences holding it at the step before
    for i in range(min(upto, len(records) - 1) + 1):
        if i % 2048 == 0 and cancelled():
            return BlockReport(block_id, upto, slot, status_text(block_id, slot, null_block_id),
                               None, cancelled=True)
        rec = records[i]
        d = rec.pool_delta
        if block_id in d.block_ids:  # a C-level scan: this walks every step so far
            k = d.block_ids.index(block_id)
            if d.hash_after[k] is not None and d.hash_after[k] != d.hash_before[k]:
                cached.append(i)
        if block_id in rec.evicted.column("block_id"):
            evicted.append(i)
        now: set[str] = set()
        for seq in rec.seqs:
            if block_id in seq.block_ids:
                pos = seq.block_ids.index(block_id)
                state = seq.states[pos]
                last, last_seq = (rec, pos), seq
                if i == upto:
                    current_state = state
                if serve:
                    now.add(seq.seq_id)
                    if seq.seq_id in holders and not state.is_hit:
                        continue  # still held: the same use
                num_uses += 1
                uses.append((i, seq.request_id, state.letter))
                if len(uses) > MAX_USES:
                    del uses[0]
                if state.is_hit:
                    reused.append(i)
        holders = now
    report = BlockReport(
        block_id, upto, slot, status_text(block_id, slot, null_block_id), current_state,
        uses=tuple(uses), num_uses=num_uses, cached=tuple(cached), reused=tuple(reused),
        evicted=tuple(evicted), **_queue_place(records, upto, block_id),
        home=hash_home(records, upto, block_id, slot),
    )
    if last is None:
        return report
    rec, pos = last
    if serve:
        req = request_of(last_seq)
        if req is None:
            return report
        # The tokens whose KV vLLM has computed, prompt then output.
        tokens = (req.prompt_token_ids + synth_output_tokens(req))[: last_seq.num_tokens]
    else:
        result = rec.request
        req = result.request if result is not None else None
        if req is None:
            return report
        tokens = req.prompt_token_ids + synth_output_tokens(req)[: result.output_tokens]
    ids = tuple(tokens[pos * block_size : (pos + 1) * block_size])
    text = decode(ids) if (decode is not None and req.text is not None) else None
    return replace(
        report, holder=req.request_id, holder_step=rec.index, position=pos, token_ids=ids,
        first_token=pos * block_size, text=text,
    )


def _queue_place(records: Sequence[StepRecord], upto: int, block_id: int) -> dict:
    """Where the block stands in the free queue at step ``upto`` (the records keep its
    head), and on V0 in the evictor and in the error V0 raised there."""
    if not records:
        return {}
    rec = records[min(upto, len(records) - 1)]
    out: dict = {}
    if block_id in rec.free_head:
        out["queue_rank"] = rec.free_head.index(block_id) + 1
    v0 = rec.v0
    if v0 is None:
        return out
    out["evictor_size"] = v0.num_evictor
    for rank, entry in enumerate(v0.evictor, 1):
        if entry.block_id == block_id:
            out["evictor"], out["evictor_rank"] = entry, rank
            break
    if rec.error is not None and v0.error_block == block_id:
        out["error_hash"] = v0.error_hash
    return out


def _steps(verb: str, steps: tuple[int, ...], limit: int = 10) -> str:
    """ "reused at steps 2, 3 (2 times)", "never evicted" (1-based step numbers)."""
    if not steps:
        return f"never {verb}"
    shown = ", ".join(str(s + 1) for s in steps[-limit:])
    if len(steps) > limit:
        shown = "… " + shown
    many = len(steps) > 1
    return f"{verb} at step{'s' * many} {shown}" + (f" ({len(steps)} times)" if many else "")


class BlockInspector(VerticalScroll):
    COMPONENT_CLASSES = palette.COMPONENT_CLASSES | {"inspector--dim", "inspector--title"}

    def __init__(self, hint: str, state_label: str = "in this request: ", **kw) -> None:
        """``hint``: how to pick a block in this view; ``state_label``: whose block-table
        state the report shows (the request's, or its latest live holder's)."""
        super().__init__(**kw)
        self.hint = hint
        self.state_label = state_label
        self.report: BlockReport | None = None
        self.pending: int | None = None
        self._palette = palette.Palette(self)

    def compose(self) -> ComposeResult:
        yield Static(self._hint(), id="inspector-body")

    def _hint(self) -> Text:
        return Text(self.hint, style="dim")

    def _body(self) -> Static:
        return self.query_one("#inspector-body", Static)

    def show_pending(self, block_id: int, step: int) -> None:
        self.pending = block_id
        if self.report is None or self.report.block_id != block_id:
            self._body().update(Text(f"block {block_id}: scanning steps 1–{step + 1}…", style="dim"))

    def show(self, report: BlockReport) -> None:
        self.report = report
        self.pending = None
        self._body().update(self.render_report(report))

    def clear(self) -> None:
        self.report = None
        self.pending = None
        self._body().update(self._hint())

    def render_report(self, r: BlockReport) -> Text:
        dim = self.get_component_rich_style("inspector--dim")
        title = self.get_component_rich_style("inspector--title")
        out = Text()
        out.append(f"block {r.block_id}", title)
        out.append(f"  {r.status}\n")
        h = r.slot[1]
        out.append("hash ", dim)
        out.append(f"{h.hex()}\n" if h is not None else "none (not cached)\n")
        if r.home is not None:
            out.append("lives in ", dim)
            out.append(home_line(r.home, r.slot[0] > 0) + "\n")
        if r.state is not None:
            out.append(self.state_label, dim)
            out.append(f" {r.state.letter} ", self._palette[palette.STATE_CLASS[r.state]])
            out.append(f" {palette.STATE_LABEL[r.state]}, logical block {r.position}\n")
        if r.holder is not None and r.position is not None:
            out.append("tokens ", dim)
            end = r.first_token + len(r.token_ids)
            out.append(f"{r.first_token}–{end - 1} (block {r.position} of request ")
            out.append(safe_text(r.holder))
            out.append(f", step {r.holder_step + 1})\n" if r.holder_step is not None else ")\n")
            out.append(" ".join(str(t) for t in r.token_ids) + "\n")
            if r.text is not None:
                out.append("text ", dim)
                out.append(repr_text(r.text) + "\n")
        self._render_queue(out, r, dim)
        out.append(f"up to step {r.step + 1}: ", dim)
        out.append(" · ".join((_steps("cached", r.cached), _steps("reused", r.reused),
                               _steps("evicted", r.evicted))) + "\n")
        out.append(f"used by {r.num_uses} request(s)", dim)
        if r.uses:
            out.append(":\n")
            for step, rid, letter in reversed(r.uses[-20:]):
                out.append(f"  step {step + 1}  {letter}  ")
                out.append(safe_text(rid) + "\n")
            if r.num_uses > 20:
                out.append(f"  … {r.num_uses - 20} earlier\n", dim)
        return out


    def _render_queue(self, out: Text, r: BlockReport, dim) -> None:  # noqa: ANN001 - a Style
        """Its place in the free queue; on V0 its evictor entry and the error there."""
        if r.error_hash is not None:
            out.append("V0 raised evicting this block: ", self._palette[palette.POOL_EVICTED])
            out.append(f"its evictor handed back hash {r.error_hash.hex()}")
            own = r.slot[1]
            if own is not None and own != r.error_hash:
                out.append(" — not the hash this block holds (a stale evictor entry)")
            out.append(" (press e for the traceback)\n", dim)
        if r.queue_rank is not None:
            out.append("free queue ", dim)
            out.append(f"handed out {_nth(r.queue_rank)} from the head\n")
        e = r.evictor
        if e is not None:
            out.append("V0 evictor ", dim)
            seen = "never given (-1)" if e.last_accessed < 0 else f"{e.last_accessed:g}"
            out.append(f"evicted {_nth(r.evictor_rank or 0)} of {r.evictor_size:,} · last "
                       f"access {seen} · {e.num_hashed_tokens:,} hashed tokens")
            out.append(" · stale entry: evicting it raises\n" if e.stale else "\n")
        elif r.evictor_size and r.slot[0] == 0 and r.slot[1] is not None:
            out.append("V0 evictor ", dim)
            out.append(f"in the evictor, past the first {FREE_HEAD_LEN} entries a step records\n")


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def repr_text(s: str) -> str:
    """Decoded tokens shown between quotes, with newlines and controls made visible."""
    return "“" + safe_text(s) + "”"
