"""Step records: immutable data that the TUI, the headless report, the JSON export and the
tests all read. A record never holds a vLLM object, so it is safe to hand to other threads.

The pool is recorded as deltas (block id, slot before, slot after) so a cursor can walk
backwards without re-running vLLM and without a copy of a 100k-block pool per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from engine.trace_types import TraceRequest

# One physical block as vLLM holds it: (ref_cnt, block hash or None).
Slot = tuple[int, "bytes | None"]
FREE_SLOT: Slot = (0, None)


class BlockState(str, Enum):
    """What happened to one logical block of a sequence at its admission step."""

    HIT_FREE = "hit_free"  # prefix-cache hit on a block sitting in the free queue
    HIT_SHARED = "hit_shared"  # prefix-cache hit on a block another sequence holds
    NEW = "new"  # newly allocated from a block with no cached content
    NEW_EVICTED = "new_evicted"  # newly allocated; vLLM evicted a cached block for it
    PARTIAL = "partial"  # the tail block, not full, so never cached
    RECOMPUTED = "recomputed"  # cached, but vLLM recomputes the last prompt token's block
    HELD = "held"  # serve mode: allocated at an earlier step, still held

    @property
    def letter(self) -> str:
        return _LETTERS[self]

    @property
    def is_hit(self) -> bool:
        return self in (BlockState.HIT_FREE, BlockState.HIT_SHARED)


_LETTERS = {
    BlockState.HIT_FREE: "H",
    BlockState.HIT_SHARED: "S",
    BlockState.NEW: "N",
    BlockState.NEW_EVICTED: "E",
    BlockState.PARTIAL: "P",
    BlockState.RECOMPUTED: "R",
    BlockState.HELD: "=",
}


class SlotStatus(str, Enum):
    """State of one physical block in the pool."""

    NULL = "null"  # vLLM's reserved null block (id 0), never allocated
    FREE = "free"  # in the free queue, no cached content
    CACHED_FREE = "cached_free"  # in the free queue with a hash: evictor-resident
    IN_USE = "in_use"  # ref_cnt > 0 (cached or not)


def slot_status(block_id: int, slot: Slot, null_block_id: int = 0) -> SlotStatus:
    if block_id == null_block_id:
        return SlotStatus.NULL
    ref_cnt, block_hash = slot
    if ref_cnt > 0:
        return SlotStatus.IN_USE
    return SlotStatus.CACHED_FREE if block_hash is not None else SlotStatus.FREE


class Outcome(str, Enum):
    OK = "ok"
    NOT_FITTED = "not_fitted"  # allocate_slots returned None: the pool cannot hold it
    TOO_LONG = "too_long"  # longer than max_model_len; vLLM would reject it on input
    TRUNCATED = "truncated"  # prefill fitted, but decode ran out of blocks
    ERROR = "error"  # vLLM raised; replay stops at this step


@dataclass(frozen=True, slots=True)
class SeqView:
    """One live sequence's block table at the end of a step."""

    seq_id: str  # the id vLLM knows (unique even when trace ids repeat)
    request_id: str  # the id from the trace (display)
    block_ids: tuple[int, ...]
    states: tuple[BlockState, ...]
    num_prompt_tokens: int
    num_tokens: int  # tokens whose KV vLLM has computed (the last sampled one never is)
    num_hit_tokens: int
    num_prompt_blocks: int


@dataclass(frozen=True, slots=True)
class RequestResult:
    """What one trace request got at its admission: the per-request row of the report."""

    request: TraceRequest
    seq_id: str
    outcome: Outcome
    prompt_tokens: int
    hit_tokens: int  # vLLM's num_computed_tokens from get_computed_blocks
    hit_blocks: int
    new_blocks: int  # physical blocks newly allocated for the prompt
    output_blocks: int  # blocks newly allocated while decoding
    evicted_blocks: int  # cached blocks vLLM evicted to make room (its BlockRemoved events)
    prompt_blocks: int  # ceil(prompt_tokens / block_size)
    recomputed_last_block: bool
    output_tokens: int = 0
    message: str = ""

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def sharing_fraction(self) -> float:
        return self.hit_blocks / self.prompt_blocks if self.prompt_blocks else 0.0


@dataclass(frozen=True, slots=True)
class KVEvent:
    """vLLM's KV-cache event, reduced to plain data (hashes as bytes)."""

    kind: str  # "stored" | "removed" | "cleared"
    block_hashes: tuple[bytes, ...] = ()
    parent_hash: bytes | None = None
    num_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Totals:
    """Running totals after a step. Raw counts only; ratios live in engine.metrics."""

    requests: int = 0
    tokens: int = 0  # prompt tokens of admitted requests
    blocks: int = 0  # sum of ceil(prompt_tokens / block_size)
    blocks_reused: int = 0
    blocks_new: int = 0
    sum_request_sharing: float = 0.0  # for the average per-request sharing fraction
    evictions: int = 0
    not_fitted: int = 0  # not_fitted + too_long
    errors: int = 0
    # From vLLM's own PrefixCacheStats (tokens), and its CachingMetrics window.
    queries: int = 0
    hits: int = 0
    recent_queries: int = 0
    recent_hits: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0
    preemptions: int = 0


@dataclass(frozen=True, slots=True)
class StepError:
    message: str  # one line
    traceback: str


@dataclass(frozen=True, slots=True)
class StepRecord:
    index: int
    clock: float  # trace time (s) at this step
    admitted: tuple[RequestResult, ...]  # requests that got their prefix lookup this step
    seqs: tuple[SeqView, ...]  # sequences holding blocks at the end of the step
    finished: tuple[str, ...]  # seq ids freed during this step
    evicted: tuple[tuple[int, bytes], ...]  # (block id, hash it lost) this step
    events: tuple[KVEvent, ...]
    pool_delta: tuple[tuple[int, Slot, Slot], ...]  # empty when replayed without detail
    free_head: tuple[int, ...]  # the next blocks vLLM will hand out (evict), in order
    num_free: int  # blocks in vLLM's free queue (cached-free included)
    num_cached_free: int
    totals: Totals
    error: StepError | None = None
    note: str = ""
    # Serve mode only: vLLM scheduler queues and preemptions at this step.
    waiting: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    preempted: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def request(self) -> RequestResult | None:
        """The request this step is about (sequential mode has exactly one)."""
        return self.admitted[0] if self.admitted else None
