"""Step records: immutable data that the TUI, the headless report, the JSON export and the
tests all read. A record never holds a vLLM object, so it is safe to hand to other threads
and to send from another interpreter.

Standard library only, Python 3.10 syntax: a V0 worker running under an older vLLM imports
this module to build records in its own process.

The pool is recorded as deltas (block id, slot before, slot after) so a cursor can walk
backwards without re-running vLLM and without a copy of a 100k-block pool per step.
Block tables, hits and events carry a KV cache group index, so a model with several
groups (full attention and sliding window) fits the same records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the CPU tier's and miss reasons' records, named in annotations only
    from engine.block_reasons import BlockReasons
    from engine.tier_records import TierPart, TierSummary

# The pool's per-block records live beside Rows; every layer imports them from here.
from engine.columns import (  # re-exported: every layer imports records from here
    FREE_SLOT as FREE_SLOT,
    NO_CHANGE as NO_CHANGE,
    NO_EVENTS as NO_EVENTS,
    NO_EVICTIONS as NO_EVICTIONS,
    EventKind as EventKind,
    EvictedBlock,
    KVEvent,
    PoolChange as PoolChange,
    PoolDelta,
    Rows,
    Slot,
    evictions as evictions,
    kv_events as kv_events,
    removed_count as removed_count,
)


class TemplateBreak(NamedTuple):
    """Where a later turn's prompt stops extending the previous turn's prompt + reply, as
    the chat template renders them (e.g. a template that drops earlier reasoning). Texts
    are decoded from the trace's tokens: untrusted, for display through safe_text."""

    position: int  # the first token that differs (or where the shorter one ends)
    previous_tokens: int  # tokens of the previous turn's prompt + reply
    expected: int | None  # the previous turn's token there (None: it had ended)
    found: int | None  # this prompt's token there (None: this prompt ended first)
    before: str  # decoded text just before the position
    expected_text: str  # decoded text from the position, previous turn
    found_text: str  # decoded text from the position, this prompt


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace, already tokenized.

    ``index`` is the 0-based position among requests (blank lines skipped); ``line`` the
    1-based line in the file, for messages. ``output_token_ids`` is known for native traces
    that give it; otherwise only ``output_len`` is, and the replay synthesizes tokens that
    can never match a prompt (an unknown reply cannot be a cache hit).
    """

    index: int
    line: int
    request_id: str
    arrival_time: float
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...] | None = None
    output_len: int = 0
    conversation_id: str | None = None
    turn: int | None = None
    # Prompt text as given (prompt/messages formats), for display only; untrusted.
    text: str | None = None
    # vLLM's tenant isolation: the salt enters the first block's hash (as vLLM's OpenAI
    # API's ``cache_salt``); a LoRA adapter's name enters every block's hash.
    cache_salt: str | None = None
    lora_name: str | None = None
    # A production trace's request category (Qwen-Bailian's ``type``: text, search, ...).
    request_type: str | None = None
    # A later conversation turn (its messages hold an earlier assistant reply) checked
    # against a Jinja chat template (the simple one extends every turn by construction);
    # ``template_break`` says where its prompt stops extending the previous turn.
    template_checked: bool = False
    template_break: TemplateBreak | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        if self.output_token_ids is not None:
            return len(self.output_token_ids)
        return self.output_len


class BlockState(str, Enum):
    """What happened to one logical block of a sequence at its admission step."""

    HIT_FREE = "hit_free"  # prefix-cache hit on a block sitting in the free queue
    HIT_SHARED = "hit_shared"  # prefix-cache hit on a block another sequence holds
    NEW = "new"  # newly allocated from a block with no cached content
    NEW_EVICTED = "new_evicted"  # newly allocated; vLLM evicted a cached block for it
    PARTIAL = "partial"  # the tail block, not full, so never cached
    RECOMPUTED = "recomputed"  # cached, but vLLM recomputes the last prompt token's block
    HELD = "held"  # serve mode: allocated at an earlier step, still held
    # Sliding window / chunked local attention: vLLM put its null block here (the tokens
    # are outside the window: never looked up, or freed by remove_skipped_blocks).
    SKIPPED = "skipped"
    HIT_CPU = "hit_cpu"  # serve mode: loaded back from vLLM's CPU offloading tier

    @property
    def letter(self) -> str:
        return _LETTERS[self]

    @property
    def is_hit(self) -> bool:
        return self in (BlockState.HIT_FREE, BlockState.HIT_SHARED, BlockState.HIT_CPU)


_LETTERS = {
    BlockState.HIT_FREE: "H",
    BlockState.HIT_SHARED: "S",
    BlockState.NEW: "N",
    BlockState.NEW_EVICTED: "E",
    BlockState.PARTIAL: "P",
    BlockState.RECOMPUTED: "R",
    BlockState.HELD: "=",
    BlockState.SKIPPED: "-",
    BlockState.HIT_CPU: "L",
}


class SlotStatus(str, Enum):
    """State of one physical block in the pool."""

    NULL = "null"  # vLLM's reserved null block (id 0), never allocated
    FREE = "free"  # in the free queue, no cached content
    CACHED_FREE = "cached_free"  # in the free queue with a hash: evictor-resident
    IN_USE = "in_use"  # ref_cnt > 0 (cached or not)


def slot_status(block_id: int, slot: Slot, null_block_id: int | None = 0) -> SlotStatus:
    if block_id == null_block_id:
        return SlotStatus.NULL
    if slot.ref_cnt > 0:
        return SlotStatus.IN_USE
    return SlotStatus.CACHED_FREE if slot.block_hash is not None else SlotStatus.FREE


class Outcome(str, Enum):
    OK = "ok"
    NOT_FITTED = "not_fitted"  # allocate_slots returned None: the pool cannot hold it
    TOO_LONG = "too_long"  # longer than max_model_len; vLLM would reject it on input
    TRUNCATED = "truncated"  # prefill fitted, but decode ran out of blocks
    ERROR = "error"  # vLLM raised; replay stops at this step

    @property
    def served(self) -> bool:
        """The request got blocks (its tokens count in the totals)."""
        return self in (Outcome.OK, Outcome.TRUNCATED)


class KVGroupInfo(NamedTuple):
    """One KV cache group as vLLM built it (its KVCacheGroupSpec), for display and JSON."""

    index: int
    kind: str  # engine.settings.AttentionKind's value: full, sliding_window, chunked_local
    window: int | None  # tokens: sliding window or attention chunk (None: full)
    block_size: int
    num_layers: int
    first_layer: str = ""  # the first of its layer names, e.g. model.layers.0.self_attn.attn

    @property
    def label(self) -> str:
        if self.kind == "sliding_window":
            return f"sliding {self.window}"
        if self.kind == "chunked_local":
            return f"chunked {self.window}"
        return "full"


class GroupHit(NamedTuple):
    """One request's lookup and allocation in one KV cache group."""

    hit_blocks: int  # cached blocks vLLM's lookup handed back in this group (real blocks)
    skipped_blocks: int  # places the lookup filled with vLLM's null block (outside window)
    new_blocks: int  # blocks allocate_slots handed out for the prompt in this group


