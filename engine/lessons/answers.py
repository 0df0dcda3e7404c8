"""What a lesson's question can ask, read off vLLM's records: never the lesson's own word.

Each answer is a whole number taken from the step records the replay made (vLLM's return
values and events): the lesson file only names which one and what its author expects, and
the app (and the tests) check that against the record. ``at`` is the 0-based record index
the question is about; ``request`` a trace request id where a step has several (serve).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from engine.model import BlockState, RequestResult, SeqView, StepRecord


class AnswerError(ValueError):
    """The record has no such figure (no request at that step, no such request...)."""


class Where(NamedTuple):
    """Which figure of a step: the request (where a step has several) and the KV cache
    group (models with several, --hf-config)."""

    request: str | None = None
    group: int | None = None


def _row(rec: StepRecord, request: str | None) -> RequestResult:
    if request is None:
        if len(rec.admitted) != 1:
            raise AnswerError(f"step {rec.index + 1} admits {len(rec.admitted)} requests: "
                              "name one with request = \"ID\"")
        return rec.admitted[0]
    for row in rec.admitted:
        if row.request_id == request:
            return row
    raise AnswerError(f"request {request!r} is not admitted at step {rec.index + 1}")


def _seq(rec: StepRecord, request: str | None) -> SeqView:
    if request is None:
        if len(rec.seqs) != 1:
            raise AnswerError(f"step {rec.index + 1} has {len(rec.seqs)} live sequences: "
                              "name one with request = \"ID\"")
        return rec.seqs[0]
    for seq in rec.seqs:
        if seq.request_id == request:
            return seq
    raise AnswerError(f"request {request!r} holds no blocks at step {rec.index + 1}")


def _recomputed_block(records: Sequence[StepRecord], at: int, where: Where) -> int:
    seq = _seq(records[at], where.request)
    for bid, state in zip(seq.block_ids, seq.states):
        if state is BlockState.RECOMPUTED:
            return bid
    raise AnswerError(f"no recomputed (R) block at step {at + 1}")


def _next_block(records: Sequence[StepRecord], at: int, where: Where) -> int:
    # The head of vLLM's free queue after the step before: the block it hands out next.
    before = records[at - 1] if at > 0 else None
    if before is None or not before.free_head:
        raise AnswerError(f"no free queue recorded before step {at + 1}")
    return before.free_head[0]


def _shared_blocks(records: Sequence[StepRecord], at: int, where: Where) -> int:
    rec = records[at]
    seq = _seq(rec, where.request)
    others = {bid for s in rec.seqs if s.seq_id != seq.seq_id for bid in s.block_ids}
    return sum(1 for bid in seq.block_ids if bid in others)


def _resumed_hit_tokens(records: Sequence[StepRecord], at: int, where: Where) -> int:
    rec = records[at]
    if rec.serve is None:
        raise AnswerError(f"step {at + 1} is not a scheduler iteration (serve mode)")
    names = {s.seq_id: s.request_id for s in rec.seqs}  # vLLM's seq id -> the trace's id
    for r in rec.serve.resumed:
        if where.request is None or names.get(r.seq_id) == where.request:
            return r.hit_tokens
    raise AnswerError(f"no preempted request resumed at step {at + 1}")


def _preempted(records: Sequence[StepRecord], at: int, where: Where) -> int:
    rec = records[at]
    if rec.serve is None:
        raise AnswerError(f"step {at + 1} is not a scheduler iteration (serve mode)")
    return len(rec.serve.preempted)


def _cpu_hit_blocks(records: Sequence[StepRecord], at: int, where: Where) -> int:
    row = _row(records[at], where.request)
    if row.reasons is None or row.reasons.cpu_hit is None:
        raise AnswerError(f"step {at + 1}: no CPU offloading tier (a lesson's "
                          "num_cpu_blocks, serve mode)")
    return row.reasons.cpu_hit


def _field(name: str) -> Callable[[Sequence[StepRecord], int, Where], int]:
    def read(records: Sequence[StepRecord], at: int, where: Where) -> int:
        return int(getattr(_row(records[at], where.request), name))
    return read


def _group_field(name: str) -> Callable[[Sequence[StepRecord], int, Where], int]:
    def read(records: Sequence[StepRecord], at: int, where: Where) -> int:
        row = _row(records[at], where.request)
        if where.group is None:
            raise AnswerError(f"{name}: name the KV cache group with group = N")
        if not row.groups:
            raise AnswerError(f"step {at + 1}: one KV cache group only (a lesson's "
                              "hf_config gives several)")
        if not 0 <= where.group < len(row.groups):
            raise AnswerError(f"no KV cache group {where.group} (have 0..{len(row.groups) - 1})")
        return int(getattr(row.groups[where.group], name))
    return read


@dataclass(frozen=True)
class Answer:
    name: str
    meaning: str  # for the lesson format's documentation and error messages
    read: Callable[[Sequence[StepRecord], int, Where], int]
    needs_group: bool = False


ANSWERS: dict[str, Answer] = {a.name: a for a in (
    Answer("hit_blocks", "prompt blocks of the request that were prefix-cache hits "
           "(vLLM's get_computed_blocks)", _field("hit_blocks")),
    Answer("hit_tokens", "prompt tokens vLLM counted as hits", _field("hit_tokens")),
    Answer("new_blocks", "prompt blocks vLLM newly allocated (allocate_slots)",
           _field("new_blocks")),
    Answer("prompt_blocks", "the prompt's blocks, ceil(tokens / block size)",
           _field("prompt_blocks")),
    Answer("evicted_blocks", "cached blocks evicted by the request's allocations (vLLM's "
           "BlockRemoved events)", _field("evicted_blocks")),
    Answer("evicted", "cached blocks vLLM evicted during the step",
           lambda records, at, where: len(records[at].evicted)),
    Answer("cached_free", "blocks in vLLM's free queue that still hold a hash after the step",
           lambda records, at, where: records[at].num_cached_free),
    Answer("next_block", "the block id at the head of vLLM's free queue before the step: "
           "the next one it hands out", _next_block),
    Answer("recomputed_block", "the block id of the recomputed (R) last prompt block",
           _recomputed_block),
    Answer("shared_blocks", "blocks of the request's table another live sequence also holds",
           _shared_blocks),
    Answer("preempted", "requests vLLM's scheduler preempted in the iteration", _preempted),
    Answer("resumed_hit_tokens", "prefix-cache hit tokens of a preempted request re-admitted "
           "in the iteration", _resumed_hit_tokens),
    Answer("cpu_hit_blocks", "prompt blocks of the request the GPU prefix cache missed and "
           "vLLM loaded from its CPU offloading tier (its num_external_cached_tokens)",
           _cpu_hit_blocks),
    Answer("group_hit_blocks", "cached blocks vLLM's lookup handed back in KV cache group "
           "`group`", _group_field("hit_blocks"), True),
    Answer("group_skipped_blocks", "places of the prompt vLLM filled with its null block in "
           "KV cache group `group` (outside a sliding window)", _group_field("skipped_blocks"), True),
    Answer("group_new_blocks", "blocks allocate_slots handed out for the prompt in KV cache "
           "group `group`", _group_field("new_blocks"), True),
)}


def answer_of(name: str, records: Sequence[StepRecord], at: int, request: str | None = None,
              group: int | None = None) -> int:
    """The record's figure ``name`` at record index ``at``; AnswerError when it has none."""
    if not 0 <= at < len(records):
        raise AnswerError(f"the replay has {len(records)} steps, no step {at + 1}")
    return ANSWERS[name].read(records, at, Where(request, group))
