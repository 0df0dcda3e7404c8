"""V0's block manager driven one request at a time (worker side, vLLM 0.10.1.1).

Two call orders (engine.settings.V0Settings.call_order):

- ``scheduler``: the calls vLLM 0.10.1.1's V0 Scheduler makes for a prefill and its
  decode steps (vllm/core/scheduler.py): get_num_cached_tokens (_schedule_prefills ->
  _get_num_new_uncached_and_cached_tokens) -> can_allocate (the watermark) -> allocate ->
  then in schedule(): access_all_blocks_in_seq(seq, now) -> get_common_computed_block_ids
  (the model runner's num_cached_tokens = that many blocks x block size) ->
  mark_blocks_as_computed; each decode step: can_append_slots -> append_slots -> access ->
  mark computed; a finished sequence is freed (free_finished_seq_groups).
- ``experiment``: the original experiment's allocate -> get_num_cached_tokens -> free,
  prompt only: no access time is ever given, nothing is marked computed.

``now`` is one tick per schedule() call (V0's scheduler passes time.time(): strictly
increasing between calls; a tick keeps runs identical). As in the V1 replay, a request
is freed at the start of the next step, so its record shows the blocks it held; nothing
else touches the block manager in between, so the order of calls is the same.

Records are built here with placeholder totals and note: the client computes both with
engine.metrics and engine.replay.common, which this interpreter does not import.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any

from engine.model import (
    NO_EVENTS,
    BlockState,
    EvictedBlock,
    GroupTable,
    Outcome,
    PoolChange,
    PoolDelta,
    RequestResult,
    SeqView,
    Slot,
    StepError,
    StepRecord,
    Totals,
    TraceRequest,
    evictions,
    V0Part,
    FREE_SLOT,
)
from engine.settings import EngineSettings, V0Settings
from engine.backends.vllm_v0.internals import V0Internals, error_site, hash_bytes

FREE_HEAD_LEN = 64  # as engine.replay.common: how much of the free order a record keeps


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class V0Sequential:
    def __init__(self, vllm: Any, settings: EngineSettings, v0: V0Settings,
                 detail: bool) -> None:
        self.V = vllm
        self.settings = settings
        self.v0 = v0
        self.detail = detail
        self.bs = settings.block_size
        self.manager = vllm.SelfAttnBlockSpaceManager(
            block_size=settings.block_size, num_gpu_blocks=settings.num_blocks,
            num_cpu_blocks=0, watermark=v0.watermark, enable_caching=settings.enable_caching,
        )
        self.internals = V0Internals(self.manager, vllm.Device.GPU)
        self.limit = settings.effective_max_model_len
        self.clock = 0.0
        self._prev: tuple[Any, list[int]] | None = None  # (V0 Sequence, its block ids)
        self._mirror: list[Slot] = [FREE_SLOT] * settings.num_blocks if detail else []

    # -- one step --------------------------------------------------------------------------
    def step(self, index: int, req: TraceRequest) -> StepRecord:
        touched: list[int] = list(self._prev[1]) if self._prev is not None else []
        before: dict[int, int] = {}
        seq_id = str(index)
        status = ""
        error: StepError | None = None
        error_block: int | None = None
        error_hash: bytes | None = None
        seq = None
        finished: tuple[str, ...] = ()
        try:
            finished = self._release_prev()
            # The evictor once the previous request is freed: what this one can hit or evict.
            before = self.internals.evictor_snapshot()
            if req.num_prompt_tokens > self.limit:
                # V0's scheduler ignores a prompt over its limit (_schedule_prefills).
                result = self._unserved(req, seq_id, Outcome.TOO_LONG,
                                        f"prompt of {req.num_prompt_tokens} tokens is over "
                                        f"max_model_len {self.limit}")
            elif self.v0.call_order == "experiment":
                result, seq = self._experiment(index, req, seq_id)
            else:
                result, seq, status = self._scheduler(index, req, seq_id)
        except Exception as exc:  # vLLM raised: record it at this step and stop
            where, error_block, error_hash = error_site(exc)
            message = f"{type(exc).__name__} inside vLLM V0: {exc}".splitlines()[0]
            if where:
                message = f"{message.rstrip(': ')} at {where}"
            error = StepError(message=message, traceback=traceback.format_exc())
            result = self._unserved(req, seq_id, Outcome.ERROR, message)
            self._prev = None
            seq = None
        table = self.manager.get_block_table(seq) if seq is not None else []
        if seq is not None:
            self._prev = (seq, list(table))
            touched.extend(table)
        gone = set(before.keys() - self.internals.evictor_table().keys())
        cached = self.internals.cached_blocks
        evicted_ids = [b for b in gone if cached.get(before[b]) != b]
        if error is None and len(evicted_ids) != result.evicted_blocks:
            result = _with(result, evicted_blocks=len(evicted_ids))
        delta: tuple[PoolChange, ...] = ()
        seqs: tuple[SeqView, ...] = ()
        if self.detail and error is None:
            held = self.internals.table_slots(seq.seq_id) if seq is not None else {}
            delta = self._diff(touched + sorted(gone), held)
            if seq is not None:
                seqs = (self._seq_view(req, seq_id, result, table, gone, set(evicted_ids)),)
        # A failed step shows the pool as it was before it: nothing of it is recorded.
        evicted = () if error is not None else tuple(
            EvictedBlock(b, hash_bytes(before[b])) for b in sorted(evicted_ids))
        return self._record(index, req, result, seqs, finished, evicted, delta, status,
                            error, error_block, error_hash)

    def finish(self) -> None:
        """Free the last request, as the scheduler would once it finished."""
        self._release_prev()

    # -- the two call orders ---------------------------------------------------------------
    def _new_seq(self, index: int, req: TraceRequest) -> tuple[Any, Any]:
        V = self.V
        seq = V.Sequence(index, V.token_inputs(list(req.prompt_token_ids)), self.bs)
        group = V.SequenceGroup(req.request_id, [seq], arrival_time=req.arrival_time)
        return seq, group

    def _experiment(self, index: int, req: TraceRequest, seq_id: str):
        seq, group = self._new_seq(index, req)
        self.manager.allocate(group)
        # The experiment called _computed_blocks_tracker.get_num_cached_tokens(seq); the
        # manager's public get_num_cached_tokens is that very call (block_manager.py:520).
        hit_tokens = self.manager.get_num_cached_tokens(seq)
        return self._served(req, seq_id, hit_tokens, req.num_prompt_tokens, 0), seq

    def _scheduler(self, index: int, req: TraceRequest, seq_id: str):
        V, bm = self.V, self.manager
        seq, group = self._new_seq(index, req)
        bm.get_num_cached_tokens(seq)  # _get_num_new_uncached_and_cached_tokens
        status = bm.can_allocate(group, num_lookahead_slots=0)
        if status != V.AllocStatus.OK:
            # Nothing else holds blocks in a sequential replay, so LATER would never turn OK.
            bm.remove_seq_from_computed_blocks_tracker(seq)
            need = cdiv(req.num_prompt_tokens, self.bs)
            return self._unserved(
                req, seq_id, Outcome.NOT_FITTED,
                f"V0's can_allocate said {status.name}: needs {need:,} blocks, keeping the "
                f"watermark of {bm.watermark_blocks:,} free in a pool of "
                f"{self.settings.num_blocks:,}"), None, status.name
        bm.allocate(group)
        seq.status = V.SequenceStatus.RUNNING
        self._schedule_step(seq, group, req.num_prompt_tokens, 1.0)
        # schedule() passes the common computed blocks to the model runner, which reports
        # len(blocks) x block_size as the sequence's num_cached_tokens.
        hit_tokens = len(bm.get_common_computed_block_ids([seq])) * self.bs
        seq.data.update_num_computed_tokens(req.num_prompt_tokens)
        out = req.output_token_ids or ()
        wanted = out[: max(self.limit - req.num_prompt_tokens, 0)]
        decoded = self._decode(seq, group, wanted) if wanted else 0
        result = self._served(req, seq_id, hit_tokens, seq.data.get_num_computed_tokens(),
                              decoded)
        if decoded < len(wanted):
            result = _with(result, outcome=Outcome.TRUNCATED, message=(
                f"decode stopped after {decoded} of {len(out)} output tokens: "
                "can_append_slots found no free block"))
        elif len(wanted) < len(out):
            result = _with(result, outcome=Outcome.TRUNCATED, message=(
                f"output capped at {len(wanted)} of {len(out)} tokens by max_model_len "
                f"{self.limit}"))
        return result, seq, status.name

    def _schedule_step(self, seq: Any, group: Any, chunk: int, ticks: float) -> None:
        """What schedule() does for a scheduled sequence after _schedule()."""
        self.clock += ticks
        self.manager.access_all_blocks_in_seq(seq, self.clock)
        self.manager.mark_blocks_as_computed(group, chunk)

    def _decode(self, seq: Any, group: Any, tokens: tuple[int, ...]) -> int:
        """Decode steps, up to a block boundary per append_slots call: V0 appends the unseen
        tokens of a sequence, so k steps at once allocate, promote (cache) and evict the
        same blocks in the same order as k single steps; the clock moves k ticks."""
        bm, bs = self.manager, self.bs
        self._append(seq, [tokens[0]])  # the prefill step samples the first token
        produced, n = 1, len(tokens)
        computed = seq.data.get_num_computed_tokens()
        while produced < n:
            k = min(bs - computed % bs, n - produced)
            self._append(seq, tokens[produced: produced + k - 1])
            if not bm.can_append_slots(group, num_lookahead_slots=0):
                return produced
            bm.append_slots(seq, num_lookahead_slots=0)
            self._schedule_step(seq, group, 1, float(k))
            produced += k - 1
            computed += k
            seq.data.update_num_computed_tokens(k)
            self._append(seq, [tokens[produced]])
            produced += 1
        return produced

    def _append(self, seq: Any, tokens) -> None:
        Logprob = self.V.Logprob
        for t in tokens:
            seq.append_token_id(t, {t: Logprob(0.0)})

    def _release_prev(self) -> tuple[str, ...]:
        if self._prev is None:
            return ()
        seq, _ids = self._prev
        self._prev = None
        seq.status = self.V.SequenceStatus.FINISHED_STOPPED
        self.manager.free(seq)
        return (str(seq.seq_id),)

    # -- results and records ---------------------------------------------------------------
    def _served(self, req: TraceRequest, seq_id: str, hit_tokens: int, computed: int,
                decoded: int) -> RequestResult:
        bs = self.bs
        prompt_blocks = cdiv(req.num_prompt_tokens, bs)
        hit_blocks = hit_tokens // bs
        return RequestResult(
            request=req, seq_id=seq_id, outcome=Outcome.OK,
            prompt_tokens=req.num_prompt_tokens, hit_tokens=hit_tokens, hit_blocks=hit_blocks,
            new_blocks=prompt_blocks - hit_blocks,
            output_blocks=max(cdiv(computed, bs) - prompt_blocks, 0), evicted_blocks=0,
            prompt_blocks=prompt_blocks, recomputed_last_block=False, output_tokens=decoded,
        )

    def _unserved(self, req: TraceRequest, seq_id: str, outcome: Outcome,
                  message: str) -> RequestResult:
        return RequestResult(
            request=req, seq_id=seq_id, outcome=outcome, prompt_tokens=req.num_prompt_tokens,
            hit_tokens=0, hit_blocks=0, new_blocks=0, output_blocks=0, evicted_blocks=0,
            prompt_blocks=cdiv(req.num_prompt_tokens, self.bs), recomputed_last_block=False,
            message=message,
        )

    def _diff(self, touched: list[int], held: dict[int, Slot]) -> tuple[PoolChange, ...]:
        """Update the mirror from V0 for the touched blocks; the changes."""
        out: list[PoolChange] = []
        mirror = self._mirror
        for bid in dict.fromkeys(touched):
            now = self.internals.slot(bid, held)
            if now != mirror[bid]:
                out.append(PoolChange(bid, mirror[bid], now))
                mirror[bid] = now
        return tuple(out)

    def _seq_view(self, req: TraceRequest, seq_id: str, result: RequestResult,
                  table: list[int], left_evictor: set[int], evicted: set[int]) -> SeqView:
        """Block states: V0's reported hits; then a block that left the evictor with its
        content kept is a hit too (allocate_immutable_block found it past the reported
        prefix); one whose content was evicted is E; a block not full is partial. In a
        sequential replay nothing else holds blocks, so every hit was evictor-resident."""
        bs = self.bs
        tokens = result.prompt_tokens + max(result.output_tokens - 1, 0)
        states: list[BlockState] = []
        for i, bid in enumerate(table):
            if i < result.hit_blocks:
                states.append(BlockState.HIT_FREE)
            elif (i + 1) * bs > tokens:
                states.append(BlockState.PARTIAL)
            elif bid in evicted:
                states.append(BlockState.NEW_EVICTED)
            elif bid in left_evictor:
                states.append(BlockState.HIT_FREE)
            else:
                states.append(BlockState.NEW)
        return SeqView(
            seq_id=seq_id, request_id=req.request_id,
            tables=(GroupTable(0, tuple(table), tuple(states)),),
            num_prompt_tokens=req.num_prompt_tokens, num_tokens=tokens,
            num_hit_tokens=result.hit_tokens, num_prompt_blocks=result.prompt_blocks,
        )

    def _record(self, index, req, result, seqs, finished, evicted, delta, status, error,
                error_block, error_hash) -> StepRecord:
        i = self.internals
        order = i.evictor_order(FREE_HEAD_LEN) if self.detail else []
        free_head = i.free_ids(FREE_HEAD_LEN)
        free_head += [e.block_id for e in order[: FREE_HEAD_LEN - len(free_head)]]
        caching = self.settings.enable_caching
        part = V0Part(
            call_order=self.v0.call_order, clock=self.clock,
            hit_rate=self.manager.get_prefix_cache_hit_rate(self.V.Device.GPU)
            if caching else None,
            can_allocate=status, watermark_blocks=self.manager.watermark_blocks,
            num_cached=len(i.cached_blocks), num_evictor=len(i.evictor_table()),
            evictor=tuple(order), error_block=error_block, error_hash=error_hash,
        )
        return StepRecord(
            index=index, clock=req.arrival_time, admitted=(result,), seqs=seqs,
            finished=finished, evicted=evictions(evicted), events=NO_EVENTS,
            pool_delta=PoolDelta.of(delta),
            free_head=tuple(free_head), num_free=self.manager.get_num_free_gpu_blocks(),
            num_cached_free=len(i.evictor_table()), totals=Totals(), error=error, v0=part,
        )


def _with(result: RequestResult, **changes) -> RequestResult:
    return replace(result, **changes)
