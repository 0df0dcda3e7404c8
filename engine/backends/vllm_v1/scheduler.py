"""Serve mode's one contact with vLLM: its real V1 Scheduler, driven on the CPU.

Everything vLLM runs here is vLLM's own code: ``VllmConfig`` -> ``Scheduler`` (or
``AsyncScheduler``) -> the ``KVCacheManager`` the scheduler builds itself from a
``KVCacheConfig`` with one full-attention group. Only the model is replaced: after each
``schedule()`` a ``ModelRunnerOutput`` is built on the CPU that "samples" the trace's
output tokens, and is fed to ``update_from_output``. Token budget, chunked prefill,
prefix-cache lookups, preemption and finishing are vLLM's decisions. No GPU, no
weights, no tokenizer, no network.

How the config is built offline: engine.backends.vllm_v1.serve_config.

Nothing is monkeypatched. One scheduler attribute is written: ``kv_event_publisher``
is replaced by an in-memory ``EventPublisher`` (vLLM's own publisher ABC), because
``KVEventsConfig.publisher`` only accepts "null" (drops events) or "zmq" (opens a
socket); the scheduler hands its KV events to the publisher in ``update_from_output``.

Scheduler vs AsyncScheduler (vLLM 0.33's default: ``async_scheduling=None`` resolves to
True for this config)
    Scheduler, one iteration = ``EngineCore.step``: schedule(k), run the model,
    update_from_output(k). A request's sampled token is in its token list before
    schedule(k + 1).
    AsyncScheduler, one iteration = ``EngineCore.step_with_batch_queue`` with a queue of
    ``max_concurrent_batches`` (2): schedule(k) is issued before the output of k - 1 has
    been processed, so every iteration is schedule(k) + update_from_output(k - 1), the
    first iteration only schedules, and the queue drains at the end. Decode tokens are
    scheduled as output placeholders (``num_output_placeholders``) and become real
    tokens one iteration later; blocks they fill are hashed (cached) in
    update_from_output, not at allocation. A request finishes (and frees its blocks) one
    iteration later than with the sync scheduler; a preempted request's in-flight token
    is still delivered, and the request is not resumed until it has been. vLLM avoids
    scheduling a step past max_tokens, so output lengths are the same.
"""


from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.backends.vllm_v1 import events
from engine.backends.vllm_v1.evictions import EvictionLedger
from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION, V, import_vllm
from engine.backends.vllm_v1.internals import SchedInternals, check_scheduler, ensure
from engine.backends.vllm_v1.hybrid import plan_kv_cache
from engine.backends.vllm_v1.kv_config import build_kv_cache_config
from engine.backends.vllm_v1.manager import (
    GroupCounts,
    GroupIds,
    PoolReader,
    default_groups,
    group_counts,
)
from engine.backends.vllm_v1.tier import CpuTier
from engine.backends.vllm_v1.serve_config import build_vllm_config, import_scheduler
from engine.backends.vllm_v1.stats import CacheTally
from engine.backends.vllm_v1.tenancy import request_kwargs
from engine.model import NO_EVENTS, KVEvent, KVGroupInfo, Rows, SchedulerInfo
from engine.tier_records import TierPart
from engine.errors import UserError
from engine.replay.miss_reasons import SeenLookup
from engine.settings import EngineSettings, ServeSettings


