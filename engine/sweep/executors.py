"""Where a sweep's points run: local worker processes, or Ray tasks. Either way each point
runs engine.sweep.run_point.run_point in a fresh process of its own (vLLM keeps
process-wide hashing state), so the results are the same whatever the executor.

No distribution layer of prefix-tui's own: concurrent.futures' ProcessPoolExecutor
(spawn, one task per child) locally, Ray's tasks (``max_calls=1``) on a cluster.
Progress flows back through a queue the platform provides (multiprocessing's, Ray's).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from engine.model import Totals
from engine.sweep.points import PointResult, PointSpec
from engine.sweep.run_point import run_point

ResultFn = Callable[[PointResult], None]
ProgressFn = Callable[[int, str, int, int], None]
POLL_S = 0.1

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorChoice:
    kind: str = "local"  # "local" | "ray"
    jobs: int | None = None  # local: worker processes (None: the cores)
    ray_address: str | None = None  # ray: an existing cluster (None: start a local Ray)


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def failed(spec: PointSpec, exc: BaseException) -> PointResult:
    """A point whose process died or raised: reported, one line, never a traceback."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return PointResult(spec.index, spec.num_blocks or 0, Totals(), Totals(),
                       status="failed", message=text)


def run_points(specs: Sequence[PointSpec], choice: ExecutorChoice, on_result: ResultFn,
               on_progress: ProgressFn | None = None,
               cancel: threading.Event | None = None) -> list[PointResult]:
    """Run every point; results in spec order. ``on_result`` / ``on_progress`` are called
    in this thread as points finish and report. Setting ``cancel`` stops the points that
    run (status cancelled) and drops those not started."""
    if choice.kind == "ray":
        from engine.sweep.ray_executor import run_on_ray

        results = run_on_ray(specs, choice.ray_address, on_result, on_progress, cancel)
    else:
        results = run_local(specs, choice.jobs or default_jobs(), on_result, on_progress,
                            cancel)
    return sorted(results, key=lambda r: r.index)


# -- local processes ---------------------------------------------------------------------------
_QUEUE = None  # the worker's progress queue (set by _init in each worker process)
_CANCEL = None  # the sweep's multiprocessing Event


def _init(q, cancel) -> None:  # noqa: ANN001 - a multiprocessing queue and event
    global _QUEUE, _CANCEL
    _QUEUE, _CANCEL = q, cancel


def _report(index: int, phase: str, done: int, total: int) -> None:
    if _QUEUE is not None:
        _QUEUE.put((index, phase, done, total))


def _local_task(spec: PointSpec) -> PointResult:
    return run_point(spec, _report, _CANCEL)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with the process's own stderr. It hands
    ``sys.stderr.fileno()`` to its process; under a Textual app (the sweep screen)
    sys.stderr is the app's capture, whose fileno() is -1, and every spawn then fails with
    "bad value(s) in fds_to_keep"."""
    from multiprocessing import resource_tracker

    try:
        usable = sys.stderr is None or sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):  # no fileno: the tracker passes none
        usable = True
    if usable or sys.__stderr__ is None:
        return
    shown, sys.stderr = sys.stderr, sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = shown


def run_local(specs: Sequence[PointSpec], jobs: int, on_result: ResultFn,
              on_progress: ProgressFn | None,
              cancel: threading.Event | None = None) -> list[PointResult]:
    start_resource_tracker()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    stop = ctx.Event()
    results: list[PointResult] = []
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(specs) or 1)), mp_context=ctx,
                             initializer=_init, initargs=(q, stop),
                             max_tasks_per_child=1) as pool:
        pending: dict[Future, PointSpec] = {pool.submit(_local_task, s): s for s in specs}
        try:
            while pending:
                if cancel is not None and cancel.is_set() and not stop.is_set():
                    stop.set()  # running points stop at their next request
                    for fut in [f for f in pending if f.cancel()]:
                        del pending[fut]
                done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                _drain(q, on_progress)
                for fut in done:
                    spec = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # the worker died or raised: that point failed
                        result = failed(spec, exc)
                    results.append(result)
                    on_result(result)
        except BaseException:
            stop.set()
            for fut in pending:
                fut.cancel()
            raise
        _drain(q, on_progress)
    return results


def _drain(q, on_progress: ProgressFn | None) -> None:  # noqa: ANN001
    while True:
        try:
            item = q.get_nowait()
        except queue_mod.Empty:
            return
        if on_progress is not None:
            on_progress(*item)


def project_root() -> str:
    """The directory holding the engine package: a Ray worker imports it from there."""
    return str(Path(__file__).resolve().parents[2])
