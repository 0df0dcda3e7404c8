"""Serve mode against a bare loop of the same vLLM Scheduler calls, side by side.

    .venv/bin/python -m bench.serve_loop_bench [--limit 1500] [--num-blocks 30000]

The bare loop drives the same Scheduler (built by the adapter, so the config, the KV
events and the block hasher are the same) the way vLLM's EngineCore does: arrivals by the
same simulated clock, schedule() -> a ModelRunnerOutput with the same synthetic tokens ->
update_from_output(), with the async scheduler's batch queue; it records nothing. The
serve replay runs headless (detail=False, what --headless --mode serve runs) and detailed
(what the inspector runs: block tables, pool deltas, events). Each side runs in its own
process; wall times exclude importing vLLM and building the scheduler.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = ROOT.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"
GOAL = 1.3


def _bare(backend, requests) -> dict:
    """EngineCore.step / step_with_batch_queue over vLLM's Scheduler, nothing recorded."""
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput

    from engine.replay.common import SYNTH_TOKEN_BASE, synth_output_tokens

    sched = backend.scheduler
    dt = backend.serve.iteration_time_s
    limit = backend.max_model_len
    outs: dict[str, tuple[int, ...]] = {}
    sampled: dict[str, int] = {}
    queue: deque = deque()
    pending = iter(requests)
    nxt = next(pending, None)
    clock = last_arrival = 0.0
    iterations = finished = 0

    def runner_output(so):
        if so.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        ids = list(so.num_scheduled_tokens)
        tokens = []
        for rid in ids:
            if sched.requests[rid].is_prefill_chunk:
                tokens.append([])
                continue
            i = sampled[rid]
            sampled[rid] = i + 1
            out = outs[rid]
            tokens.append([out[i] if i < len(out) else out[-1]])
        return ModelRunnerOutput(req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
                                 sampled_token_ids=tokens)

    def update(so, mro) -> int:
        done = 0
        for eco in sched.update_from_output(so, mro).values():
            done += sum(o.finish_reason is not None for o in eco.outputs)
            stats = eco.scheduler_stats
            if stats is not None and stats.prefix_cache_stats is not None:
                backend.cache.observe(stats.prefix_cache_stats)  # vLLM's hit / query tokens
        return done

    while True:
        while nxt is not None and max(nxt.arrival_time, last_arrival) <= clock:
            last_arrival = max(nxt.arrival_time, last_arrival)
            out = synth_output_tokens(nxt) or (SYNTH_TOKEN_BASE + nxt.index * (1 << 24),)
            if nxt.num_prompt_tokens and nxt.num_prompt_tokens + len(out) <= limit:
                rid = str(nxt.index)
                outs[rid], sampled[rid] = out, 0
                sched.add_request(backend.new_request(rid, nxt.prompt_token_ids, len(out), last_arrival))
            nxt = next(pending, None)
        if not (sched.has_requests() or queue):
            if nxt is None:
                break
            clock = max(clock, nxt.arrival_time, last_arrival)
            continue
        iterations += 1
        executed = False
        if not backend.is_async:
            so = sched.schedule()
            executed = so.total_num_scheduled_tokens > 0
            finished += update(so, runner_output(so))
        else:
            step_done = False
            if sched.has_requests():
                so = sched.schedule()
                queue.appendleft((so, runner_output(so)))
                executed = so.total_num_scheduled_tokens > 0
                step_done = len(queue) < backend.batch_queue_size and (executed or sched.has_requests())
            if not step_done:
                so, mro = queue.pop()
                finished += update(so, mro)
        backend.take_removed_count()  # the events prefix-tui drains every step, drained too
        if executed:
            clock += dt
    return {"iterations": iterations, "finished": finished}


def _child(kind: str, trace: str, num_blocks: int, limit: int | None, sync: bool) -> dict:
    import itertools

    from engine.backends.vllm_v1.scheduler import V1Scheduler
    from engine.replay.serve import ServeReplay
    from engine.settings import EngineSettings, ServeSettings
    from engine.trace.reader import TraceReader

    settings = EngineSettings(block_size=16, num_blocks=num_blocks)
    backend = V1Scheduler(settings, ServeSettings(async_scheduling=False if sync else None))
    requests = itertools.islice(TraceReader(trace), limit)
    start = time.perf_counter()
    if kind == "bare":
        figures = _bare(backend, requests)
    else:
        replay = ServeReplay(backend, requests, detail=kind == "detailed")
        for _ in replay:
            pass
        figures = {"iterations": replay.iterations, "finished": replay.finished}
    seconds = time.perf_counter() - start
    t = backend.cache
    return {"kind": kind, "seconds": seconds, "scheduler": backend.scheduler_name,
            "hit_tokens": t.hits, "query_tokens": t.queries, **figures}


def run_side(kind: str, args) -> dict:
    cmd = [sys.executable, "-m", "bench.serve_loop_bench", "--child", kind, "--trace", str(args.trace),
           "--num-blocks", str(args.num_blocks), "--limit", str(args.limit)]
    if args.no_async_scheduling:
        cmd.append("--no-async-scheduling")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=("bare", "headless", "detailed"))
    p.add_argument("--trace", type=Path, default=CONVERSATION)
    p.add_argument("--num-blocks", type=int, default=30000)
    p.add_argument("--limit", type=int, default=1500, help="first N requests")
    p.add_argument("--no-async-scheduling", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, str(args.trace), args.num_blocks, args.limit,
                                args.no_async_scheduling)))
        return 0
    if not args.trace.exists():
        print(f"skip: {args.trace} not present")
        return 0
    sides = {kind: run_side(kind, args) for kind in ("bare", "headless", "detailed")}
    bare = sides["bare"]
    print(f"== serve mode vs a bare loop of the same vLLM {bare['scheduler']} calls: "
          f"{args.trace.name}, first {args.limit:,} requests, block 16, {args.num_blocks:,} blocks")
    print(f"{'':26}{'bare loop':>11}{'headless':>11}{'detailed':>11}")
    row = lambda label, key, fmt: print(  # noqa: E731
        f"{label:26}" + "".join(f"{format(sides[k][key], fmt):>11}" for k in sides))
    row("wall time (s)", "seconds", ".2f")
    row("scheduler iterations", "iterations", ",")
    row("requests finished", "finished", ",")
    row("hit tokens (vLLM)", "hit_tokens", ",")
    row("queried tokens (vLLM)", "query_tokens", ",")
    same = all(sides[k][f] == bare[f] for k in sides
               for f in ("iterations", "finished", "hit_tokens", "query_tokens"))
    print(f"{'same vLLM figures':26}{'':>11}{'yes' if same else 'DIFFER':>11}")
    for kind in ("headless", "detailed"):
        ratio = sides[kind]["seconds"] / bare["seconds"]
        print(f"{kind + ' / bare loop':26}{ratio:>10.2f}x  goal <= {GOAL}x "
              f"{'ok' if ratio <= GOAL else 'MISSED'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