@dataclass(frozen=True, slots=True)
class GroupTable:
    """One sequence's block table in one KV cache group."""

    group: int
    block_ids: tuple[int, ...]
    states: tuple[BlockState, ...]


@dataclass(frozen=True, slots=True)
class SeqView:
    """One live sequence's block tables at the end of a step, one per KV cache group."""

    seq_id: str  # the id vLLM knows (unique even when trace ids repeat)
    request_id: str  # the id from the trace (display)
    tables: tuple[GroupTable, ...]
    num_prompt_tokens: int
    num_tokens: int  # tokens whose KV vLLM has computed (the last sampled one never is)
    num_hit_tokens: int
    num_prompt_blocks: int

    # The first group is the one a single-group model has and the panes draw.
    @property
    def block_ids(self) -> tuple[int, ...]:
        return self.tables[0].block_ids if self.tables else ()

    @property
    def states(self) -> tuple[BlockState, ...]:
        return self.tables[0].states if self.tables else ()


@dataclass(frozen=True, slots=True)
class RequestResult:
    """What one trace request got at its admission: the per-request row of the report.
    Counts only: the prompt's token ids stay with the trace request."""

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
    # Serve mode only (None in sequential mode), on the simulated clock: seconds from
    # arrival to first being scheduled, and to vLLM handing out its first output token;
    # times vLLM preempted it; the iteration it finished in and the clock then.
    queue_wait_s: float | None = None
    ttft_s: float | None = None
    preemptions: int | None = None
    finish_iteration: int | None = None
    finish_time_s: float | None = None
    # Per KV cache group (several groups, both modes; empty otherwise).
    groups: tuple[GroupHit, ...] = ()
    # Serve mode, from vLLM's prefill_stats (None until vLLM reported them): prompt
    # tokens hit in the GPU prefix cache and loaded from the CPU offloading tier; their
    # sum is vLLM's num_cached_tokens (hit_tokens).
    gpu_hit_tokens: int | None = None
    cpu_hit_tokens: int | None = None
    # Why each missed prompt block missed and where hits came from (None: not known, as
    # with prefix caching off or on V0).
    reasons: BlockReasons | None = None
    # --instances N: the replica (0-based) the router sent it to; None with one instance.
    replica: int | None = None

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def sharing_fraction(self) -> float:
        return self.hit_blocks / self.prompt_blocks if self.prompt_blocks else 0.0


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
    too_long: int = 0  # of not_fitted: longer than max_model_len (never reached the pool)
    truncated: int = 0  # served, but vLLM stopped the output early
    # From vLLM's own PrefixCacheStats (tokens), and its CachingMetrics window.
    queries: int = 0
    hits: int = 0
    recent_queries: int = 0
    recent_hits: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0
    preemptions: int = 0
    # vLLM's connector PrefixCacheStats (serve mode with a CPU offloading tier): tokens
    # queried past the GPU hit, hit there, and of those hits_by_source "host" (the CPU tier).
    external_queries: int = 0
    external_hits: int = 0
    host_hits: int = 0
    # vLLM V0's own get_prefix_cache_hit_rate() (full blocks queried by the allocator), as
    # V0 returns it; None on V1, which has no such figure.
    v0_hit_rate: float | None = None
    # Per KV cache group, summed over served requests (several groups only): GroupHit's
    # hit_blocks, skipped_blocks and new_blocks.
    group_hit_blocks: tuple[int, ...] = ()
    group_skipped_blocks: tuple[int, ...] = ()
    group_new_blocks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class StepError:
    message: str  # one line
    traceback: str


