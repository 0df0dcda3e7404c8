"""Miss reasons and hit sources summed over a run's rows: the report's "Why blocks missed"
and "Where hits came from" sections and the --json ``reasons`` object. Counts only, from
each row's BlockReasons (engine.replay.miss_reasons made them from vLLM's hashes and
events)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.metrics import Figure, Unit, ratio
from engine.block_reasons import BlockReasons, MissReason
from engine.model import RequestResult

SEC_MISS = "Why prompt blocks missed (blocks)"
SEC_HITS = "Where hit blocks came from (blocks)"
SEC_TOP = "Prefixes that saved the most tokens (first computed by)"
TOP_PREFIXES = 10


@dataclass(slots=True)
class Prefix:
    """Hit blocks first computed by one request, summed over the requests that hit them."""

    request_id: str
    tokens_saved: int = 0
    requests: int = 0  # requests that hit at least one of its blocks
    blocks: int = 0  # the deepest of its blocks any request hit, plus one
    same_conversation: int = 0  # of the tokens saved, by later turns of its conversation


@dataclass
class ReasonTally:
    block_size: int
    # cpu_hit joins once a row has it (a CPU tier): a run without one never shows it.
    missed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (m.value for m in MissReason if m is not MissReason.CPU_HIT), 0))
    hit_same_conversation: int = 0
    hit_other_request: int = 0
    hit_unknown: int = 0
    rows: int = 0  # served rows that carried reasons
    prefixes: dict[str, Prefix] = field(default_factory=dict)

    def add(self, rows: tuple[RequestResult, ...] | list[RequestResult]) -> None:
        for r in rows:
            why = r.reasons
            if why is None or not r.outcome.served:
                continue
            self._add(why)

    def _add(self, why: BlockReasons) -> None:
        self.rows += 1
        for k, v in why.counts().items():
            self.missed[k] = self.missed.get(k, 0) + v
        bs = self.block_size
        for s in why.hit_sources:
            if not s.request_id:
                self.hit_unknown += s.blocks
                continue
            if s.same_conversation:
                self.hit_same_conversation += s.blocks
            else:
                self.hit_other_request += s.blocks
            p = self.prefixes.get(s.request_id)
            if p is None:
                p = self.prefixes[s.request_id] = Prefix(s.request_id)
            p.tokens_saved += s.blocks * bs
            p.requests += 1
            p.blocks = max(p.blocks, s.last_block + 1)
            if s.same_conversation:
                p.same_conversation += s.blocks * bs

    @property
    def total_missed(self) -> int:
        return sum(self.missed.values())

    def top(self, n: int = TOP_PREFIXES) -> list[Prefix]:
        return sorted(self.prefixes.values(),
                      key=lambda p: (-p.tokens_saved, p.request_id))[:n]

    def figures(self) -> list[Figure]:
        """The report's sections (empty when no row had reasons: caching off, V0)."""
        if not self.rows:
            return []
        total = self.total_missed
        out = [Figure(SEC_MISS, f"miss:{k}", _MISS_LABELS[k], v, Unit.COUNT,
                      share=ratio(v, total))
               for k, v in self.missed.items()]
        hits = self.hit_same_conversation + self.hit_other_request + self.hit_unknown
        out += [
            Figure(SEC_HITS, "hit:same_conversation", "an earlier turn of the conversation",
                   self.hit_same_conversation, Unit.COUNT,
                   share=ratio(self.hit_same_conversation, hits)),
            Figure(SEC_HITS, "hit:other_request", "another request (shared prefix)",
                   self.hit_other_request, Unit.COUNT,
                   share=ratio(self.hit_other_request, hits)),
        ]
        if self.hit_unknown:
            out.append(Figure(SEC_HITS, "hit:unknown", "not seen stored", self.hit_unknown,
                              Unit.COUNT, share=ratio(self.hit_unknown, hits)))
        saved = sum(p.tokens_saved for p in self.prefixes.values())
        for i, p in enumerate(self.top(), 1):
            out.append(Figure(
                SEC_TOP, f"prefix:{i}",
                f"{i}. request {p.request_id}: {p.blocks:,} block{'s' * (p.blocks != 1)}, reused by "
                f"{p.requests:,} request{'s' * (p.requests != 1)}",
                p.tokens_saved, Unit.COUNT, share=ratio(p.tokens_saved, saved)))
        return out

    def as_dict(self) -> dict:
        """The --json ``reasons`` object."""
        return {
            "miss_blocks": dict(self.missed),
            "hit_blocks": {
                "same_conversation": self.hit_same_conversation,
                "other_request": self.hit_other_request,
                "unknown": self.hit_unknown,
            },
            "top_prefixes": [
                {"request_id": p.request_id, "tokens_saved": p.tokens_saved,
                 "requests": p.requests, "blocks": p.blocks,
                 "same_conversation_tokens": p.same_conversation}
                for p in self.top()
            ],
        }


_MISS_LABELS = {
    "cold": "cold (prefix never cached before)",
    "evicted": "evicted (cached earlier)",
    "partial": "partial last block (never cacheable)",
    "last_token": "last token (vLLM recomputes it)",
    "after_miss": "after an earlier miss in the chain",
    "salt": "cached under another cache_salt",
    "lora": "cached under another LoRA adapter",
    "cpu_hit": "loaded from the CPU tier (a GPU prefix-cache miss)",
}


def reasons_row(why: BlockReasons | None) -> dict:
    """A request row's ``miss_blocks``, ``evicted_by`` and ``hit_sources`` (null when the
    run has no reasons)."""
    if why is None:
        return {"miss_blocks": None, "evicted_by": None, "hit_sources": None}
    return {
        "miss_blocks": why.counts(),
        "evicted_by": [{"step": e.step, "request_id": e.request_id, "blocks": e.blocks}
                       for e in why.evicted_by],
        "hit_sources": [{"request_id": s.request_id, "same_conversation": s.same_conversation,
                         "blocks": s.blocks, "first_block": s.first_block,
                         "last_block": s.last_block} for s in why.hit_sources],
    }
