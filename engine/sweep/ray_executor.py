"""Sweep points as Ray tasks: on an existing cluster (``--ray-address``) or on a local Ray
started here. Each task runs in a fresh worker process (``max_calls=1``): vLLM keeps
process-wide hashing state. Progress comes back through Ray's own queue (an actor).

Ray is an optional extra (``pip install 'prefix-tui[cluster]'``); without it this says how
to get it in one line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from engine.errors import UserError
from engine.sweep.points import PointResult, PointSpec
from engine.sweep.run_point import run_point

POLL_S = 0.1


def _import_ray():
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'prefix-tui[cluster]'") from None
    return ray, Queue


def _task(spec: PointSpec, q) -> PointResult:  # noqa: ANN001 - a ray.util.queue.Queue
    def report(index: int, phase: str, done: int, total: int) -> None:
        q.put_nowait((index, phase, done, total))

    return run_point(spec, report)


def run_on_ray(specs: Sequence[PointSpec], address: str | None, on_result, on_progress,
               cancel: threading.Event | None = None) -> list[PointResult]:
    from engine.sweep.executors import failed, project_root

    ray, Queue = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Workers import prefix-tui from this checkout when it is not installed there.
        path = os.pathsep.join(p for p in (project_root(), os.environ.get("PYTHONPATH")) if p)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = address or "a local Ray"
            raise UserError(f"--executor ray: cannot start or reach {where}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                            ) from None
    try:
        q = Queue()
        task = ray.remote(max_calls=1, num_cpus=1)(_task)
        pending = {task.remote(s, q): s for s in specs}
        results: list[PointResult] = []
        while pending:
            if cancel is not None and cancel.is_set():
                for ref in pending:
                    ray.cancel(ref)  # a running task gets KeyboardInterrupt; others never run
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            _drain(q, on_progress)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task raised or its worker died
                    result = failed(spec, exc)
                results.append(result)
                on_result(result)
        _drain(q, on_progress)
        return results
    finally:
        if started_here:
            ray.shutdown()


def _drain(q, on_progress) -> None:  # noqa: ANN001
    while not q.empty():
        items = q.get_nowait_batch(q.qsize())
        if on_progress is not None:
            for item in items:
                on_progress(*item)
