"""vLLM's KV-cache events of the current step (BlockStored / BlockRemoved / AllBlocksCleared),
with short hex hashes and, where the step's records tell, the block id each hash sits in.
Runs of the same event (one BlockRemoved per evicted block, one chained BlockStored per
decode block) are told as one line, so a step's story fits the pane."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.model import KVEvent, StepRecord

MAX_HASHES = 6  # per event line; the rest is counted


def short(h: bytes | None) -> str:
    return h.hex()[:8] if h else "-"


def hash_to_block(rec: StepRecord) -> dict[bytes, int]:
    """Which block each hash of this step's events is (or was) in."""
    where: dict[bytes, int] = {}
    for bid, before, after in rec.pool_delta:
        if before[1] is not None:
            where.setdefault(before[1], bid)
        if after[1] is not None:
            where[after[1]] = bid
    for bid, h in rec.evicted:
        where[h] = bid
    return where


def event_line(ev: KVEvent, where: dict[bytes, int]) -> tuple[str, str]:
    """(kind, text) of one event: the text lists ``#block:hash`` items."""
    if ev.kind == "cleared":
        return "cleared", "all blocks cleared"
    items = []
    for h in ev.block_hashes[:MAX_HASHES]:
        bid = where.get(h)
        items.append(f"#{bid}:{short(h)}" if bid is not None else short(h))
    more = len(ev.block_hashes) - MAX_HASHES
    # The GPU pool's events name blocks; the CPU offloading tier's say their medium.
    tier = "CPU " if ev.medium == "CPU" else ""
    text = f"{tier}{ev.kind} {len(ev.block_hashes)}: " + " ".join(items)
    if more > 0:
        text += f" … +{more}"
    if ev.kind == "stored" and ev.parent_hash is not None:
        text += f"  (parent {short(ev.parent_hash)})"
    return ev.kind, text


def merged(events: tuple[KVEvent, ...]) -> list[KVEvent]:
    """Runs of events told as one: vLLM emits a BlockRemoved per evicted block, and a
    BlockStored per decode block, each chained to the one before (its parent is the
    previous event's last hash). A run keeps the first event's parent."""
    out: list[KVEvent] = []
    for ev in events:
        prev = out[-1] if out else None
        if prev is not None and prev.medium != ev.medium:  # GPU and CPU tier apart
            out.append(ev)
        elif prev is not None and prev.kind == ev.kind == "removed":
            out[-1] = KVEvent("removed", prev.block_hashes + ev.block_hashes,
                              medium=ev.medium)
        elif (prev is not None and prev.kind == ev.kind == "stored" and prev.block_hashes
              and ev.parent_hash == prev.block_hashes[-1]):
            out[-1] = KVEvent("stored", prev.block_hashes + ev.block_hashes, prev.parent_hash,
                              prev.num_tokens + ev.num_tokens, medium=ev.medium)
        else:
            out.append(ev)
    return out


class EventsPanel(Widget):
    COMPONENT_CLASSES = {"event--stored", "event--removed", "event--cleared", "event--dim"}

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.record: StepRecord | None = None

    def show(self, record: StepRecord | None) -> None:
        self.record = record
        self.refresh()  # fixed height (app.tcss): no relayout of the screen per step

    def lines(self) -> list[tuple[str, str]]:
        rec = self.record
        if rec is None:
            return []
        where = hash_to_block(rec)
        return [event_line(ev, where) for ev in merged(rec.events)]

    def render(self) -> Text:
        lines = self.lines()
        if not lines:
            return Text("no KV events at this step", style=self.get_component_rich_style("event--dim"))
        glyph = {"stored": "+ ", "removed": "- ", "cleared": "× "}
        out = Text()
        for i, (kind, text) in enumerate(lines):
            if i:
                out.append("\n")
            out.append(glyph[kind] + text, style=self.get_component_rich_style(f"event--{kind}"))
        return out
