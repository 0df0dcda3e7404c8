"""Run one sweep point in this process: vLLM's real manager (or scheduler) through the
backend registry, the trace read lazily, counts only.

vLLM keeps process-wide hashing state (``init_none_hash``), so an executor gives every
point a process of its own; this module is what that process runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Protocol

from engine.backends import lookup
from engine.errors import UserError
from engine.model import Totals, TraceRequest
from engine.sweep.bounds import ReuseBound, farthest_next_use
from engine.sweep.keys import RequestKeys, request_keys
from engine.block_reasons import BlockReasons
from engine.sweep.points import PointResult, PointSpec, add_reasons

# (point index, phase, done, total): phase is "replay" (requests) or "bound"
ProgressFn = Callable[[int, str, int, int], None]
PROGRESS_EVERY_S = 0.25


class _Ticker:
    """Calls ``progress`` at most every PROGRESS_EVERY_S, and always at the end."""

    def __init__(self, progress: ProgressFn | None, index: int, phase: str, total: int) -> None:
        self.progress, self.index, self.phase, self.total = progress, index, phase, total
        self.next_at = 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if final or now >= self.next_at:
            self.next_at = now + PROGRESS_EVERY_S
            self.progress(self.index, self.phase, done, self.total)


class Cancel(Protocol):
    def is_set(self) -> bool: ...


def run_point(spec: PointSpec, progress: ProgressFn | None = None,
              cancel: Cancel | None = None) -> PointResult:
    """Replay the trace once at this point. Bad input is a status with its one line; an
    exception inside vLLM is the record's error, as in a headless replay. ``cancel`` (a
    threading or multiprocessing Event) stops it at the next request: status cancelled."""
    start = time.perf_counter()
    try:
        return _run(spec, progress, start, cancel)
    except UserError as err:
        return PointResult(spec.index, spec.num_blocks or 0, Totals(), Totals(),
                           status="bad_input", message=str(err),
                           seconds=time.perf_counter() - start)


def _run(spec: PointSpec, progress: ProgressFn | None, start: float,
         cancel: Cancel | None) -> PointResult:
    bs = spec.block_size
    reuse = None
    num_blocks = spec.num_blocks
    if num_blocks is None:
        # The never-evicting pool is sized from the trace; the same pass gives the reuse bound.
        reuse = ReuseBound(bs, spec.warmup)
        tick = _Ticker(progress, spec.index, "sizing", spec.requests)
        for n, req in enumerate(spec.source.reader(cancel=cancel), 1):
            reuse.add(request_keys(req, bs))
            tick(n)
        if cancel is not None and cancel.is_set():
            return _cancelled(spec, start)
        num_blocks = max(2, reuse.never_evict_blocks)
    keys: list[RequestKeys] | None = [] if spec.bound and spec.num_blocks is not None else None
    result = _replay(spec, num_blocks, keys, progress, start, cancel)
    if result.status == "cancelled":
        return result
    if spec.num_blocks is None and result.status == "complete" and result.end.evictions:
        # The estimate fell short (a prefix-tui key missed a vLLM hit): size for every block
        # the trace could allocate, and say so if even that evicts.
        num_blocks = max(2, reuse.conservative_blocks)
        result = _replay(spec, num_blocks, None, progress, start, cancel)
        if result.status == "complete" and result.end.evictions:
            result = replace(result, status="failed", message=(
                f"the never-evicting pool of {num_blocks:,} blocks evicted "
                f"{result.end.evictions:,} blocks"))
    if reuse is not None:
        result = replace(result, bound=reuse.counts())
    elif keys is not None and result.status == "complete":
        tick = _Ticker(progress, spec.index, "bound", 1)
        tick(0, final=True)
        max_model_len = replace(spec.options.settings, block_size=bs,
                                num_blocks=num_blocks).effective_max_model_len
        bound = farthest_next_use(keys, num_blocks - 1, bs, spec.warmup, max_model_len)
        tick(1, final=True)
        result = replace(result, bound=bound)
    return replace(result, seconds=time.perf_counter() - start)


def _cancelled(spec: PointSpec, start: float) -> PointResult:
    return PointResult(spec.index, spec.num_blocks or 0, Totals(), Totals(),
                       status="cancelled", message="cancelled",
                       seconds=time.perf_counter() - start)


def _replay(spec: PointSpec, num_blocks: int, keys: list[RequestKeys] | None,
            progress: ProgressFn | None, start: float, cancel: Cancel | None) -> PointResult:
    settings = replace(spec.options.settings, block_size=spec.block_size,
                       num_blocks=num_blocks)
    settings.validate()
    entry = lookup(spec.engine, spec.mode)
    backend = entry.build(replace(spec.options, settings=settings))
    requests = spec.source.reader(cancel=cancel)
    if keys is not None:
        requests = _keeping_keys(requests, keys, spec.block_size,
                                 settings.effective_max_model_len)
    replay = backend.replay(requests, detail=False, cancel=cancel)
    tick = _Ticker(progress, spec.index, "replay", spec.requests)
    end = warm = Totals()
    warm_at: Totals | None = Totals() if spec.warmup == 0 else None
    # A record's admitted requests are the ones its totals added (serve mode too, where
    # rows come later, at finish): summed after the warm-up, the reasons cover exactly the
    # requests the point's figures count.
    reasons = BlockReasons() if settings.enable_caching else None
    # --instances: each replica's totals too (the record's are their sum).
    replica_totals = getattr(replay, "replica_totals", None)
    warm_replicas: tuple[Totals, ...] = ()
    status, message = "complete", ""
    for record in replay:
        end = record.totals
        if warm_at is not None and reasons is not None:
            reasons = add_reasons(reasons, record.admitted)
        if warm_at is None and end.requests >= spec.warmup:
            warm_at = end
            if replica_totals is not None:
                warm_replicas = tuple(replica_totals())
        tick(end.requests)
        if record.error is not None:
            status, message = "vllm_error", f"step {record.index}: {record.error.message}"
    tick(end.requests, final=True)
    if cancel is not None and cancel.is_set():
        return _cancelled(spec, start)
    warm = warm_at if warm_at is not None else end
    end_replicas = tuple(replica_totals()) if replica_totals is not None else ()
    if warm_at is None:
        warm_replicas = end_replicas
    summary = replay.summary()
    return PointResult(spec.index, num_blocks, end, warm, status, message,
                       time.perf_counter() - start, vllm_version=backend.version,
                       reasons=reasons, tier=summary.tier if summary is not None else None,
                       replicas_end=end_replicas, replicas_warm=warm_replicas)


def _keeping_keys(requests, keys: list[RequestKeys], block_size: int,
                  max_model_len: int) -> Iterator[TraceRequest]:
    """The requests as read, keying each on the side for the bound (one read of the trace)."""
    for req in requests:
        keys.append(request_keys(req, block_size, max_model_len))
        yield req
