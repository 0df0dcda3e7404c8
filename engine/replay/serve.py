"""Serve mode: replay a trace on vLLM's real V1 Scheduler, one record per iteration.

Requests arrive by the trace's clock, run concurrently, hold their blocks while they
decode, and are preempted and recomputed when the pool runs out, all decided by vLLM's
own Scheduler / AsyncScheduler (engine.vllm_v1_sched). Only the model is replaced: it
"samples" the trace's output tokens (engine.replay.synth_output_tokens when only an
output length is known), and every request asks for exactly its output length
(max_tokens = output length, ignore_eos).

The simulated clock
    Requests are taken in trace order; one is added to vLLM's waiting queue once its
    arrival_time <= clock (a timestamp earlier than the one before it counts as the one
    before it). Each iteration that runs the model (schedules > 0 tokens) advances the
    clock by a fixed ``iteration_time_s`` (default 0.02 s): with chunked prefill every
    iteration processes at most max_num_batched_tokens, so time is roughly proportional
    to work. An iteration that schedules nothing costs no time. When vLLM has nothing
    at all to do, the clock jumps to the next arrival. ``record.clock`` is the time at
    the start of the iteration.

Records are engine.model.StepRecord, as in sequential mode: ``admitted`` holds the
requests admitted for the first time this iteration (hit_tokens is the scheduler's
prefix hit, the number it reports as prefill_stats.num_cached_tokens), ``seqs`` every
running sequence's block table; ``serve`` (engine.model.ServePart) what the scheduler did:
vLLM's queues, arrivals, preemptions, resumptions and the final rows of requests that
finished.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from engine import metrics
from engine.errors import UserError
from engine.model import (NO_CHANGE, NO_EVENTS, NO_EVICTIONS, GroupHit, KVEvent, Outcome,
                          RequestResult, Resumed, Rows, SeqView, ServePart, ServeSummary,
                          StepError, StepRecord, Totals, TraceRequest)
from engine.replay.common import (
    SYNTH_TOKEN_BASE,
    cdiv,
    counted,
    describe,
    describe_finish,
    make_record,
    synth_output_tokens,
    unserved,
    vllm_error,
)
from engine.replay.arrivals import Arrivals
from engine.replay.miss_reasons import MissTracker, SeenLookup
from engine.replay.pool_mirror import PoolMirror
from engine.replay.serve_groups import PromptGroups
from engine.replay.serve_tables import SeqTables, _Live

if TYPE_CHECKING:
    from engine.backends.vllm_v1.scheduler import Iteration, ReqOutput, Scheduled, V1Scheduler

MAX_STALLED_ITERATIONS = 1000  # iterations in a row with no progress before giving up


def _since(t: float | None, start: float) -> float | None:
    return None if t is None else round(t - start, 9)
@dataclass
class _StepData:
    arrived: list[str] = field(default_factory=list)
    rejected: list[RequestResult] = field(default_factory=list)


class ServeReplay(SeqTables):
    """Iterate StepRecords, one per vLLM scheduler iteration. ``detail=False`` skips block
    tables, block states and pool deltas (headless runs of big traces)."""

    def __init__(
        self,
        backend: V1Scheduler,
        requests: Iterable[TraceRequest],
        *,
        detail: bool = True,
        cancel: threading.Event | None = None,
        verify_pool: bool = False,
        keep_results: bool | None = None,
    ) -> None:
        self.backend = backend
        self.settings = backend.settings
        if len(self.settings.layout.groups) != 1:
            raise UserError("serve mode replays a single KV cache group for now")
        self.detail = detail
        self.cancel = cancel
        # The group whose table tells a recomputed last block: a full-attention one.
        self._full_group = next((g.index for g in backend.groups if g.kind == "full"), 0)
        self.verify_pool = verify_pool and detail  # tests: compare the mirror to a full scan
        # Final RequestResults per seq id hold the prompt tokens: a 12k-request Mooncake
        # run would keep ~6 GB. Kept by default only with detail (records hold them anyway).
        self.keep_results = detail if keep_results is None else keep_results
        serve = backend.serve
        self.arrivals = Arrivals(requests, closed_loop=serve.closed_loop,
                                 think_time_s=serve.think_time_s)
        self.clock = 0.0
        self.iterations = 0  # scheduler iterations (records that stepped vLLM)
        self.model_iterations = 0  # of which ran the model (> 0 tokens scheduled)
        self.totals = Totals()
        self.stopped_by_error = False
        self.results: dict[str, RequestResult] = {}  # final, per seq id (keep_results)
        self.cached_tokens: dict[str, int] = {}  # prefill_stats.num_cached_tokens per seq id
        self.cached_token_mismatches = 0
        self.preemptions = 0
        self.output_tokens = 0
        self.timed = 0  # finished requests with a first-token time, and their sums
        self.queue_wait_sum_s = self.ttft_sum_s = 0.0
        self.evictions = 0
        self.peak_used_blocks = 0
        self.submitted = self.finished = self.rejected = 0
        self._live: dict[str, _Live] = {}
        self._running_prev: list[str] = []
        self._stalled = 0
        self._mirror = PoolMirror(backend, count_hashes=True) if detail else None
        # Why blocks missed (engine.replay.miss_reasons); nothing to say with caching off.
        self.reasons = (MissTracker(self.settings.block_size)
                        if self.settings.enable_caching and backend.want_lookups else None)
        self._lookups: dict[str, SeenLookup] = {}  # the latest lookup of each waiting request
        self._groups = PromptGroups(backend.null_block_id) if backend.several_groups else None

    # -- arrivals ---------------------------------------------------------------------------
    def _take_arrivals(self, data: _StepData) -> None:
        b = self.backend
        for req, sent in self.arrivals.due(self.clock):
            seq_id = f"{req.index}"
            out = synth_output_tokens(req)
            message = ""
            if not out:
                # vLLM's max_tokens is at least 1: it always samples one token.
                out = (SYNTH_TOKEN_BASE + req.index * (1 << 24),)
                message = "output length 0: vLLM samples at least one token"
            prompt_len = req.num_prompt_tokens
            limit = b.max_model_len
            if prompt_len == 0 or prompt_len >= limit:
                reason = (
                    "empty prompt: vLLM rejects it" if prompt_len == 0 else
                    f"prompt of {prompt_len} tokens leaves no room for an output token "
                    f"within max_model_len {limit}"
                )
                data.rejected.append(self._rejected(req, seq_id, reason))
                continue
            capped = ""
            if prompt_len + len(out) > limit:
                # The sequential replay's rule (vLLM stops a request at max_model_len), so
                # both modes replay the same requests: the output is capped, as vLLM's
                # server caps a request that sets no max_tokens.
                capped = (f"output capped at {limit - prompt_len} of {len(out)} tokens by "
                          f"max_model_len {limit}")
                out = out[: limit - prompt_len]
            self._live[seq_id] = _Live(req=req, out=out, message=message,
                                       arrival=sent, capped=capped)
            if self.reasons is not None:
                self.reasons.saw(req)
                b.want_content = self.reasons.wants_content
            b.add(b.new_request(seq_id, req.prompt_token_ids, len(out), sent,
                                cache_salt=req.cache_salt, lora_name=req.lora_name))
            self.submitted += 1
            data.arrived.append(seq_id)

    def _rejected(self, req: TraceRequest, seq_id: str, message: str) -> RequestResult:
        self.rejected += 1
        self.arrivals.done(req, self.clock)  # a client gets its error: the next turn goes
        result = replace(unserved(req, seq_id, Outcome.TOO_LONG, self.settings.block_size,
                                  message), preemptions=0)
        if self.keep_results:
            self.results[seq_id] = result
        return result

    # -- the model ----------------------------------------------------------------------------
    def _token_for(self, seq_id: str) -> int:
        live = self._live[seq_id]
        i = live.sampled
        live.sampled += 1
        # Past max_tokens vLLM drops the token (the request is finished by then).
        return live.out[i] if i < len(live.out) else live.out[-1]

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StepRecord]:
        index = 0
        while True:
            if self.cancel is not None and self.cancel.is_set():
                return
            record = self.tick(index)
            if record is None:
                nxt = self.arrivals.next_time()
                if nxt is None:
                    return
                self.clock = max(self.clock, nxt)
                continue
            yield record
            index += 1
            if record.error is not None:
                self.stopped_by_error = True
                return

    def tick(self, index: int) -> StepRecord | None:
        """The arrivals due, then one iteration's record (None: vLLM has nothing to do)."""
        data = _StepData()
        self._take_arrivals(data)
        if not self.backend.has_work():
            return self._record(index, data, None, None) if data.rejected else None
        return self._step(index, data)

    def _step(self, index: int, data: _StepData) -> StepRecord:
        clock = self.clock
        try:
            it = self.backend.step(self._token_for, self.detail)
        except Exception as exc:  # vLLM raised: record it at this step and stop cleanly
            return self._record(index, data, None, vllm_error(exc), clock=clock)
        self.iterations += 1
        tier = it.tier
        # The stand-in worker moving KV to or from the CPU tier keeps the engine busy
        # even when no token is scheduled (an async load waiting on it): time passes.
        moving = tier is not None and bool(tier.in_flight or tier.loads_started
                                           or tier.stores_started or tier.loads_finished
                                           or tier.stores_finished)
        if it.executed:
            self.model_iterations += 1
        if it.executed or moving:
            self.clock += self.backend.serve.iteration_time_s
        error = None
        # Jobs in flight finish by the stand-in's latency: waiting on them is progress.
        progressed = it.executed or bool(it.outputs) or moving
        self._stalled = 0 if progressed else self._stalled + 1
        if self._stalled >= MAX_STALLED_ITERATIONS:
            error = StepError(
                message=(
                    f"vLLM's scheduler made no progress for {self._stalled} iterations "
                    f"({len(self.backend.waiting_ids())} waiting, "
                    f"{len(self.backend.running_ids())} running)"
                ),
                traceback="",
            )
        try:
            return self._record(index, data, it, error, clock=clock)
        except Exception as exc:  # our own bookkeeping failed (a bug): show it, stop
            error = vllm_error(exc, "in serve replay")
            return self._record(index, _StepData(), None, error, clock=clock)

    # -- building the record ----------------------------------------------------------------
    def _record(self, index: int, data: _StepData, it: Iteration | None,
                error: StepError | None, clock: float | None = None) -> StepRecord:
        b = self.backend
        admitted: list[RequestResult] = list(data.rejected)
        for r in data.rejected:
            self._add_totals(r)
        finished: list[str] = []
        finished_results: list[RequestResult] = []
        resumed: list[Resumed] = []
        preempted: tuple[str, ...] = ()
        events: Rows[KVEvent] = NO_EVENTS
        scheduled: Scheduled | None = it.scheduled if it is not None else None
        if it is not None:
            events = it.events
            self.peak_used_blocks = max(self.peak_used_blocks, it.peak_used_blocks)
            self.evictions += it.evicted_hashes
            self._attribute_evictions(it)
            if self.reasons is not None:
                self._history(index, it)
            if self._groups is not None:  # before this iteration's admissions
                self.totals = self._groups.step(it, self._live, self.totals)
            if scheduled is not None:
                admitted_now = {a.seq_id for a in scheduled.admissions}
                for seq_id, groups in scheduled.loading.items():
                    live = self._live[seq_id]
                    live.loaded = frozenset(groups[0])
                    live.held_while_loading = seq_id not in admitted_now
                preempted = scheduled.preempted
                self.preemptions += len(preempted)
                for seq_id in preempted:
                    self._live[seq_id].preemptions += 1
                for a in scheduled.admissions:
                    live = self._live[a.seq_id]
                    live.hit_tokens = a.num_cached_tokens
                    if live.first_scheduled is None:
                        live.first_scheduled = self.clock if clock is None else clock
                    seen = self._lookups.pop(a.seq_id, None)
                    groups = self._groups.admitted(a, live.req, scheduled) if self._groups else ()
                    if a.resumed:
                        resumed.append(Resumed(a.seq_id, a.num_cached_tokens))
                        continue
                    result = self._admission_result(live, a.seq_id, a.num_cached_tokens,
                                                    a.block_ids[self._full_group], seen,
                                                    a.external_tokens, groups)
                    live.result = result
                    admitted.append(result)
                    self._add_totals(result)
            for o in it.outputs:
                fin = self._output(o)
                if fin is not None:
                    finished.append(o.seq_id)
                    finished_results.append(fin)
        self._sync_counters()
        running = b.running_ids()
        waiting = b.waiting_ids()
        seqs: tuple[SeqView, ...] = ()
        delta, evicted = NO_CHANGE, NO_EVICTIONS
        if self.detail and it is not None:
            seqs, touched = self._seq_views(scheduled, running, finished)
            delta, evicted = self._mirror.diff(touched)
            if self.verify_pool:
                self._verify()
        for seq_id in finished:
            self._live.pop(seq_id, None)
        self._running_prev = running
        serve = ServePart(
            iteration=self.iterations,
            scheduled_tokens=scheduled.total_tokens if scheduled is not None else 0,
            used_blocks=b.used_blocks(),
            arrived=tuple(data.arrived),
            resumed=tuple(resumed),
            preempted=preempted,
            waiting=tuple(waiting),
            running=tuple(running),
            finished_results=tuple(finished_results),
        )
        return make_record(
            b, self._mirror, index=index, clock=self.clock if clock is None else clock,
            admitted=tuple(admitted), seqs=seqs, finished=tuple(finished), evicted=evicted,
            events=events, pool_delta=delta,
            totals=self.totals, error=error,
            note=self._note(admitted, finished_results, finished, preempted, resumed, scheduled,
                            it.tier if it is not None else None),
            serve=serve, tier=it.tier if it is not None else None,
        )

    def _history(self, index: int, it: Iteration) -> None:
        """This iteration's evictions and stores, with their requests, into the history."""
        assert self.reasons is not None
        self._lookups.update(it.lookups)
        for seq_id, hashes in it.evictions.items():
            self.reasons.removed(hashes, index, self._live[seq_id].req)
        by: dict[str, list[bytes]] = {}
        for h, who in it.stores:
            if who is not None and who in self._live:
                by.setdefault(who, []).append(h)
        for seq_id, hashes in by.items():
            self.reasons.stored(hashes, self._live[seq_id].req)

    def _admission_result(self, live: _Live, seq_id: str, hit_tokens: int, block_ids: tuple[int, ...],
                          seen: SeenLookup | None = None, external: int | None = None,
                          groups: tuple[GroupHit, ...] = ()):
        bs = self.settings.block_size
        prompt_len = live.req.num_prompt_tokens
        prompt_blocks = cdiv(prompt_len, bs)
        hit_blocks = hit_tokens // bs
        recomputed = False
        if self.detail and prompt_len % bs == 0 and hit_blocks == prompt_blocks - 1 and prompt_blocks:
            last = block_ids[prompt_blocks - 1] if len(block_ids) >= prompt_blocks else None
            if last is not None:
                h = self.backend.slot(last).block_hash
                recomputed = h is not None and self._mirror.hash_count.get(h, 0) > 0
        # CPU tier: the full blocks past the GPU's (block-aligned) hit vLLM loaded from it.
        loaded = None if external is None else hit_blocks - (hit_tokens - external) // bs
        reasons = (self.reasons.classify(live.req, seen, hit_blocks, loaded)
                   if self.reasons is not None and seen is not None else None)
        if reasons is not None:  # read at the lookup (the mirror is as of the last iteration)
            recomputed = reasons.last_token > 0
        return RequestResult(
            request=live.req, seq_id=seq_id, outcome=Outcome.OK, prompt_tokens=prompt_len,
            hit_tokens=hit_tokens, hit_blocks=hit_blocks,  # several groups: blocks of all
            new_blocks=sum(g.new_blocks for g in groups) if groups else prompt_blocks - hit_blocks,
            output_blocks=0, evicted_blocks=0, prompt_blocks=prompt_blocks,
            recomputed_last_block=recomputed, output_tokens=0, message=live.message,
            reasons=reasons, groups=groups,
        )

    def _output(self, o: ReqOutput) -> RequestResult | None:
        live = self._live.get(o.seq_id)
        if live is None:
            return None
        if o.new_token_ids and live.first_token is None:
            live.first_token = self.clock  # the end of this iteration
        for tok in o.new_token_ids:
            expected = live.out[live.delivered] if live.delivered < len(live.out) else None
            if tok != expected:
                raise RuntimeError(
                    f"request {o.seq_id}: vLLM returned token {tok} as output #{live.delivered}, "
                    f"the model sampled {expected}"
                )
            live.delivered += 1
        self.output_tokens += len(o.new_token_ids)
        if o.num_local_cached_tokens is not None and live.gpu_hit_tokens is None:
            live.gpu_hit_tokens = o.num_local_cached_tokens
            live.cpu_hit_tokens = o.num_external_cached_tokens
        if o.num_cached_tokens is not None:
            self.cached_tokens[o.seq_id] = o.num_cached_tokens
            if live.result is not None and o.num_cached_tokens != live.result.hit_tokens:
                self.cached_token_mismatches += 1
        if o.finish_reason is None:
            return None
        self.finished += 1
        self.arrivals.done(live.req, self.clock)
        base = live.result
        if base is None:  # finished before we saw it admitted: cannot happen in vLLM 0.33
            base = self._admission_result(live, o.seq_id, live.hit_tokens, ())
        bs = self.settings.block_size
        n = live.delivered
        outcome, message = base.outcome, base.message
        if live.capped and n == len(live.out):
            outcome, message = Outcome.TRUNCATED, live.capped
            self.totals = replace(self.totals, truncated=self.totals.truncated + 1)
        elif n != len(live.out):
            outcome = Outcome.TRUNCATED
            self.totals = replace(self.totals, truncated=self.totals.truncated + 1)
            message = (f"vLLM finished it ({o.finish_reason}) after {n} of {len(live.out)} "
                       "output tokens")
        result = replace(
            base, outcome=outcome, message=message, output_tokens=n,
            output_blocks=max(0, cdiv(base.prompt_tokens + n - 1, bs) - base.prompt_blocks),
            evicted_blocks=live.evicted, preemptions=live.preemptions,
            queue_wait_s=_since(live.first_scheduled, live.arrival),
            ttft_s=_since(live.first_token, live.arrival),
            finish_iteration=self.iterations, finish_time_s=round(self.clock, 9),
            gpu_hit_tokens=live.gpu_hit_tokens, cpu_hit_tokens=live.cpu_hit_tokens,
        )
        if result.ttft_s is not None:
            self.timed += 1
            self.queue_wait_sum_s += result.queue_wait_s or 0.0
            self.ttft_sum_s += result.ttft_s
        if self.keep_results:
            self.results[o.seq_id] = result
        return result

    def _attribute_evictions(self, it: Iteration) -> None:
        """Each eviction goes to the request the evicted block was handed to (see
        engine.backends.vllm_v1.evictions), so the rows add up to the totals."""
        if sum(it.evicted_by.values()) != it.evicted_hashes:
            raise RuntimeError(
                f"evictions attributed to requests ({sum(it.evicted_by.values())}) differ "
                f"from vLLM's BlockRemoved events ({it.evicted_hashes})"
            )
        for seq_id, n in it.evicted_by.items():
            self._live[seq_id].evicted += n

    def _add_totals(self, result: RequestResult) -> None:
        self.totals = metrics.add_request(self.totals, result, **self._vllm_counts())

    def _vllm_counts(self) -> dict[str, int]:
        return self.backend.cache.totals_fields()

    def _sync_counters(self) -> None:
        self.totals = replace(
            self.totals, evictions=self.evictions, preemptions=self.preemptions,
            **self._vllm_counts(),
        )

    def _note(self, admitted, finished_results, finished, preempted, resumed, scheduled,
              tier=None) -> str:  # noqa: ANN001 - TierPart | None
        parts: list[str] = []
        if scheduled is not None:
            n = len(scheduled.num_scheduled_tokens)
            parts.append(f"{scheduled.total_tokens} tokens scheduled for "
                         f"{n} request{'s' * (n != 1)}")
        if len(admitted) == 1:
            parts.append(f"admitted {admitted[0].request_id}: {describe(admitted[0])}")
        elif admitted:
            hit = sum(r.hit_blocks for r in admitted)
            total = sum(r.prompt_blocks for r in admitted)
            parts.append(f"admitted {len(admitted)} requests, {hit:,} of "
                         f"{counted(total, 'prompt block')} from cache")
        if resumed:
            parts.append(f"resumed {len(resumed)} preempted (recompute)")
        if preempted:
            # The trace's ids, as everywhere else on screen (seq ids are line indexes).
            ids = [self._live[s].req.request_id if s in self._live else s for s in preempted]
            parts.append(f"preempted {', '.join(ids)}: blocks freed, will recompute")
        if len(finished_results) == 1:
            r = finished_results[0]
            parts.append(f"finished {r.request_id}: {describe_finish(r)}")
        elif finished:
            parts.append(f"finished {len(finished)}")
        if scheduled is not None and scheduled.loading:
            ids = [self._live[s].req.request_id if s in self._live else s
                   for s in scheduled.loading]
            n = sum(len(g[0]) for g in scheduled.loading.values())
            parts.append(f"{', '.join(ids)}: loading {counted(n, 'block')} from the CPU tier")
        if tier is not None and (tier.blocks_loaded or tier.blocks_stored):
            parts.append(f"CPU tier: {tier.blocks_loaded:,} loaded, {tier.blocks_stored:,} "
                         f"stored, {tier.stored:,} of {counted(tier.num_blocks, 'block')} held")
        return "; ".join(parts)

    # -- figures ----------------------------------------------------------------------------------
    def summary(self) -> ServeSummary:
        """Serve figures (valid at any point; final once iteration ends)."""
        return ServeSummary(
            info=self.backend.info(),
            submitted=self.submitted,
            finished=self.finished,
            rejected=self.rejected,
            iterations=self.iterations,
            model_iterations=self.model_iterations,
            simulated_time_s=self.clock,
            resumed_lookups=self.backend.cache.preempted_requests,
            peak_kv_blocks=self.peak_used_blocks,
            usable_blocks=self.settings.num_blocks - 1,
            output_tokens=self.output_tokens,
            cached_token_mismatches=self.cached_token_mismatches,
            closed_loop=self.arrivals.closed_loop,
            delayed_turns=self.arrivals.delayed_turns,
            timed=self.timed,
            queue_wait_sum_s=self.queue_wait_sum_s,
            ttft_sum_s=self.ttft_sum_s,
            tier=self.backend.tier.summary() if self.backend.tier is not None else None,
        )
