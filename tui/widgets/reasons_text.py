"""A request's miss reasons and hit sources in one line, for the request pane.

Request ids come from the trace: the line is plain text for a rich ``Text`` (safe_text
applied), never markup."""

from __future__ import annotations

from engine.block_reasons import BlockReasons, MissReason
from tui.widgets.safe import safe_text

_WORDS = {
    MissReason.COLD: "cold",
    MissReason.EVICTED: "evicted",
    MissReason.PARTIAL: "partial",
    MissReason.LAST_TOKEN: "last token",
    MissReason.AFTER_MISS: "after a miss",
    MissReason.SALT: "other salt",
    MissReason.LORA: "other adapter",
    MissReason.CPU_HIT: "from the CPU tier",
}
NAMED = 2  # evictions and hit sources named before "…"


def reasons_line(why: BlockReasons) -> str:
    """"missed 3: 1 cold · 1 evicted (step 5, by r1) · 1 partial · hits: 2 from r0 (this
    conversation)"."""
    counts = why.counts()
    parts = []
    for m in MissReason:
        n = counts.get(m.value, 0)
        if not n:
            continue
        text = f"{n:,} {_WORDS[m]}"
        if m is MissReason.EVICTED and why.evicted_by:
            named = [f"step {e.step:,} by {safe_text(e.request_id)}"
                     for e in why.evicted_by[:NAMED]]
            more = "…" if len(why.evicted_by) > NAMED else ""
            text += f" ({', '.join(named)}{more})"
        parts.append(text)
    line = f"missed {why.missed:,}: " + " · ".join(parts) if parts else "missed none"
    if why.hit_sources:
        named = []
        for s in why.hit_sources[:NAMED]:
            who = safe_text(s.request_id) if s.request_id else "?"
            conv = " (this conversation)" if s.same_conversation else ""
            named.append(f"{s.blocks:,} from {who}{conv}")
        more = " …" if len(why.hit_sources) > NAMED else ""
        line += " · hits: " + " + ".join(named) + more
    return line
