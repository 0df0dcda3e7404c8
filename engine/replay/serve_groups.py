"""Serve mode's figures per KV cache group (a model with several groups, --hf-config).

The same figures the sequential replay puts in RequestResult.groups (engine.layout_metrics),
taken from vLLM's scheduler instead of calls made by hand:

- hit and null blocks: what the request's admitted prefix lookup handed back in each group,
  real cached blocks and places filled with vLLM's null block. The lookup is vLLM's
  ``get_computed_blocks`` inside ``schedule()``, observed by the adapter
  (SchedInternals.observe_lookups); a request that did not fit is looked up again, and the
  last lookup before its admission is the one that counts.
- new blocks: the blocks vLLM handed out for the prompt in each group. The admission's
  block table (the scheduler output's NewRequestData) holds the lookup's places and then
  the first chunk's new blocks; with chunked prefill each later chunk's come in the
  scheduler output's new block ids, until every prompt token has been scheduled. A request
  preempted before that keeps what it had (its recompute is not its admission).

So with a prompt prefilled in one chunk the figures are the sequential replay's exactly,
and RequestResult.new_blocks is, as there, the sum over every group.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from engine.layout_metrics import add_new_blocks
from engine.model import GroupHit, RequestResult, Totals, TraceRequest

if TYPE_CHECKING:
    from engine.backends.vllm_v1.scheduler import Admission, Iteration, Scheduled
    from engine.replay.serve_tables import _Live

GroupCounts = tuple[tuple[int, int], ...]  # per group: (real cached blocks, null places)


class PromptGroups:
    """Per-group hits of each admitted lookup, and the prompt's new blocks per group."""

    def __init__(self, null_block_id: int) -> None:
        self._null = null_block_id
        self._lookups: dict[str, GroupCounts] = {}  # the latest lookup of each waiting request
        self._left: dict[str, int] = {}  # admitted, prompt not all scheduled: tokens left

    def _real(self, block_ids) -> int:
        null = self._null
        return sum(1 for b in block_ids if b != null)

    def admitted(self, a: Admission, req: TraceRequest, s: Scheduled) -> tuple[GroupHit, ...]:
        """A request's groups at its admission (``()``: a resumed request, or none seen)."""
        counts = self._lookups.pop(a.seq_id, None)
        if a.resumed or counts is None:
            return ()
        left = req.num_prompt_tokens - a.num_cached_tokens - s.num_scheduled_tokens.get(a.seq_id, 0)
        if left > 0:
            self._left[a.seq_id] = left
        # The table's first places are the lookup's (a sliding window may have swapped
        # some for the null block since); the allocation's new blocks follow them.
        tables = a.block_ids
        return tuple(GroupHit(real, null, self._real(tables[g][real + null:] if g < len(tables)
                                                     else ()))
                     for g, (real, null) in enumerate(counts))

    def step(self, it: Iteration, live: dict[str, _Live], totals: Totals) -> Totals:
        """Take an iteration's lookups, and add the blocks its schedule handed to prompts
        still prefilling (admitted earlier) to their rows and to ``totals``. Call before
        this iteration's admissions."""
        self._lookups.update(it.group_lookups)
        s = it.scheduled
        if s is None or not self._left:
            return totals
        for seq_id in s.preempted:
            self._left.pop(seq_id, None)
        for seq_id, n in s.num_scheduled_tokens.items():
            left = self._left.get(seq_id)
            if left is None:
                continue
            if left - n > 0:
                self._left[seq_id] = left - n
            else:
                del self._left[seq_id]
            added = tuple(self._real(ids) for ids in s.new_block_ids.get(seq_id, ()))
            one = live[seq_id]
            if not any(added) or one.result is None:
                continue
            one.result = grown(one.result, added)
            totals = add_new_blocks(totals, added)
        return totals


def grown(r: RequestResult, added: tuple[int, ...]) -> RequestResult:
    """A row with a later prefill chunk's new blocks per group added."""
    groups = tuple(g._replace(new_blocks=g.new_blocks + (added[i] if i < len(added) else 0))
                   for i, g in enumerate(r.groups))
    return replace(r, groups=groups, new_blocks=r.new_blocks + sum(added))
