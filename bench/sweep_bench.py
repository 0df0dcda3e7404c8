"""A 6-point sweep of the Mooncake synthetic trace (its first requests, so it stays short)
with one worker process, with one per core, and as tasks on a local Ray: wall times, the
speed-up (goal >= 0.9 x cores) and a check that all three give the same points.

    .venv/bin/python -m bench.sweep_bench [--limit 400] [--jobs N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.backends import BuildOptions
from engine.settings import EngineSettings
from engine.sweep.executors import ExecutorChoice, default_jobs, run_points
from engine.sweep.plan import SweepOutcome, plan_sweep
from engine.sweep.points import point_row
from engine.trace.reader import TraceSource

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT.parent / "shared" / "data" / "mooncake" / "synthetic_trace.jsonl"
CAPACITIES = [250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, None]  # tokens; None: inf
GOAL = 0.9


def _rows(outcome: SweepOutcome) -> list[dict]:
    return [{k: v for k, v in point_row(s, r).items() if k != "seconds"}
            for s, r in outcome.point_pairs()]


def _run(plan, choice: ExecutorChoice) -> tuple[float, SweepOutcome]:
    start = time.perf_counter()
    results = run_points(plan.specs, choice, lambda r: None)
    return time.perf_counter() - start, SweepOutcome(plan, tuple(results))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sweep_bench")
    p.add_argument("--limit", type=int, default=400, help="first N requests of the trace")
    p.add_argument("--jobs", type=int, default=default_jobs(), help="the parallel run's workers")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args(argv)
    print("== sweep: 6 points of the Mooncake synthetic trace, 1 worker vs all cores vs Ray")
    if not SYNTHETIC.exists():
        print(f"skip: {SYNTHETIC} not present")
        return 0
    plan = plan_sweep(engine="v1", mode="sequential",
                      options=BuildOptions(EngineSettings(block_size=16)),
                      source=TraceSource(str(SYNTHETIC), max_requests=args.limit),
                      block_sizes=[16], capacities=CAPACITIES, ceilings=False)
    one_s, one = _run(plan, ExecutorChoice("local", jobs=1))
    many_s, many = _run(plan, ExecutorChoice("local", jobs=args.jobs))
    speedup = one_s / many_s
    print(f"first {plan.requests:,} requests, {len(plan.specs)} points "
          f"(capacities {', '.join('inf' if c is None else f'{c:,}' for c in CAPACITIES)} tokens)")
    for spec, r in one.point_pairs():
        print(f"  {spec.label}: hit rate {100 * r.totals.hits / max(r.totals.queries, 1):.2f} % "
              f"(cumulative), {r.seconds:.1f} s in its process")
    print(f"--jobs 1: {one_s:.1f} s · --jobs {args.jobs}: {many_s:.1f} s · speed-up "
          f"{speedup:.2f}x = {speedup / args.jobs:.2f} x cores (goal >= {GOAL} x cores: "
          f"{'met' if speedup >= GOAL * args.jobs else 'MISSED'})")
    same = _rows(one) == _rows(many)
    if not args.no_ray:
        ray_s, on_ray = _run(plan, ExecutorChoice("ray"))
        same = same and _rows(on_ray) == _rows(one)
        print(f"local Ray ({args.jobs} CPUs, started and stopped by the sweep): {ray_s:.1f} s "
              f"= {one_s / ray_s:.2f}x of --jobs 1")
    print(f"identical points on every executor: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
