"""Sequential replay: one trace request per step, against vLLM's real KVCacheManager.

Each step makes the calls vLLM's scheduler makes for a request, in its order:
free the previous request -> get_computed_blocks -> allocate_slots ->
record_prefix_cache_stats -> mark the prompt computed -> decode the output -> (next step
frees it). The step is observed while the request still holds its blocks, so the record
shows its block table in use; the free happens at the start of the next step, exactly
where vLLM would do it relative to the next lookup.

Decode is fed to allocate_slots one block of tokens per call rather than one token per
call: vLLM allocates, hashes, caches and evicts the same blocks in the same order either
way (tests/test_replay_tiny.py checks this against token-by-token decode), with
1/block_size of the calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine import metrics
from engine.model import (
    NO_CHANGE,
    NO_EVENTS,
    NO_EVICTIONS,
    BlockState,
    GroupHit,
    GroupTable,
    KVEvent,
    Rows,
    removed_count,
    Outcome,
    RequestResult,
    SeqView,
    ServeSummary,
    StepError,
    StepRecord,
    Totals,
    TraceRequest,
)
from engine.replay.common import (
    cdiv,
    describe,
    make_record,
    synth_output_tokens,
    table_states,
    unserved,
    vllm_error,
)
from engine.replay.miss_reasons import MissTracker, kv_hashes
from engine.replay.pool_mirror import PoolMirror

if TYPE_CHECKING:
    from engine.backends.vllm_v1.manager import GroupIds, Lookup, V1Manager


class SequentialReplay:
    """Iterate StepRecords. ``detail=False`` skips per-block states and pool deltas
    (headless replays of huge traces need only the counts)."""

    def __init__(
        self,
        manager: V1Manager,
        requests: Iterable[TraceRequest],
        *,
        detail: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self.backend = manager
        self.settings = manager.settings
        self.requests = requests
        self.detail = detail
        self.cancel = cancel
        self.totals = Totals()
        self.stopped_by_error = False
        # Our mirror of vLLM's pool as of the last record: deltas are diffs against it.
        self._mirror = PoolMirror(manager) if detail else None
        self._prev: tuple[Any, str, list[int]] | None = None  # (vLLM request, seq id, blocks)
        # Why blocks missed (engine.replay.miss_reasons); nothing to say with caching off.
        self._reason_group = manager.reason_group
        self.reasons = (MissTracker(self.settings.block_size)
                        if self.settings.enable_caching and self._reason_group is not None
                        else None)

    def summary(self) -> ServeSummary | None:
        return None

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
        seq_id = f"{index}"
        touched: list[int] = list(self._prev[2]) if (self._prev and self.detail) else []
        result: RequestResult
        seq_view: SeqView | None = None
        error: StepError | None = None
        events: Rows[KVEvent] = NO_EVENTS
        removed = 0
        finished: tuple[str, ...] = ()
        try:
            finished = self._release_prev()
            b.new_step()
            limit = self.settings.effective_max_model_len
            if prompt_len >= limit:
                # vLLM's input processor rejects it: no room left for one output token.
                result = unserved(
                    req, seq_id, Outcome.TOO_LONG, bs,
                    f"prompt of {prompt_len} tokens leaves no room for an output token "
                    f"within max_model_len {limit}",
                )
            else:
                result, seq_view, touched_now = self._run_request(req, seq_id)
                touched.extend(touched_now)
            if self.detail:
                events = b.take_events()
                removed = removed_count(events)
                if self.reasons is not None:
                    self._history(req, index, *kv_hashes(events, self._reason_group or 0))
            elif self.reasons is not None:
                stored_h, removed_h, removed = b.take_hashes()
                self._history(req, index, stored_h, removed_h)
            else:
                removed = b.take_removed_count()
        except Exception as exc:  # vLLM raised: record it at this step and stop cleanly
            error = vllm_error(exc)
            result = unserved(req, seq_id, Outcome.ERROR, bs, error.message)
            self._prev = None
        if removed != result.evicted_blocks:
            result = replace(result, evicted_blocks=removed)
        b.take_cache_stats()
        self.totals = metrics.add_request(self.totals, result, **b.cache.totals_fields())
        delta, evicted = NO_CHANGE, NO_EVICTIONS
        if self._mirror is not None:
            delta, evicted = self._mirror.diff(touched)
        return make_record(
            b, self._mirror, index=index, clock=req.arrival_time, admitted=(result,),
            seqs=(seq_view,) if seq_view is not None else (), finished=finished,
            evicted=evicted, events=events, pool_delta=delta, totals=self.totals,
            error=error, note=describe(result),
        )

    def _history(self, req: TraceRequest, index: int, stored: list[bytes],
                 removed: list[bytes]) -> None:
        """Every store and eviction of a sequential step is the step's request's."""
        assert self.reasons is not None
        self.reasons.removed(removed, index, req)
        self.reasons.stored(stored, req)

    def _run_request(self, req: TraceRequest, seq_id: str):
        b = self.backend
        bs = self.settings.block_size
        prompt_len = req.num_prompt_tokens
        prompt_blocks = cdiv(prompt_len, bs)
        out_tokens = synth_output_tokens(req)
        vreq = b.new_request(seq_id, req.prompt_token_ids, req.arrival_time,
                             cache_salt=req.cache_salt, lora_name=req.lora_name)
        lookup = b.lookup(vreq, self.detail)
        hit_blocks = lookup.num_hit_tokens // bs
        seen = None
        if self.reasons is not None:  # before allocate_slots evicts or stores anything
            self.reasons.saw(req)
            seen = b.seen_lookup(vreq, lookup.num_hit_tokens, self.reasons.wants_content)
        recomputed = self._recomputes_last_block(vreq, prompt_len, hit_blocks)
        new_ids = b.allocate(vreq, prompt_len - lookup.num_hit_tokens, lookup)
        if new_ids is None:
            result = unserved(
                req, seq_id, Outcome.NOT_FITTED, bs,
                f"needs {prompt_blocks - hit_blocks} new blocks, vLLM has "
                f"{b.num_free_blocks():,} free (pool of {self.settings.num_blocks:,})",
            )
            return result, None, [i for g in lookup.block_ids for i in g]
        # vLLM counts the hit at admission, as its scheduler does.
        b.record_stats(vreq, lookup.num_hit_tokens)
        b.set_num_computed_tokens(vreq, prompt_len)
        outcome, message, decoded, output_blocks = Outcome.OK, "", 0, 0
        # vLLM stops a request once it reaches max_model_len tokens (check_stop).
        limit = self.settings.effective_max_model_len
        wanted = out_tokens[: limit - prompt_len]
        if wanted:
            decoded, output_blocks = self._decode(vreq, wanted)
        if decoded < len(wanted):
            outcome = Outcome.TRUNCATED
            message = (f"decode stopped after {decoded} of {len(out_tokens)} output tokens: "
                       "no free block")
        elif len(wanted) < len(out_tokens):
            outcome = Outcome.TRUNCATED
            message = (f"output capped at {len(wanted)} of {len(out_tokens)} tokens by "
                       f"max_model_len {limit}")
        computed = b.num_computed_tokens(vreq)
        # Physical blocks allocate_slots handed out, over every KV cache group.
        new_prompt = sum(len(g) for g in new_ids)
        tables = b.block_tables(seq_id) if self.detail else ()
        flat = [i for t in tables for i in t]
        self._prev = (vreq, seq_id, flat)
        result = RequestResult(
            request=req, seq_id=seq_id, outcome=outcome, prompt_tokens=prompt_len,
            hit_tokens=lookup.num_hit_tokens, hit_blocks=hit_blocks, new_blocks=new_prompt,
            output_blocks=output_blocks, evicted_blocks=0,
            prompt_blocks=prompt_blocks, recomputed_last_block=recomputed,
            output_tokens=decoded, message=message,
            groups=tuple(GroupHit(real, null, len(new_ids[g]))
                         for g, (real, null) in enumerate(lookup.group_counts)),
            reasons=self.reasons.classify(req, seen, hit_blocks) if seen is not None else None,
        )
        if not self.detail:
            return result, None, []
        return result, self._seq_view(req, seq_id, lookup, tables, recomputed, computed), flat

    def _recomputes_last_block(self, vreq: Any, prompt_len: int, hit_blocks: int) -> bool:
        """vLLM caps a hit at prompt_len - 1 tokens, so a block-aligned prompt whose last
        block is cached still recomputes that whole block."""
        bs = self.settings.block_size
        if not self.settings.enable_caching or prompt_len % bs:
            return False
        last = prompt_len // bs - 1
        if hit_blocks != last:
            return False
        block_hash = self.backend.request_block_hash(vreq, last)
        if block_hash is None:
            return False
        # Several groups: the block counts as cached when every full-attention group
        # holds it (sliding-window groups keep only blocks near their replay boundaries).
        groups = [g.index for g in self.backend.groups if g.kind == "full"] or [0]
        return all(self.backend.is_cached(block_hash, g) for g in groups)

    def _decode(self, vreq: Any, out_tokens: tuple[int, ...]) -> tuple[int, int]:
        """Feed output tokens as vLLM's decode steps would. Returns tokens produced and
        the blocks allocate_slots handed out for them (over every group)."""
        b = self.backend
        bs = self.settings.block_size
        n = len(out_tokens)
        b.append_output(vreq, out_tokens[0])  # the prefill step samples the first token
        produced = 1
        blocks = 0
        computed = b.num_computed_tokens(vreq)
        while produced < n:
            # k decode steps, up to the next block boundary. Token-by-token, each step
            # computes the last token and samples the next; append the k - 1 tokens the
            # inner steps would sample first, so vLLM sees the same tokens when it caches.
            k = min(bs - computed % bs, n - produced)
            if k > 1:
                b.append_output(vreq, list(out_tokens[produced : produced + k - 1]))
            b.new_step()
            new = b.allocate(vreq, k)
            if new is None:
                return produced, blocks
            blocks += sum(len(g) for g in new)
            produced += k - 1
            computed += k
            b.set_num_computed_tokens(vreq, computed)
            b.append_output(vreq, out_tokens[produced])
            produced += 1
        return produced, blocks

    def _seq_view(self, req: TraceRequest, seq_id: str, lookup: Lookup, tables: GroupIds,
                  recomputed: bool, computed: int) -> SeqView:
        """Block states per group; ``computed`` is the tokens whose KV vLLM computed (the
        last sampled token never is, so the block holding it stays partial and uncached)."""
        bs = self.settings.block_size
        prompt_blocks = cdiv(req.num_prompt_tokens, bs)
        key_before = self._mirror.key.__getitem__  # the pool before this step
        null = self.backend.null_block_id
        last = prompt_blocks - 1 if recomputed else None
        out: list[GroupTable] = []
        for g, block_ids in enumerate(tables):
            hits = [BlockState.HIT_FREE if r == 0 else BlockState.HIT_SHARED
                    for r in lookup.ref_cnts[g]]
            # vLLM's null block stands where a sliding window needs no block.
            states = table_states(block_ids, hits=hits, held=0, computed=computed,
                                  block_size=bs, recomputed_index=last, key_before=key_before,
                                  null_block=null)
            out.append(GroupTable(g, block_ids, states))
        return SeqView(
            seq_id=seq_id, request_id=req.request_id, tables=tuple(out),
            num_prompt_tokens=req.num_prompt_tokens, num_tokens=computed,
            num_hit_tokens=lookup.num_hit_tokens, num_prompt_blocks=prompt_blocks,
        )
