"""Serve mode's one contact with vLLM: its real V1 Scheduler, driven on the CPU.

Everything vLLM runs here is vLLM's own code: ``VllmConfig`` -> ``Scheduler`` (or
``AsyncScheduler``) -> the ``KVCacheManager`` the scheduler builds itself from a
``KVCacheConfig`` with one full-attention group. Only the model is replaced: after each
``schedule()`` a ``ModelRunnerOutput`` is built on the CPU that "samples" the trace's
output tokens, and is fed to ``update_from_output``. Token budget, chunked prefill,
prefix-cache lookups, preemption and finishing are vLLM's decisions. No GPU, no
weights, no tokenizer, no network.

How the configs are built offline
    ``ModelConfig`` needs a model: a tiny HF ``config.json`` (model_type ``llama``,
    architecture ``PrefixTuiReplayModel``) is written to a private temp dir, with
    ``skip_tokenizer_init=True``. The architecture is registered with
    ``vllm.ModelRegistry.register_model`` (vLLM's out-of-tree model API) as a stub
    ``nn.Module`` whose methods all raise: it is never built, it only lets vLLM classify
    the model as a text-generation model in-process. A built-in architecture would work
    too, but vLLM inspects those in a subprocess that imports the model code (~11 s
    per fresh cache dir). ``DeviceConfig(device="cpu")``: without a GPU, vLLM's platform
    is "unspecified" and ``device="auto"`` fails. ``cache_config.num_gpu_blocks`` is set
    to the pool size, as the engine core does after profiling.

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

import atexit
import json
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.records import KVEvent
from engine.vllm_v1 import (
    TESTED_VLLM_VERSION,
    AdapterMismatch,
    CacheTally,
    EngineSettings,
    PoolReader,
    _Internals,
    check_internals,
    import_vllm,
)

# `vllm serve`'s batch defaults for a GPU it does not class as H100-sized
# (EngineArgs.get_batch_defaults, UsageContext.OPENAI_API_SERVER). vLLM picks larger ones
# on H100/H200/B200 hosts; a replay should not depend on the machine it runs on.
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
DEFAULT_ITERATION_TIME_S = 0.02
REPLAY_ARCH = "PrefixTuiReplayModel"


@dataclass(frozen=True)
class ServeSettings:
    """vLLM's scheduler knobs (None: as vLLM) and the simulated clock."""

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool | None = None  # None: vLLM's default (on)
    async_scheduling: bool | None = None  # None: as vLLM resolves it (AsyncScheduler)
    iteration_time_s: float = DEFAULT_ITERATION_TIME_S  # simulated time per model step

    def validate(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        if not self.iteration_time_s > 0:
            raise UserError(f"the simulated iteration time must be > 0 (got {self.iteration_time_s})")


def serve_max_model_len(settings: EngineSettings) -> int:
    """vLLM refuses to start when one max-length sequence cannot fit in the pool (block 0
    is the null block), so serve mode caps the default there."""
    if settings.max_model_len is not None:
        return settings.max_model_len
    return settings.block_size * (settings.num_blocks - 1)


# -- lazy vLLM imports ----------------------------------------------------------------------
_v: dict[str, Any] = {}
_model_dir: str | None = None


def _import() -> dict[str, Any]:
    if _v:
        return _v
    import_vllm()
    import torch
    from torch import nn
    from vllm import ModelRegistry
    from vllm.config import (
        CacheConfig,
        DeviceConfig,
        KVEventsConfig,
        ModelConfig,
        SchedulerConfig,
        VllmConfig,
    )
    from vllm.distributed.kv_events import (
        AllBlocksCleared,
        BlockRemoved,
        BlockStored,
        EventPublisher,
    )
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import (
        get_request_block_hasher,
        init_none_hash,
        resolve_kv_cache_block_sizes,
    )
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
    from vllm.v1.request import Request
    from vllm.v1.structured_output import StructuredOutputManager

    class PrefixTuiReplayModel(nn.Module):
        """Stands in for a model in vLLM's registry; never built or run."""

        def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
            raise RuntimeError("prefix-tui replays the scheduler only; the model never runs")

        def embed_input_ids(self, input_ids):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

        def forward(self, input_ids, positions):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

        def compute_logits(self, hidden_states):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

    PrefixTuiReplayModel.__name__ = REPLAY_ARCH
    if REPLAY_ARCH not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(REPLAY_ARCH, PrefixTuiReplayModel)

    class _Collector(EventPublisher):
        """Keeps the scheduler's KV event batches in memory until taken."""

        def __init__(self) -> None:
            super().__init__(0)
            self.events: list = []

        def publish(self, events) -> None:  # noqa: ANN001
            self.events.extend(events.events)

        def shutdown(self) -> None:
            self.events.clear()

    _v.update(
        torch=torch, CacheConfig=CacheConfig, DeviceConfig=DeviceConfig,
        KVEventsConfig=KVEventsConfig, ModelConfig=ModelConfig,
        SchedulerConfig=SchedulerConfig, VllmConfig=VllmConfig,
        AllBlocksCleared=AllBlocksCleared, BlockRemoved=BlockRemoved, BlockStored=BlockStored,
        SamplingParams=SamplingParams, get_hash_fn_by_name=get_hash_fn_by_name,
        get_request_block_hasher=get_request_block_hasher, init_none_hash=init_none_hash,
        resolve_kv_cache_block_sizes=resolve_kv_cache_block_sizes,
        FullAttentionSpec=FullAttentionSpec, KVCacheConfig=KVCacheConfig,
        KVCacheGroupSpec=KVCacheGroupSpec,
        EMPTY_MODEL_RUNNER_OUTPUT=EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput=ModelRunnerOutput,
        Request=Request, StructuredOutputManager=StructuredOutputManager, Collector=_Collector,
    )
    return _v


def _replay_model_dir(max_model_len: int) -> str:
    """A directory with a tiny HF config.json: all vLLM's ModelConfig needs offline."""
    global _model_dir
    if _model_dir is None:
        _model_dir = tempfile.mkdtemp(prefix="prefix-tui-model-")
        atexit.register(shutil.rmtree, _model_dir, True)
    config = {
        "architectures": [REPLAY_ARCH],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "num_hidden_layers": 1,
        "vocab_size": 32000,
        "max_position_embeddings": max_model_len,
        "torch_dtype": "float16",
    }
    with open(f"{_model_dir}/config.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    return _model_dir


def build_vllm_config(settings: EngineSettings, serve: ServeSettings) -> Any:
    """vLLM's VllmConfig for a replay: no network, no GPU, no weights."""
    v = _import()
    max_model_len = serve_max_model_len(settings)
    chunked = serve.enable_chunked_prefill
    seqs = serve.max_num_seqs if serve.max_num_seqs is not None else DEFAULT_MAX_NUM_SEQS
    batched = serve.max_num_batched_tokens
    # Defaults filled in as EngineArgs._set_default_max_num_seqs_and_batched_tokens_args does.
    if batched is None:
        batched = DEFAULT_MAX_NUM_BATCHED_TOKENS
        if chunked is False:  # without chunking a whole prompt must fit in one batch
            batched = max(batched, max_model_len)
        batched = min(seqs * max_model_len, batched)
    if serve.max_num_seqs is None:
        seqs = min(seqs, batched)
    sched_kwargs: dict[str, Any] = dict(
        max_model_len=max_model_len,
        is_encoder_decoder=False,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        async_scheduling=serve.async_scheduling,
    )
    if chunked is not None:
        sched_kwargs["enable_chunked_prefill"] = chunked
    try:
        model_config = v["ModelConfig"](
            model=_replay_model_dir(max_model_len),
            skip_tokenizer_init=True,
            max_model_len=max_model_len,
            dtype="float16",
            seed=0,
        )
        cache_config = v["CacheConfig"](
            block_size=settings.block_size,
            enable_prefix_caching=settings.enable_caching,
            prefix_caching_hash_algo=settings.hash_algo,
            num_gpu_blocks_override=settings.num_blocks,
        )
        config = v["VllmConfig"](
            model_config=model_config,
            cache_config=cache_config,
            scheduler_config=v["SchedulerConfig"](**sched_kwargs),
            device_config=v["DeviceConfig"](device="cpu"),
            kv_events_config=v["KVEventsConfig"](
                enable_kv_cache_events=settings.kv_events, publisher="null"
            ),
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UserError(f"vLLM rejected the serve settings: {_first_line(exc)}") from None
    # The engine core sets this after profiling GPU memory; the pool size is given here.
    config.cache_config.num_gpu_blocks = settings.num_blocks
    return config


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:3]) if lines else type(exc).__name__


# -- plain data out ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admission:
    """A request moved from waiting to running by one schedule() call."""

    seq_id: str
    num_cached_tokens: int  # the scheduler's prefix-cache hit (its num_computed_tokens)
    block_ids: tuple[int, ...]  # the whole block table after admission
    resumed: bool  # re-admitted after a preemption (it recomputes)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One schedule() call, reduced to plain data."""

    num_scheduled_tokens: dict[str, int]
    total_tokens: int
    admissions: tuple[Admission, ...]  # resumed ones first (they head the waiting queue)
    new_block_ids: dict[str, tuple[int, ...]]  # blocks added to already-running requests
    preempted: tuple[str, ...]  # preempted by this call (blocks freed; will recompute)
    sampled: tuple[str, ...]  # requests the model samples a token for (not mid-prefill)


@dataclass(frozen=True, slots=True)
class ReqOutput:
    seq_id: str
    new_token_ids: tuple[int, ...]
    finish_reason: str | None
    num_cached_tokens: int | None  # prefill_stats.num_cached_tokens, when reported


@dataclass(frozen=True, slots=True)
class Iteration:
    """One engine-core step: a schedule() and/or an update_from_output()."""

    scheduled: Scheduled | None
    processed: Scheduled | None  # the schedule whose model output was processed now
    outputs: tuple[ReqOutput, ...]
    events: tuple[KVEvent, ...]  # empty without detail
    evicted_hashes: int  # hashes in vLLM's BlockRemoved events (cached blocks evicted)
    peak_used_blocks: int  # most blocks held at any point of the step

    @property
    def executed(self) -> bool:
        return self.scheduled is not None and self.scheduled.total_tokens > 0


# -- private reads ----------------------------------------------------------------------------
class _SchedInternals:
    """Every read of a vLLM Scheduler / Request attribute that is not a public method or
    part of SchedulerOutput / EngineCoreOutputs, and the one write."""

    @staticmethod
    def manager(sched: Any) -> Any:
        return sched.kv_cache_manager

    @staticmethod
    def running(sched: Any) -> list:
        return sched.running

    @staticmethod
    def waiting_ids(sched: Any) -> list[str]:
        # Requests that hold blocks while waiting (connectors, streaming) are drained first.
        out = [r.request_id for r in sched.kv_holding_waiting]
        out.extend(r.request_id for r in sched.waiting)
        return out

    @staticmethod
    def request(sched: Any, seq_id: str) -> Any:
        return sched.requests.get(seq_id)

    @staticmethod
    def is_prefill_chunk(request: Any) -> bool:
        # Set by the scheduler when it schedules: the chunk does not reach the end of the
        # known tokens, so the model runner discards what it samples.
        return request.is_prefill_chunk

    @staticmethod
    def progress(request: Any) -> tuple[int, int]:
        """(num_tokens, num_computed_tokens); computed includes in-flight placeholders."""
        return request.num_tokens, request.num_computed_tokens

    @staticmethod
    def set_event_publisher(sched: Any, publisher: Any) -> None:
        sched.kv_event_publisher = publisher

    @staticmethod
    def event_publisher(sched: Any) -> Any:
        return sched.kv_event_publisher


def check_sched_internals(sched: Any) -> list[str]:
    """What serve mode reads from vLLM's scheduler, checked on a live one. Empty when all
    is well; otherwise one line per problem (the caller names the vLLM version)."""
    problems: list[str] = []
    try:
        manager = _SchedInternals.manager(sched)
        problems.extend(check_internals(manager))
        if not isinstance(_SchedInternals.running(sched), list):
            problems.append("Scheduler.running is not a list")
        _SchedInternals.waiting_ids(sched)
        if not isinstance(sched.requests, dict):
            problems.append("Scheduler.requests is not a dict")
        for name in ("schedule", "update_from_output", "add_request", "has_requests",
                     "get_request_counts", "finish_requests"):
            if not callable(getattr(sched, name, None)):
                problems.append(f"Scheduler.{name} is missing")
        for name in ("get_block_ids", "take_events"):
            if not callable(getattr(manager, name, None)):
                problems.append(f"KVCacheManager.{name} is missing")
        publisher = _SchedInternals.event_publisher(sched)
        if not callable(getattr(publisher, "publish", None)):
            problems.append("Scheduler.kv_event_publisher has no publish()")
        v = _import()
        probe = v["Request"]("probe", [1], v["SamplingParams"](max_tokens=1), None)
        for attr in ("is_prefill_chunk", "num_tokens", "num_computed_tokens", "request_id"):
            if not hasattr(probe, attr):
                problems.append(f"Request.{attr} is missing")
        for name in ("req_id_to_index", "sampled_token_ids"):
            if name not in getattr(v["ModelRunnerOutput"], "__dataclass_fields__", {}):
                problems.append(f"ModelRunnerOutput.{name} is missing")
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def ensure_sched_internals(sched: Any, version: str) -> None:
    """Raise AdapterMismatch, naming the installed vLLM, when check_sched_internals fails."""
    problems = check_sched_internals(sched)
    if problems:
        raise AdapterMismatch(
            f"vLLM {version}'s scheduler differs from what prefix-tui's serve mode knows "
            f"(tested with {TESTED_VLLM_VERSION}): {'; '.join(problems)}"
        )


# -- the backend ------------------------------------------------------------------------------
class SchedBackend(PoolReader):
    """Owns one real vLLM Scheduler (sync or async) and the engine-core loop around it."""

    def __init__(self, settings: EngineSettings, serve: ServeSettings | None = None,
                 verbose: bool = False) -> None:
        settings.validate()
        serve = serve or ServeSettings()
        serve.validate()
        self.settings = settings
        self.serve = serve
        self.version = import_vllm(verbose)
        v = _import()
        self.vllm_config = build_vllm_config(settings, serve)
        sc = self.vllm_config.scheduler_config
        spec = v["FullAttentionSpec"](
            block_size=settings.block_size, num_kv_heads=1, head_size=1, dtype=v["torch"].float16
        )
        kv_cache_config = v["KVCacheConfig"](
            num_blocks=settings.num_blocks,
            kv_cache_tensors=[],
            kv_cache_groups=[v["KVCacheGroupSpec"](["layer.0"], spec)],
        )
        # As EngineCore.__init__ builds it.
        scheduler_cls = sc.get_scheduler_cls()
        block_size, hash_block_size = v["resolve_kv_cache_block_sizes"](
            kv_cache_config, self.vllm_config
        )
        self.scheduler = scheduler_cls(
            vllm_config=self.vllm_config,
            kv_cache_config=kv_cache_config,
            structured_output_manager=v["StructuredOutputManager"](self.vllm_config),
            block_size=block_size,
            hash_block_size=hash_block_size,
            log_stats=True,
        )
        ensure_sched_internals(self.scheduler, self.version)
        self._collector = v["Collector"]()
        _SchedInternals.set_event_publisher(self.scheduler, self._collector)
        cc = self.vllm_config.cache_config
        hash_fn = v["get_hash_fn_by_name"](cc.prefix_caching_hash_algo)
        v["init_none_hash"](hash_fn)
        self._block_hasher = (
            v["get_request_block_hasher"](
                hash_block_size, hash_fn, self.vllm_config.num_hash_lookahead_tokens
            )
            if cc.enable_prefix_caching
            else None
        )
        self.manager = _SchedInternals.manager(self.scheduler)
        self._pool = _Internals.block_pool(self.manager)
        self._blocks = _Internals.blocks(self._pool)
        self.null_block_id = _Internals.null_block_id(self._pool)
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

    # -- requests ---------------------------------------------------------------------------
    def new_request(self, seq_id: str, prompt_token_ids, max_tokens: int, arrival_time: float):
        v = _v
        params = v["SamplingParams"](max_tokens=max_tokens, ignore_eos=True)
        return v["Request"](
            seq_id, list(prompt_token_ids), params, None,
            arrival_time=arrival_time, block_hasher=self._block_hasher,
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
            if detail:
                events = self.take_events()
                removed = sum(len(e.block_hashes) for e in events if e.kind == "removed")
            else:
                events, removed = (), self.take_removed_count()
            return Iteration(scheduled, processed, outputs, events, removed,
                             max(peak, self.used_blocks()))

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
            admissions.append(Admission(
                nr.req_id, nr.num_computed_tokens, tuple(nr.block_ids[0]) if nr.block_ids else (),
                nr.req_id in self._admitted_before,
            ))
        cached = so.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            ids = cached.new_block_ids[i]
            blocks = tuple(ids[0]) if ids else ()
            if rid in cached.resumed_req_ids:
                admissions.append(Admission(rid, cached.num_computed_tokens[i], blocks, True))
            elif blocks:
                new_block_ids[rid] = blocks
        admissions.sort(key=lambda a: not a.resumed)  # stable: resumed first
        for a in admissions:
            self._admitted_before.add(a.seq_id)
        sampled = tuple(
            rid for rid in so.num_scheduled_tokens
            if not _SchedInternals.is_prefill_chunk(_SchedInternals.request(sched, rid))
        )
        return Scheduled(
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
        if so.total_num_scheduled_tokens == 0:
            return _v["EMPTY_MODEL_RUNNER_OUTPUT"]
        req_ids = list(so.num_scheduled_tokens)
        sampled = set(plain.sampled)
        return _v["ModelRunnerOutput"](
            req_ids=req_ids,
            req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
            sampled_token_ids=[[token_for(rid)] if rid in sampled else [] for rid in req_ids],
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
                ))
            stats = eco.scheduler_stats
            if stats is not None and stats.prefix_cache_stats is not None:
                self.cache.observe(stats.prefix_cache_stats)
        return tuple(outs)


    def take_removed_count(self) -> int:
        """Drain the KV events, counting only evicted hashes (headless fast path)."""
        raw = list(self._collector.events)
        self._collector.events.clear()
        raw.extend(self.manager.take_events() or ())
        removed = _v["BlockRemoved"]
        return sum(len(ev.block_hashes) for ev in raw if isinstance(ev, removed))

    def take_events(self) -> tuple[KVEvent, ...]:
        """KV events published by the scheduler, plus any still in the manager's queue
        (events of a schedule() whose update has not run yet)."""
        raw = list(self._collector.events)
        self._collector.events.clear()
        raw.extend(self.manager.take_events() or ())
        if not raw:
            return ()
        stored, removed = _v["BlockStored"], _v["BlockRemoved"]
        out: list[KVEvent] = []
        for ev in raw:
            if isinstance(ev, stored):
                out.append(KVEvent("stored", tuple(ev.block_hashes), ev.parent_block_hash,
                                   len(ev.token_ids)))
            elif isinstance(ev, removed):
                out.append(KVEvent("removed", tuple(ev.block_hashes)))
            else:
                out.append(KVEvent("cleared"))
        return tuple(out)

    # -- reading the scheduler ---------------------------------------------------------------
    def running_ids(self) -> list[str]:
        return [r.request_id for r in _SchedInternals.running(self.scheduler)]

    def waiting_ids(self) -> list[str]:
        return _SchedInternals.waiting_ids(self.scheduler)

    def progress(self, seq_id: str) -> tuple[int, int]:
        req = _SchedInternals.request(self.scheduler, seq_id)
        return _SchedInternals.progress(req) if req is not None else (0, 0)

    # -- reading the pool: engine.vllm_v1.PoolReader, plus -------------------------------------
    def used_blocks(self) -> int:
        """Blocks held by requests (the null block excluded)."""
        return self.settings.num_blocks - 1 - self._pool.get_num_free_blocks()

    def describe(self) -> dict:
        return {
            "scheduler": self.scheduler_name,
            "async_scheduling": self.is_async,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "max_model_len": self.max_model_len,
            "model_runner": self.model_runner,
            "iteration_time_s": self.serve.iteration_time_s,
        }