class Resumed(NamedTuple):
    seq_id: str
    hit_tokens: int  # the prefix-cache hit of its re-admission (it recomputes the rest)


@dataclass(frozen=True, slots=True)
class ServePart:
    """What one iteration of vLLM's real Scheduler did (serve-mode records only)."""

    iteration: int  # scheduler iterations so far, this one included
    scheduled_tokens: int
    used_blocks: int  # blocks held by requests at the end of the iteration
    arrived: tuple[str, ...] = ()  # seq ids added to vLLM's waiting queue
    resumed: tuple[Resumed, ...] = ()  # preempted requests re-admitted
    preempted: tuple[str, ...] = ()  # preempted by this iteration's schedule()
    waiting: tuple[str, ...] = ()  # vLLM's waiting queue, head first
    running: tuple[str, ...] = ()  # vLLM's running list, in its order
    finished_results: tuple[RequestResult, ...] = ()  # final rows of requests that finished


class EvictorEntry(NamedTuple):
    """One block in vLLM V0's LRU evictor, in the order V0 would evict it."""

    block_id: int
    block_hash: bytes  # the content hash the evictor would hand back for it
    last_accessed: float  # V0's access time (-1: never recorded, V0's default)
    num_hashed_tokens: int  # the tie-break: at equal times the deepest block goes first
    stale: bool = False  # a leftover heap entry V0 would take for live: its hash is not the
    # block's own, so evicting it raises in _maybe_allocate_evicted_block_id


