"""Sequential replay: one trace request per step, against vLLM's real KVCacheManager.

Each step makes the calls vLLM's scheduler makes for a request, in its order:
free the previous request -> get_computed_blocks -> allocate_slots ->
record_prefix_cache_stats -> mark the prompt computed -> decode the output -> (next step
frees it). The step is observed while the request still holds its blocks, so the record
shows its block table in use; the free happens at the start of the next step, exactly
where vLLM would do it relative to the next lookup.

Decode is fed to allocate_slots one block of tokens per call rather than one token per
call: vLLM allocates, hashes, caches and evicts the same blocks in the same order either
way (tests/test_replay.py checks this against token-by-token decode), with 1/block_size
of the calls.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterable, Iterator

from engine import metrics
from engine.pool_mirror import PoolMirror
from engine.records import (
    BlockState,
    KVEvent,
    Outcome,
    RequestResult,
    SeqView,
    StepError,
    StepRecord,
    Totals,
)
from engine.trace_types import TraceRequest
from engine.vllm_v1 import EngineSettings, V1Backend

FREE_HEAD_LEN = 64  # how much of vLLM's free queue each record keeps for display
SYNTH_TOKEN_BASE = 1 << 40  # synthesized output tokens live far above any vocabulary


def synth_output_tokens(req: TraceRequest) -> tuple[int, ...]:
    """Output tokens for a request that gives only output_len: unique to the request, so
    they can never match a later prompt (an unknown reply cannot be a cache hit)."""
    if req.output_token_ids is not None:
        return req.output_token_ids
    base = SYNTH_TOKEN_BASE + req.index * (1 << 24)
    return tuple(range(base, base + req.output_len))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class SequentialReplay:
    """Iterate StepRecords. ``detail=False`` skips per-block states and pool deltas
    (headless replays of huge traces need only the counts)."""

    def __init__(
        self,
        backend: V1Backend,
        requests: Iterable[TraceRequest],
        *,
        detail: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self.backend = backend
        self.settings: EngineSettings = backend.settings
        self.requests = requests
        self.detail = detail
        self.cancel = cancel
        self.totals = Totals()
        self.stopped_by_error = False
        n = self.settings.num_blocks
        # Our mirror of vLLM's pool as of the last record: deltas are diffs against it.
        self._mirror = PoolMirror(backend.scan_pool(), backend.null_block_id) if detail else None
        self._prev: tuple[object, str, list[int]] | None = None  # (vLLM request, seq id, blocks)
        self._num_blocks = n

    # ------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StepRecord]:
        for index, req in enumerate(self.requests):
            if self.cancel is not None and self.cancel.is_set():
                return
            record = self._step(index, req)
            yield record
            if record.error is not None:
                self.stopped_by_error = True
                return
        # Free the last request so the final pool is what vLLM would leave behind.
        if self._prev is not None:
            self._release_prev()

    def _release_prev(self) -> tuple[str, ...]:
        if self._prev is None:
            return ()
        request, seq_id, _blocks = self._prev
        self._prev = None
        self.backend.free(request)
        return (seq_id,)

    # ------------------------------------------------------------------------------------
    def _step(self, index: int, req: TraceRequest) -> StepRecord:
        b = self.backend
        bs = self.settings.block_size
        prompt_len = req.num_prompt_tokens
        prompt_blocks = cdiv(prompt_len, bs)
        seq_id = f"{index}"
        touched: list[int] = list(self._prev[2]) if (self._prev and self.detail) else []
        result: RequestResult
        seq_view: SeqView | None = None
        error: StepError | None = None
        events: list[KVEvent] = []
        removed_count = 0
        evicted_ids: list[tuple[int, bytes]] = []
        fresh: list[int] = []
        finished: tuple[str, ...] = ()
        try:
            finished = self._release_prev()
            b.new_step()
            if prompt_len >= self.settings.effective_max_model_len:
                # vLLM's input processor rejects it: no room left for one output token.
                result = self._unfitted(
                    req, seq_id, Outcome.TOO_LONG, prompt_blocks,
                    f"prompt of {prompt_len} tokens leaves no room for an output token "
                    f"within max_model_len {self.settings.effective_max_model_len}",
                )
            else:
                result, seq_view, touched_now, fresh = self._run_request(
                    req, seq_id, prompt_blocks
                )
                touched.extend(touched_now)
            if self.detail:
                events = b.take_events()
            else:
                removed_count = b.take_removed_count()
        except Exception as exc:  # vLLM raised: record it at this step and stop cleanly
            error = StepError(
                message=f"{type(exc).__name__} inside vLLM: {exc}".splitlines()[0],
                traceback=traceback.format_exc(),
            )
            result = self._unfitted(req, seq_id, Outcome.ERROR, prompt_blocks, error.message)
            self._prev = None

        removed = removed_count + sum(len(e.block_hashes) for e in events if e.kind == "removed")
        if removed != result.evicted_blocks:
            result = _replace(result, evicted_blocks=removed)
        b.take_cache_stats()
        self.totals = metrics.add_request(self.totals, result, **b.cache.totals_fields())
        delta: tuple = ()
        if self.detail:
            delta, evicted_ids = self._mirror.diff(touched, b.slots, set(fresh))
            if seq_view is not None and evicted_ids:
                seq_view = _mark_evictions(seq_view, {bid for bid, _ in evicted_ids})
        return StepRecord(
            index=index,
            clock=req.arrival_time,
            admitted=(result,),
            seqs=(seq_view,) if seq_view is not None else (),
            finished=finished,
            evicted=tuple(evicted_ids),
            events=tuple(events) if self.detail else (),
            pool_delta=delta,
            free_head=tuple(b.free_queue(FREE_HEAD_LEN)),
            num_free=b.num_free_blocks(),
            num_cached_free=self._mirror.num_cached_free if self._mirror else -1,
            totals=self.totals,
            error=error,
            note=describe(result),
        )

    def _unfitted(self, req, seq_id, outcome, prompt_blocks, message) -> RequestResult:
        return RequestResult(
            request=req, seq_id=seq_id, outcome=outcome, prompt_tokens=req.num_prompt_tokens,
            hit_tokens=0, hit_blocks=0, new_blocks=0, output_blocks=0, evicted_blocks=0,
            prompt_blocks=prompt_blocks, recomputed_last_block=False, message=message,
        )

    def _run_request(self, req: TraceRequest, seq_id: str, prompt_blocks: int):
        b = self.backend
        bs = self.settings.block_size
        prompt_len = req.num_prompt_tokens
        out_tokens = synth_output_tokens(req)
        vreq = b.new_request(seq_id, req.prompt_token_ids, req.arrival_time)
        lookup = b.lookup(vreq, self.detail)
        hit_blocks = lookup.num_hit_tokens // bs
        recomputed = self._recomputes_last_block(vreq, prompt_len, hit_blocks)
        new_ids = b.allocate(vreq, prompt_len - lookup.num_hit_tokens, lookup)
        if new_ids is None:
            need = prompt_blocks - hit_blocks
            return (
                self._unfitted(
                    req, seq_id, Outcome.NOT_FITTED, prompt_blocks,
                    f"needs {need} new blocks, vLLM has {b.num_free_blocks()} free "
                    f"(pool of {self.settings.num_blocks})",
                ),
                None,
                list(lookup.block_ids),
                [],
            )
        # vLLM counts the hit at admission, as its scheduler does.
        b.record_stats(vreq, lookup.num_hit_tokens)
        b.set_num_computed_tokens(vreq, prompt_len)
        outcome, message, decoded = Outcome.OK, "", 0
        # vLLM stops a request once it reaches max_model_len tokens (check_stop).
        room = self.settings.effective_max_model_len - prompt_len
        wanted = out_tokens[:room]
        if wanted:
            decoded = self._decode(vreq, wanted)
        if decoded < len(wanted):
            outcome = Outcome.TRUNCATED
            message = (
                f"decode stopped after {decoded} of {len(out_tokens)} output tokens: "
                "no free block"
            )
        elif len(wanted) < len(out_tokens):
            outcome = Outcome.TRUNCATED
            message = (
                f"output capped at {len(wanted)} of {len(out_tokens)} tokens by "
                f"max_model_len {self.settings.effective_max_model_len}"
            )
        # Blocks held now: hits + prompt blocks + output blocks (the tokens vLLM computed).
        num_held = cdiv(b.num_computed_tokens(vreq), bs)
        block_ids = b.block_ids(seq_id) if self.detail else []
        self._prev = (vreq, seq_id, block_ids)
        result = RequestResult(
            request=req, seq_id=seq_id, outcome=outcome, prompt_tokens=prompt_len,
            hit_tokens=lookup.num_hit_tokens, hit_blocks=hit_blocks, new_blocks=len(new_ids),
            output_blocks=num_held - hit_blocks - len(new_ids), evicted_blocks=0,
            prompt_blocks=prompt_blocks, recomputed_last_block=recomputed,
            output_tokens=decoded, message=message,
        )
        view = None
        if self.detail:
            view = self._seq_view(req, seq_id, lookup, block_ids, recomputed,
                                  b.num_computed_tokens(vreq))
        return result, view, block_ids, block_ids[hit_blocks:]

    def _recomputes_last_block(self, vreq, prompt_len: int, hit_blocks: int) -> bool:
        """vLLM caps a hit at prompt_len - 1 tokens, so a block-aligned prompt whose last
        block is cached still recomputes that whole block."""
        bs = self.settings.block_size
        if not self.settings.enable_caching or prompt_len % bs:
            return False
        last = prompt_len // bs - 1
        if hit_blocks != last:
            return False
        block_hash = self.backend.request_block_hash(vreq, last)
        return block_hash is not None and self.backend.is_cached(block_hash)

    def _decode(self, vreq, out_tokens: tuple[int, ...]) -> int:
        """Feed output tokens as vLLM's decode steps would. Returns tokens produced."""
        b = self.backend
        bs = self.settings.block_size
        n = len(out_tokens)
        b.append_output(vreq, out_tokens[0])  # the prefill step samples the first token
        produced = 1
        computed = b.num_computed_tokens(vreq)
        while produced < n:
            # k decode steps, up to the next block boundary. Token-by-token, each step
            # computes the last token and samples the next; append the k - 1 tokens the
            # inner steps would sample first, so vLLM sees the same tokens when it caches.
            k = min(bs - computed % bs, n - produced)
            if k > 1:
                b.append_output(vreq, list(out_tokens[produced : produced + k - 1]))
            b.new_step()
            if b.allocate(vreq, k) is None:
                return produced
            produced += k - 1
            computed += k
            b.set_num_computed_tokens(vreq, computed)
            b.append_output(vreq, out_tokens[produced])
            produced += 1
        return produced

    def _seq_view(self, req, seq_id, lookup, block_ids, recomputed, computed) -> SeqView:
        """Block states; ``computed`` is the tokens whose KV vLLM computed (the last
        sampled token never is, so the block holding it stays partial and uncached)."""
        bs = self.settings.block_size
        prompt_len = req.num_prompt_tokens
        prompt_blocks = cdiv(prompt_len, bs)
        mirror = self._mirror
        states: list[BlockState] = []
        for i, bid in enumerate(block_ids):
            if i < len(lookup.block_ids):
                states.append(BlockState.HIT_FREE if lookup.ref_cnts[i] == 0 else BlockState.HIT_SHARED)
            elif recomputed and i == prompt_blocks - 1:
                states.append(BlockState.RECOMPUTED)
            elif (i + 1) * bs > computed:
                states.append(BlockState.PARTIAL)
            else:
                states.append(BlockState.NEW_EVICTED if mirror[bid][1] is not None else BlockState.NEW)
        return SeqView(
            seq_id=seq_id, request_id=req.request_id, block_ids=tuple(block_ids),
            states=tuple(states), num_prompt_tokens=prompt_len, num_tokens=computed,
            num_hit_tokens=lookup.num_hit_tokens, num_prompt_blocks=prompt_blocks,
        )


def _mark_evictions(view: SeqView, evicted: set[int]) -> SeqView:
    states = tuple(
        BlockState.NEW_EVICTED if (s is BlockState.NEW and bid in evicted) else s
        for bid, s in zip(view.block_ids, view.states)
    )
    return _replace(view, states=states)


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


def describe(r: RequestResult) -> str:
    """One sentence saying what happened to a request, for the TUI and the report."""
    if r.outcome is Outcome.ERROR:
        return f"vLLM raised an error: {r.message}"
    if r.outcome in (Outcome.NOT_FITTED, Outcome.TOO_LONG):
        return f"did not fit: {r.message}"
    parts = [f"{r.hit_blocks} of {r.prompt_blocks} blocks reused from cache"]
    if r.recomputed_last_block:
        parts.append("last block recomputed (vLLM always recomputes the last prompt token)")
    new = r.new_blocks + r.output_blocks
    if r.evicted_blocks:
        parts.append(f"{new} new blocks evicted {r.evicted_blocks} cached blocks")
    else:
        parts.append(f"{new} new blocks")
    if r.outcome is Outcome.TRUNCATED:
        parts.append(r.message)
    return "; ".join(parts)
