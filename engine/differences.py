"""Per-request differences between two replays of one trace on two vLLM engines (compare
--engines v0,v1, or v1@0.10,v1: two vLLM releases), each with the reason for it. Read from both runs' rows as --json writes
them (engine.export.request_row); every number in a reason is one of the rows' own.

The reasons, first that applies:
- the outcome differs: the one that did not serve says why in its own message (V0's
  can_allocate watermark, max_model_len: V1 keeps a null block, V0 none; vLLM raised);
- a block-aligned prompt whose blocks were all cached: V0 reports the whole prompt as hit
  (its model runner recomputes the last token in place), V1 caps a hit at prompt length
  - 1 and recomputes the last block;
- otherwise the two caches held different blocks when the request came: the runs had
  evicted different blocks by then (each engine's eviction order: EVICTION_ORDER), or an
  earlier difference left different content cached.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import Outcome


@dataclass(frozen=True, slots=True)
class Row:
    """What a difference reads of one request row."""

    request_id: str
    outcome: Outcome
    prompt_tokens: int
    hit_tokens: int
    evicted_blocks: int
    message: str

    @classmethod
    def of(cls, row: dict) -> Row:
        return cls(str(row["request_id"]), Outcome(row["outcome"]), row["prompt_tokens"],
                   row["hit_tokens"], row["evicted_blocks"], row.get("message") or "")


# How each engine picks the block it evicts next, for the reasons (a label not here gets
# none): the one rule that makes two replays of one trace cache different blocks.
EVICTION_ORDER = {
    "v0": "v0 evicts the least recently used, deepest first",
    "v1": "v1 (0.33) reuses freed blocks without a hash first: block_pool.py:837-847",
    "v1@0.10": "v1@0.10 queues every freed block at the tail: block_pool.py:250-255",
}
NULL_BLOCK = {"v0": False, "v1": True, "v1@0.10": True}  # block 0 reserved


def _orders(la: str, lb: str) -> str:
    known = [EVICTION_ORDER[x] for x in (la, lb) if x in EVICTION_ORDER]
    return f" ({'; '.join(known)})" if known else ""


def _pools(la: str, lb: str) -> str:
    a, b = NULL_BLOCK.get(la), NULL_BLOCK.get(lb)
    if a is None or b is None or a == b:
        return "the eviction orders differ"
    keeps, lacks = (la, lb) if a else (lb, la)
    return (f"the pools differ ({keeps} keeps block 0 as its null block, {lacks} has none) "
            "and so do the eviction orders")


@dataclass(frozen=True, slots=True)
class RequestDifference:
    index: int  # position of the request in the trace
    a: Row
    b: Row
    reason: str

    @property
    def request_id(self) -> str:
        return self.a.request_id


def _outcome_reason(label: str, r: Row) -> str:
    if r.outcome is Outcome.ERROR:
        return f"{label}: vLLM raised ({r.message})"
    return f"{label}: {r.outcome.value} ({r.message})" if r.message else \
        f"{label}: {r.outcome.value}"


def _whole_hit(r: Row, block_size: int) -> bool:
    return r.prompt_tokens % block_size == 0 and r.hit_tokens == r.prompt_tokens


def _capped_hit(r: Row, block_size: int) -> bool:
    return r.prompt_tokens % block_size == 0 and r.hit_tokens == r.prompt_tokens - block_size


def request_differences(a_dicts: list[dict], b_dicts: list[dict], labels: tuple[str, str],
                        block_size: int) -> list[RequestDifference]:
    """Rows are matched by position (both replays see the trace in order); a run that
    stopped early has fewer rows, and only the requests both replayed are compared."""
    la, lb = labels
    a_rows = [Row.of(r) for r in a_dicts]
    b_rows = [Row.of(r) for r in b_dicts]
    out: list[RequestDifference] = []
    evicted_a = evicted_b = 0  # cached blocks each run had evicted before this request
    first: int | None = None
    for i, (a, b) in enumerate(zip(a_rows, b_rows)):
        reason = ""
        if a.outcome is not b.outcome:
            unserved = [(lab, r) for lab, r in ((la, a), (lb, b))
                        if r.outcome is not Outcome.OK]
            reason = "; ".join(_outcome_reason(lab, r) for lab, r in unserved)
        elif a.hit_tokens != b.hit_tokens:
            whole = [(lab, r) for lab, r in ((la, a), (lb, b)) if _whole_hit(r, block_size)]
            capped = [(lab, r) for lab, r in ((la, a), (lb, b)) if _capped_hit(r, block_size)]
            if len(whole) == 1 and len(capped) == 1:
                reason = (f"every block cached: {whole[0][0]} counts the whole prompt as hit "
                          f"(V0 recomputes the last token in place), {capped[0][0]} caps a hit "
                          "at prompt length - 1 and recomputes the last block (V1)")
            elif evicted_a != evicted_b:
                reason = (f"different blocks cached: {la} had evicted {evicted_a:,}, {lb} "
                          f"{evicted_b:,} cached blocks before it{_orders(la, lb)}")
            elif first is not None:
                reason = (f"different blocks cached since request {first} "
                          f"({out[0].request_id}): what each cached there differed")
            else:
                reason = "different blocks cached (same evictions so far)"
        elif a.evicted_blocks != b.evicted_blocks:
            reason = (f"evicted {a.evicted_blocks:,} ({la}) vs {b.evicted_blocks:,} ({lb}) "
                      f"cached blocks: {_pools(la, lb)}{_orders(la, lb)}")
        if reason:
            if first is None:
                first = i
            out.append(RequestDifference(i, a, b, reason))
        evicted_a += a.evicted_blocks
        evicted_b += b.evicted_blocks
    return out


def difference_dict(d: RequestDifference, labels: tuple[str, str]) -> dict:
    """One difference in compare --json."""
    la, lb = labels
    return {
        "index": d.index,
        "request_id": d.request_id,
        "prompt_tokens": d.a.prompt_tokens,
        f"{la}_outcome": d.a.outcome.value, f"{lb}_outcome": d.b.outcome.value,
        f"{la}_hit_tokens": d.a.hit_tokens, f"{lb}_hit_tokens": d.b.hit_tokens,
        f"{la}_evicted_blocks": d.a.evicted_blocks, f"{lb}_evicted_blocks": d.b.evicted_blocks,
        "reason": d.reason,
    }