@dataclass(frozen=True, slots=True)
class V0Part:
    """What vLLM V0's block manager looked like at the end of a step (V0 records only)."""

    call_order: str  # "scheduler" or "experiment"
    clock: float  # the access time V0 was given at this step (scheduler order)
    hit_rate: float | None = None  # V0's get_prefix_cache_hit_rate() after this step
    can_allocate: str = ""  # V0's AllocStatus for the admitted request ("" when not asked)
    watermark_blocks: int = 0  # blocks can_allocate keeps free (V0's watermark)
    num_cached: int = 0  # hashes in V0's _cached_blocks
    num_evictor: int = 0  # blocks in the evictor (cached-free)
    evictor: tuple[EvictorEntry, ...] = ()  # the evictor's head, in eviction order
    error_block: int | None = None  # the block and hash vLLM was handling when it raised
    error_hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    index: int
    clock: float  # trace time (s) at this step
    admitted: tuple[RequestResult, ...]  # requests that got their prefix lookup this step
    seqs: tuple[SeqView, ...]  # sequences holding blocks at the end of the step
    finished: tuple[str, ...]  # seq ids freed during this step
    evicted: Rows[EvictedBlock]  # cached blocks vLLM evicted at this step
    events: Rows[KVEvent]
    pool_delta: PoolDelta  # empty when replayed without detail
    free_head: tuple[int, ...]  # the next blocks vLLM will hand out (evict), in order
    num_free: int  # blocks in vLLM's free queue (cached-free included)
    num_cached_free: int
    totals: Totals
    error: StepError | None = None
    note: str = ""
    serve: ServePart | None = None
    v0: V0Part | None = None
    tier: TierPart | None = None  # serve mode with vLLM's CPU offloading tier
    replica: int | None = None  # --instances: the replica this step ran on

    @property
    def request(self) -> RequestResult | None:
        """The request this step is about (sequential mode has exactly one)."""
        return self.admitted[0] if self.admitted else None

    @property
    def rows(self) -> tuple[RequestResult, ...]:
        """The per-request rows this step completes: in sequential mode the admitted
        request, in serve mode requests that finished or were rejected. Every request
        gets exactly one row, so rows add up to the totals."""
        if self.serve is None:
            return self.admitted
        rejected = tuple(r for r in self.admitted if not r.outcome.served)
        return rejected + self.serve.finished_results

    @property
    def arrives(self) -> bool:
        """A request reaches vLLM at this step (for the inspector's arrival jumps)."""
        if self.serve is None:
            return bool(self.admitted)
        return bool(self.serve.arrived) or any(not r.outcome.served for r in self.admitted)


@dataclass(frozen=True, slots=True)
class SchedulerInfo:
    """vLLM's scheduler as serve mode built it (its settings after vLLM resolved them)."""

    scheduler: str  # the class vLLM picked: Scheduler or AsyncScheduler
    async_scheduling: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    max_model_len: int
    model_runner: str
    iteration_time_s: float


@dataclass(frozen=True, slots=True)
class ServeSummary:
    """Serve mode's run figures, beside the Totals every mode has. Raw counts only."""

    info: SchedulerInfo
    submitted: int = 0
    finished: int = 0
    rejected: int = 0
    iterations: int = 0
    model_iterations: int = 0
    simulated_time_s: float = 0.0
    resumed_lookups: int = 0  # vLLM's PrefixCacheStats.preempted_requests
    peak_kv_blocks: int = 0
    usable_blocks: int = 0  # the pool less vLLM's null block
    output_tokens: int = 0
    cached_token_mismatches: int = 0  # prefill_stats.num_cached_tokens != the admission hit
    closed_loop: bool = False  # conversations' turns sent on their previous turn's reply
    delayed_turns: int = 0  # turns the closed loop sent (engine.replay.arrivals)
    timed: int = 0  # finished requests whose first-token time is known
    queue_wait_sum_s: float = 0.0  # over those: arrival to first scheduled
    ttft_sum_s: float = 0.0  # over those: arrival to first output token
    tier: TierSummary | None = None  # vLLM's CPU offloading tier, when on


def lora_int_id(name: str) -> int:
    """The ``lora_int_id`` of the LoRARequest built for an adapter name: derived from the
    name alone, so it is the same in every run, mode and process (vLLM's KV events carry
    it). vLLM hashes the adapter's name and path into blocks, not this id."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1) + 1  # vLLM wants an id >= 1
