"""Which cells a lesson step lights up, named by what they are, resolved from the record.

A lesson names cells by meaning ("the hits", "the block vLLM hands out next"), not by
block id: the ids are vLLM's choice, and the record says which they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.model import BlockState, Slot, StepRecord

_BY_LETTER = {state.letter: state for state in BlockState}
HIGHLIGHTS: dict[str, str] = {
    **{letter: f"cells of the step's block table(s) in state {letter} ({state.value})"
       for letter, state in _BY_LETTER.items() if letter != "="},
    "evicted": "blocks whose cached content vLLM evicted during the step",
    "next": "the block at the head of vLLM's free queue: the next one it hands out",
    "free_queue": "the first blocks of vLLM's free queue, in order",
    "cached_free": "free blocks that still hold a hash (evictor-resident)",
    "shared": "blocks more than one live sequence holds (ref count > 1)",
    "table": "every block of the step's block table(s)",
}


def highlighted(selectors: Sequence[str], rec: StepRecord, pool: Sequence[Slot]) -> frozenset[int]:
    """The block ids ``selectors`` name at ``rec``; ``pool`` is the pool after that step."""
    out: set[int] = set()
    for name in selectors:
        state = _BY_LETTER.get(name)
        if state is not None:
            out.update(bid for seq in rec.seqs for table in seq.tables
                       for bid, s in zip(table.block_ids, table.states) if s is state)
        elif name == "evicted":
            out.update(bid for bid, _h in rec.evicted)
        elif name == "next":
            out.update(rec.free_head[:1])
        elif name == "free_queue":
            out.update(rec.free_head)
        elif name == "cached_free":
            out.update(bid for bid, slot in enumerate(pool)
                       if slot.ref_cnt == 0 and slot.block_hash is not None)
        elif name == "shared":
            out.update(bid for bid, slot in enumerate(pool) if slot.ref_cnt > 1)
        elif name == "table":
            out.update(bid for seq in rec.seqs for table in seq.tables for bid in table.block_ids)
    return frozenset(out)
