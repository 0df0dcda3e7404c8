"""Serve mode (vLLM's real Scheduler) against sequential mode on the Mooncake conversation
trace, same pool, printed side by side.

    .venv/bin/python -m bench.serve_bench [--limit N] [--num-blocks 30000] [--no-async-scheduling]

Both run headless (detail=False) in this process, after vLLM is imported; wall times
exclude the import and the backend build. Serve mode's hit rate counts first admissions
only (vLLM's PrefixCacheStats keeps preempted requests' re-lookups apart), as sequential
mode's does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

TRACE = Path(__file__).resolve().parents[1].parent / "shared/data/mooncake/conversation_trace.jsonl"


def _requests(path: Path, limit: int | None):
    try:
        from engine.trace.reader import TraceReader
    except ImportError:  # the reader is not there: read the Mooncake lines directly
        return itertools.islice(_mooncake_lines(path), limit)
    return itertools.islice(TraceReader(path), limit)


def _mooncake_lines(path: Path):
    from engine.trace import mooncake

    with open(path, encoding="utf-8") as f:
        index = 0
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            yield mooncake.parse_mooncake(
                json.loads(text), index=index, line=lineno, block_size=512,
                fail=lambda msg, n=lineno: ValueError(f"{path}:{n}: {msg}"),
                type_name=lambda value: type(value).__name__,
            )
            index += 1


def run_sequential(settings, requests) -> dict:
    from engine import metrics
    from engine.backends.vllm_v1.manager import V1Manager as V1Backend
    from engine.replay.sequential import SequentialReplay

    backend = V1Backend(settings)
    start = time.perf_counter()
    last = None
    steps = 0
    for last in SequentialReplay(backend, requests, detail=False):
        steps += 1
    wall = time.perf_counter() - start
    t = last.totals
    return {
        "wall_s": wall,
        "steps": steps,
        "steps_per_s": steps / wall if wall else 0.0,
        "requests": t.requests,
        "hit_rate": metrics.hit_rate(t),
        "hit_tokens": t.hits,
        "query_tokens": t.queries,
        "evictions": t.evictions,
        "errors": t.errors,
    }


def run_serve(settings, serve, requests) -> dict:
    from dataclasses import asdict

    from engine.backends.vllm_v1.scheduler import V1Scheduler
    from engine.metrics import serve_dict
    from engine.replay.serve import ServeReplay

    backend = V1Scheduler(settings, serve)
    replay = ServeReplay(backend, requests, detail=False)
    start = time.perf_counter()
    errors = 0
    last = None
    for last in replay:
        errors += last.error is not None
    wall = time.perf_counter() - start
    s = serve_dict(replay.summary(), last.totals)
    s["info"] = asdict(replay.summary().info)
    s.update(wall_s=wall, steps=s["iterations"],
             steps_per_s=s["iterations"] / wall if wall else 0.0, errors=errors)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", type=Path, default=TRACE)
    p.add_argument("--limit", type=int, default=None, help="first N requests only")
    p.add_argument("--num-blocks", type=int, default=30000)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--iteration-time", type=float, default=None, help="simulated s per step")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if not args.trace.exists():
        print(f"skip: {args.trace} not present")
        return 0

    from engine.backends.vllm_v1.imports import import_vllm
    from engine.settings import DEFAULT_ITERATION_TIME_S, EngineSettings, ServeSettings

    t0 = time.perf_counter()
    version = import_vllm()
    import_s = time.perf_counter() - t0
    settings = EngineSettings(block_size=args.block_size, num_blocks=args.num_blocks)
    serve = ServeSettings(
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        async_scheduling=args.async_scheduling,
        iteration_time_s=args.iteration_time or DEFAULT_ITERATION_TIME_S,
    )
    seq = run_sequential(settings, _requests(args.trace, args.limit))
    srv = run_serve(settings, serve, _requests(args.trace, args.limit))
    if args.json:
        print(json.dumps({"vllm": version, "import_s": import_s, "sequential": seq,
                          "serve": srv}, indent=2))
        return 0

    print(f"vLLM {version} (import {import_s:.1f} s), trace {args.trace.name}"
          f"{f' (first {args.limit})' if args.limit else ''}, pool {args.num_blocks} blocks "
          f"x {args.block_size} tokens")
    print(f"serve: {srv['scheduler']}, max_num_seqs {srv['max_num_seqs']}, "
          f"max_num_batched_tokens {srv['max_num_batched_tokens']}, chunked prefill "
          f"{'on' if srv['enable_chunked_prefill'] else 'off'}, {srv['iteration_time_s']} s "
          f"per model step, model runner {srv['model_runner']}")
    rows = [
        ("requests", f"{seq['requests']}", f"{srv['requests']}"),
        ("wall time (s)", f"{seq['wall_s']:.1f}", f"{srv['wall_s']:.1f}"),
        ("steps / iterations", f"{seq['steps']}", f"{srv['iterations']}"),
        ("steps per wall second", f"{seq['steps_per_s']:.0f}", f"{srv['steps_per_s']:.0f}"),
        ("hit rate (vLLM, tokens)", f"{seq['hit_rate']:.2%}", f"{srv['hit_rate']:.2%}"),
        ("hit / query tokens", f"{seq['hit_tokens']}/{seq['query_tokens']}",
         f"{srv['hit_tokens']}/{srv['query_tokens']}"),
        ("evicted blocks", f"{seq['evictions']}", f"{srv['evictions']}"),
        ("preemptions", "-", f"{srv['preemptions']}"),
        ("peak KV blocks in use", "-",
         f"{srv['peak_kv_blocks']} ({srv['peak_kv_usage']:.0%})"),
        ("simulated time (s)", "-", f"{srv['simulated_time_s']:.1f}"),
        ("finished / rejected", "-", f"{srv['finished']}/{srv['rejected']}"),
        ("errors", f"{seq['errors']}", f"{srv['errors']}"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'':<{w}}  {'sequential':>16}  {'serve':>16}")
    for name, a, b in rows:
        print(f"{name:<{w}}  {a:>16}  {b:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