# -- plain data out ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admission:
    """A request moved from waiting to running by one schedule() call."""

    seq_id: str
    num_cached_tokens: int  # the scheduler's prefix-cache hit (its num_computed_tokens)
    block_ids: GroupIds  # the whole block table per KV cache group after admission
    resumed: bool  # re-admitted after a preemption (it recomputes)
    # Of num_cached_tokens, loaded from the CPU tier (vLLM's PrefillStats); None: no tier.
    external_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One schedule() call, reduced to plain data."""

    num_scheduled_tokens: dict[str, int]
    total_tokens: int
    admissions: tuple[Admission, ...]  # resumed ones first (they head the waiting queue)
    new_block_ids: dict[str, GroupIds]  # blocks added to already-running requests, per group
    preempted: tuple[str, ...]  # preempted by this call (blocks freed; will recompute)
    sampled: tuple[str, ...]  # requests the model samples a token for (not mid-prefill)
    # Requests whose prefix the CPU tier loads asynchronously (vLLM's
    # WAITING_FOR_REMOTE_KVS): the GPU blocks the load fills, handed out to them now.
    loading: dict[str, GroupIds] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReqOutput:
    seq_id: str
    new_token_ids: tuple[int, ...]
    finish_reason: str | None
    num_cached_tokens: int | None  # prefill_stats.num_cached_tokens, when reported
    num_local_cached_tokens: int | None = None  # of which the GPU prefix cache's
    num_external_cached_tokens: int | None = None  # of which the connector's (CPU tier)


@dataclass(frozen=True, slots=True)
class Iteration:
    """One engine-core step: a schedule() and/or an update_from_output()."""

    scheduled: Scheduled | None
    processed: Scheduled | None  # the schedule whose model output was processed now
    outputs: tuple[ReqOutput, ...]
    events: Rows[KVEvent]  # empty without detail
    evicted_hashes: int  # hashes in vLLM's BlockRemoved events (cached blocks evicted)
    peak_used_blocks: int  # most blocks held at any point of the step
    # Cached blocks handed to each request by this step's schedule(): the evictions its
    # allocation caused (engine.backends.vllm_v1.evictions); requests with none left out.
    evicted_by: dict[str, int]
    tier: TierPart | None = None  # vLLM's CPU offloading tier after the step
    # Their hashes, per request; every hash of this step's BlockStored events with the
    # request whose block it is; what vLLM's hash map held at each prefix lookup made in
    # this step (engine.replay.miss_reasons), by seq id.
    evictions: dict[str, list[bytes]] = field(default_factory=dict)
    stores: list[tuple[bytes, str | None]] = field(default_factory=list)
    lookups: dict[str, SeenLookup] = field(default_factory=dict)
    # Several KV cache groups: what each prefix lookup of this step handed back per group,
    # (real cached blocks, null-block places), by seq id; the last one per request counts.
    group_lookups: dict[str, GroupCounts] = field(default_factory=dict)

    @property
    def executed(self) -> bool:
        return self.scheduled is not None and self.scheduled.total_tokens > 0



# -- the backend ------------------------------------------------------------------------------
class V1Scheduler(PoolReader):
    """Owns one real vLLM Scheduler (sync or async) and the engine-core loop around it."""

    def __init__(self, settings: EngineSettings, serve: ServeSettings | None = None,
                 verbose: bool = False) -> None:
        settings.validate()
        serve = serve or ServeSettings()
        serve.validate()
        self.settings = settings
        self.serve = serve
        self.version = import_vllm(verbose)
        s = import_scheduler(verbose)
        if settings.layout.from_model:
            if serve.tier.enabled:
                raise UserError("the CPU offloading tier replays prefix-tui's own KV layout; "
                                "not with --hf-config yet")
            # The model's groups, by vLLM's own planning (engine.backends.vllm_v1.hybrid).
            plan = plan_kv_cache(settings, serve)
            self.settings = settings = plan.settings
            self.vllm_config, kv_cache_config = plan.vllm_config, plan.kv_cache_config
            block_size, hash_block_size = plan.scheduler_block_size, plan.hash_block_size
            self.groups: tuple[KVGroupInfo, ...] = plan.groups
        else:
            kv_cache_config = build_kv_cache_config(settings)
            self.vllm_config = build_vllm_config(settings, serve, kv_cache_config)
            # As EngineCore.__init__ builds it.
            block_size, hash_block_size = s.resolve_kv_cache_block_sizes(
                kv_cache_config, self.vllm_config
            )
            self.groups = default_groups(settings)
        sc = self.vllm_config.scheduler_config
        self.scheduler = sc.get_scheduler_cls()(
            vllm_config=self.vllm_config,
            kv_cache_config=kv_cache_config,
            structured_output_manager=s.StructuredOutputManager(self.vllm_config),
            block_size=block_size,
            hash_block_size=hash_block_size,
            log_stats=True,
        )
        probe = V.Request("probe", [1], V.SamplingParams(max_tokens=1), None)
        ensure(check_scheduler(self.scheduler, probe, s.ModelRunnerOutput), "scheduler",
               self.version, TESTED_VLLM_VERSION)
        self._collector = s.Collector()
        SchedInternals.set_event_publisher(self.scheduler, self._collector)
        cc = self.vllm_config.cache_config
        hash_fn = V.get_hash_fn_by_name(cc.prefix_caching_hash_algo)
        V.kv_cache_utils.init_none_hash(hash_fn)
        self._block_hasher = (
            V.kv_cache_utils.get_request_block_hasher(
                hash_block_size, hash_fn, self.vllm_config.num_hash_lookahead_tokens
            )
            if cc.enable_prefix_caching
            else None
        )
        self._attach(SchedInternals.manager(self.scheduler))
        self.tier: CpuTier | None = (
            CpuTier(self.scheduler, serve.tier, kv_cache_config, self.version)
            if serve.tier.enabled else None
        )
        self._ledger = EvictionLedger(self._pool, settings.block_size)
        # Prefix lookups happen inside schedule(): what vLLM's hash map held at each one.
        self.want_lookups = bool(cc.enable_prefix_caching) and self.reason_group is not None
        self.want_content = False  # also hash prompts without salt or adapter (set by the replay)
        self._lookups: dict[str, SeenLookup] = {}
        # Several groups: each lookup's blocks per group (rows' groups, as sequentially).
        self._group_lookups: dict[str, GroupCounts] = {}
        self.several_groups = len(self.groups) > 1
        if self.want_lookups or self.several_groups:
            SchedInternals.observe_lookups(self.scheduler, self._seen)
        self.is_async = bool(sc.async_scheduling)
        self.scheduler_name = type(self.scheduler).__name__
        self.batch_queue_size = self.vllm_config.max_concurrent_batches
        self.max_model_len = self.vllm_config.model_config.max_model_len
        self.max_num_seqs = sc.max_num_seqs
        self.max_num_batched_tokens = sc.max_num_batched_tokens
        self.enable_chunked_prefill = bool(sc.enable_chunked_prefill)
        self.model_runner = "v2" if self.vllm_config.use_v2_model_runner else "v1"
        # batch queue of (scheduled, plain), newest first, as step_with_batch_queue keeps it
        self._queue: deque[tuple[Any, Any, Scheduled]] = deque()
        self._admitted_before: set[str] = set()
        self.cache = CacheTally()

    def _of_group(self, evictions: dict[str, list[tuple[bytes, int]]]) -> dict[str, list[bytes]]:
        """The evicted hashes of the group miss reasons read, per request."""
        g = self.reason_group
        out = {k: [h for h, grp in v if grp == g] for k, v in evictions.items()}
        return {k: v for k, v in out.items() if v}

    def _seen(self, request: Any, num_hit_tokens: int, blocks: Any) -> None:
        """Called by vLLM's scheduler right after each prefix lookup (the last one before
        an admission is the one that counts: a request that did not fit is looked up
        again)."""
        if self.want_lookups:
            self._lookups[request.request_id] = self.seen_lookup(
                request, num_hit_tokens, self.want_content)
        if self.several_groups:
            self._group_lookups[request.request_id] = group_counts(blocks)

    # -- requests ---------------------------------------------------------------------------
    def new_request(self, seq_id: str, prompt_token_ids, max_tokens: int, arrival_time: float,
                    *, cache_salt: str | None = None, lora_name: str | None = None):
        """A vLLM Request; ``cache_salt`` and ``lora_name`` enter its block hashes."""
        params = V.SamplingParams(max_tokens=max_tokens, ignore_eos=True)
        return V.Request(
            seq_id, list(prompt_token_ids), params, None,
            arrival_time=arrival_time, block_hasher=self._block_hasher,
            **request_kwargs(cache_salt, lora_name),
        )

    def add(self, request) -> None:
        self.scheduler.add_request(request)

    def has_work(self) -> bool:
        """Anything to schedule, or a batch whose output is not processed yet."""
        return self.scheduler.has_requests() or bool(self._queue)

    # -- one engine-core step ---------------------------------------------------------------
    def step(self, token_for: Callable[[str], int], detail: bool = True) -> Iteration:
        """One iteration of vLLM's engine core: EngineCore.step (sync) or
        step_with_batch_queue (async). ``token_for(seq_id)`` is the token the model
        samples for a request (called once per sampled token, in order). Without
        ``detail`` the KV events are only counted."""
        sched = self.scheduler
        peak = self.used_blocks()

        def done(scheduled: Scheduled | None, processed: Scheduled | None,
                 outputs: tuple[ReqOutput, ...]) -> Iteration:
            raw = self._drain_events()
            # The CPU tier's events (medium "CPU") are not the GPU pool's.
            gpu = raw if self.tier is None else self.tier.gpu_events(raw)
            # Hand-outs first: they depend on which blocks held a hash before this step.
            evictions = self._ledger.handed_out(scheduled) if scheduled is not None else {}
            stores = self._ledger.stored(gpu)
            kv_events = events.convert(raw) if detail else NO_EVENTS
            removed = events.count_removed(gpu)
            tier = self.tier.part(detail) if self.tier is not None else None
            lookups, self._lookups = self._lookups, {}
            group_lookups, self._group_lookups = self._group_lookups, {}
            return Iteration(scheduled, processed, outputs, kv_events, removed,
                             max(peak, self.used_blocks()),
                             {k: len(v) for k, v in evictions.items()}, tier,
                             self._of_group(evictions), [(h, who) for h, who, g in stores
                                                         if g == self.reason_group],
                             lookups, group_lookups)

        if not self.is_async:
            if not sched.has_requests():
                return done(None, None, ())
            so = sched.schedule()
            plain = self._plain(so)
            peak = max(peak, self.used_blocks())
            mro = self._runner_output(so, plain, token_for)
            return done(plain, plain, self._update(so, mro))
        queue = self._queue
        plain = None
        if sched.has_requests():
            so = sched.schedule()
            plain = self._plain(so)
            peak = max(peak, self.used_blocks())
            mro = self._runner_output(so, plain, token_for)
            queue.appendleft((so, mro, plain))
            executed = so.total_num_scheduled_tokens > 0
            if len(queue) < self.batch_queue_size and (executed or sched.has_requests()):
                return done(plain, None, ())
        elif not queue:
            return done(None, None, ())
        so, mro, processed = queue.pop()
        return done(plain, processed, self._update(so, mro))

    def _plain(self, so: Any) -> Scheduled:
        sched = self.scheduler
        admissions: list[Admission] = []
        new_block_ids: dict[str, tuple[int, ...]] = {}
        for nr in so.scheduled_new_reqs:
            resumed = nr.req_id in self._admitted_before
            external = None
            if self.tier is not None and not resumed:
                external = SchedInternals.external_cached_tokens(
                    SchedInternals.request(sched, nr.req_id))
            admissions.append(Admission(
                nr.req_id, nr.num_computed_tokens, tuple(tuple(g) for g in nr.block_ids) if nr.block_ids else (),
                resumed, external,
            ))
        cached = so.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            ids = cached.new_block_ids[i]
            blocks = tuple(tuple(g) for g in ids) if ids else ()
            if rid in cached.resumed_req_ids:
                admissions.append(Admission(rid, cached.num_computed_tokens[i], blocks, True))
            elif any(blocks):
                new_block_ids[rid] = blocks
        admissions.sort(key=lambda a: not a.resumed)  # stable: resumed first
        for a in admissions:
            self._admitted_before.add(a.seq_id)
        sampled = tuple(
            rid for rid in so.num_scheduled_tokens
            if not SchedInternals.is_prefill_chunk(SchedInternals.request(sched, rid))
        )
        loading: dict[str, GroupIds] = {}
        if self.tier is not None:
            loading = self.tier.async_load_blocks(so)
        return Scheduled(
            loading=loading,
            num_scheduled_tokens=dict(so.num_scheduled_tokens),
            total_tokens=so.total_num_scheduled_tokens,
            admissions=tuple(admissions),
            new_block_ids=new_block_ids,
            preempted=tuple(sorted(so.preempted_req_ids)),
            sampled=sampled,
        )

    def _runner_output(self, so: Any, plain: Scheduled, token_for: Callable[[str], int]) -> Any:
        """What a model runner returns for this batch: one sampled token per request whose
        scheduled chunk reaches the end of its known tokens, none for a partial prefill."""
        s = import_scheduler()
        # The stand-in worker answers the offloading connector's jobs (None: no tier).
        kv_output = self.tier.worker_output(so) if self.tier is not None else None
        if so.total_num_scheduled_tokens == 0:
            # No tokens, but the connector still needs its jobs' completions: an empty
            # output here would leave the scheduler waiting for good.
            return s.ModelRunnerOutput.with_kv_conn_output_only(kv_output)
        req_ids = list(so.num_scheduled_tokens)
        sampled = set(plain.sampled)
        return s.ModelRunnerOutput(
            req_ids=req_ids,
            req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
            sampled_token_ids=[[token_for(rid)] if rid in sampled else [] for rid in req_ids],
            kv_connector_output=kv_output,
        )

    def _update(self, so: Any, mro: Any) -> tuple[ReqOutput, ...]:
        engine_outputs = self.scheduler.update_from_output(so, mro)
        outs: list[ReqOutput] = []
        for eco in engine_outputs.values():
            for o in eco.outputs:
                ps = o.prefill_stats
                outs.append(ReqOutput(
                    o.request_id, tuple(o.new_token_ids),
                    str(o.finish_reason) if o.finish_reason is not None else None,
                    ps.num_cached_tokens if ps is not None else None,
                    ps.num_local_cached_tokens if ps is not None else None,
                    ps.num_external_cached_tokens if ps is not None else None,
                ))
            stats = eco.scheduler_stats
            if stats is not None and stats.prefix_cache_stats is not None:
                self.cache.observe(stats.prefix_cache_stats)
            if stats is not None and self.tier is not None:
                self.cache.observe_connector(stats.connector_prefix_cache_stats)
                self.tier.observe_stats(stats.kv_connector_stats)
        return tuple(outs)


    def _drain_events(self) -> list:
        """KV events published by the scheduler, plus any still in the manager's queue
        (events of a schedule() whose update has not run yet)."""
        raw = list(self._collector.events)
        self._collector.events.clear()
        raw.extend(self.manager.take_events() or ())
        if self.tap is not None:
            self.tap.events.extend(raw)  # --export-events / --serve-events (kvstream)
        return raw

    def take_removed_count(self) -> int:
        """Drain the KV events, counting only evicted hashes (headless fast path)."""
        raw = self._drain_events()
        return events.count_removed(raw if self.tier is None else self.tier.gpu_events(raw))

    def take_events(self) -> Rows[KVEvent]:
        return events.convert(self._drain_events())

    # -- reading the scheduler ---------------------------------------------------------------
    def running_ids(self) -> list[str]:
        return [r.request_id for r in SchedInternals.running(self.scheduler)]

    def waiting_ids(self) -> list[str]:
        return SchedInternals.waiting_ids(self.scheduler)

    def progress(self, seq_id: str) -> tuple[int, int]:
        req = SchedInternals.request(self.scheduler, seq_id)
        return SchedInternals.progress(req) if req is not None else (0, 0)

    # -- reading the pool: engine.vllm_v1.PoolReader, plus -------------------------------------
    def used_blocks(self) -> int:
        """Blocks held by requests (the null block excluded)."""
        return self.settings.num_blocks - 1 - self._pool.get_num_free_blocks()

    def info(self) -> SchedulerInfo:
        return SchedulerInfo(
            scheduler=self.scheduler_name,
            async_scheduling=self.is_async,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            enable_chunked_prefill=self.enable_chunked_prefill,
            max_model_len=self.max_model_len,
            model_runner=self.model_runner,
            iteration_time_s=self.serve.iteration_time_s,
        )
