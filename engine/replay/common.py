"""What the sequential and serve replays share: record assembly, the one block-state
classifier, errors, synthesized output tokens, the step sentence."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.model import (
    BlockState,
    EvictedBlock,
    KVEvent,
    Outcome,
    PoolDelta,
    RequestResult,
    Rows,
    SeqView,
    ServePart,
    StepError,
    StepRecord,
    Totals,
    TraceRequest,
)

if TYPE_CHECKING:
    from engine.tier_records import TierPart
    from engine.backends.vllm_v1.manager import PoolReader
    from engine.replay.pool_mirror import PoolMirror

FREE_HEAD_LEN = 64  # how much of vLLM's free queue each record keeps for display
SYNTH_TOKEN_BASE = 1 << 40  # synthesized output tokens live far above any vocabulary


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def synth_output_tokens(req: TraceRequest) -> tuple[int, ...]:
    """Output tokens for a request that gives only output_len: unique to the request, so
    they can never match a later prompt (an unknown reply cannot be a cache hit)."""
    if req.output_token_ids is not None:
        return req.output_token_ids
    base = SYNTH_TOKEN_BASE + req.index * (1 << 24)
    return tuple(range(base, base + req.output_len))


def vllm_error(exc: BaseException, where: str = "inside vLLM") -> StepError:
    """An exception at a step, as the record keeps it (call inside the except block)."""
    return StepError(
        message=f"{type(exc).__name__} {where}: {exc}".splitlines()[0],
        traceback=traceback.format_exc(),
    )


def unserved(req: TraceRequest, seq_id: str, outcome: Outcome, block_size: int,
             message: str) -> RequestResult:
    """The row of a request that got no blocks (too long, not fitted, vLLM raised)."""
    return RequestResult(
        request=req, seq_id=seq_id, outcome=outcome, prompt_tokens=req.num_prompt_tokens,
        hit_tokens=0, hit_blocks=0, new_blocks=0, output_blocks=0, evicted_blocks=0,
        prompt_blocks=cdiv(req.num_prompt_tokens, block_size), recomputed_last_block=False,
        message=message,
    )


def table_states(
    block_ids: tuple[int, ...] | list[int],
    *,
    hits: list[BlockState] | tuple[BlockState, ...],
    held: int,
    computed: int,
    block_size: int,
    recomputed_index: int | None,
    key_before: Callable[[int], object | None],
    null_block: int | None = None,
) -> tuple[BlockState, ...]:
    """The states of a sequence's logical blocks, the one classifier both replays use. In
    order of precedence: its prefix-cache hit (as the lookup saw it), else held from an
    earlier step, else partial (not all its tokens computed: never cached), else the
    recomputed last prompt block, else new, evicting cached content if the block had any
    (``key_before(block_id)``: the mirror's hash key for it before this step, None if
    it had none). vLLM's null block (``null_block``) stands where a sliding window needs
    no block: SKIPPED, whatever else holds.

    Each rule holds for a run of consecutive blocks, so the table is built run by run:
    a detailed replay classifies thousands of blocks a step."""
    n = len(block_ids)
    states = list(hits[:n])
    lo = len(states)
    if held > lo:
        states.extend([BlockState.HELD] * (min(held, n) - lo))
        lo = len(states)
    full = max(lo, min(n, computed // block_size))  # blocks lo..full-1 are fully computed
    new, evicting = BlockState.NEW, BlockState.NEW_EVICTED
    states.extend([new if key_before(b) is None else evicting for b in block_ids[lo:full]])
    if recomputed_index is not None and lo <= recomputed_index < full:
        states[recomputed_index] = BlockState.RECOMPUTED
    states.extend([BlockState.PARTIAL] * (n - len(states)))
    if null_block is not None and null_block in block_ids:
        for i, bid in enumerate(block_ids):
            if bid == null_block:
                states[i] = BlockState.SKIPPED
    return tuple(states)


def make_record(
    reader: PoolReader,
    mirror: PoolMirror | None,
    *,
    index: int,
    clock: float,
    admitted: tuple[RequestResult, ...],
    seqs: tuple[SeqView, ...],
    finished: tuple[str, ...],
    evicted: Rows[EvictedBlock],
    events: Rows[KVEvent],
    pool_delta: PoolDelta,
    totals: Totals,
    error: StepError | None,
    note: str,
    serve: ServePart | None = None,
    tier: TierPart | None = None,
) -> StepRecord:
    """A step record, with the pool's free queue read from vLLM at the end of the step."""
    return StepRecord(
        index=index, clock=clock, admitted=admitted, seqs=seqs, finished=finished,
        evicted=evicted, events=events, pool_delta=pool_delta,
        free_head=tuple(reader.free_queue(FREE_HEAD_LEN)),
        num_free=reader.num_free_blocks(),
        num_cached_free=mirror.num_cached_free if mirror is not None else -1,
        totals=totals, error=error, note=note, serve=serve, tier=tier,
    )


def counted(n: int, noun: str) -> str:
    """"1 block", "1,309 blocks": a count with its noun, singular or plural."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def describe(r: RequestResult) -> str:
    """One sentence saying what happened to a request, for the TUI and the report."""
    if r.outcome is Outcome.ERROR:
        return f"vLLM raised an error: {r.message}"
    if r.outcome in (Outcome.NOT_FITTED, Outcome.TOO_LONG):
        return f"did not fit: {r.message}"
    parts = [f"{r.hit_blocks:,} of {counted(r.prompt_blocks, 'prompt block')} reused from cache"]
    if r.recomputed_last_block:
        parts.append("last block recomputed (vLLM always recomputes the last prompt token)")
    # Prompt and output blocks named apart: the totals' "blocks new" counts prompt blocks.
    new = counted(r.new_blocks, "new prompt block")
    if r.output_blocks:
        new += f" + {counted(r.output_blocks, 'output block')}"
    if r.evicted_blocks:
        new += f", evicting {counted(r.evicted_blocks, 'cached block')}"
    parts.append(new)
    if r.outcome is Outcome.TRUNCATED:
        parts.append(r.message)
    return "; ".join(parts)


def describe_finish(r: RequestResult) -> str:
    """A finished serve-mode request's figures on the simulated clock, in words (the step
    sentence and the serve pane)."""
    parts = [f"waited {r.queue_wait_s or 0:.3f} s"]
    if r.ttft_s is not None:
        parts.append(f"first token after {r.ttft_s:.3f} s")
    if r.preemptions:
        parts.append(f"preempted {r.preemptions}×")
    if r.evicted_blocks:
        parts.append(f"evicting {counted(r.evicted_blocks, 'cached block')}")
    return ", ".join(parts)
