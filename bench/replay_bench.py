"""Sequential replay against a bare loop of the same vLLM calls, in one run, side by side.

Two comparisons: the headless fast path (what the report runs: counts only) on the whole
Mooncake conversation trace, and the detailed replay (what the inspector runs: block
tables, states, pool deltas, KV events, per step) on its first 1,500 requests with a
100,000-block pool, where the pool holds nearly everything and the tables are long.

Each side runs in its own process so peak RSS (ru_maxrss) is its own. Both read the trace
with the same reader and build the same vLLM KVCacheManager (KV events on); the bare loop
makes the scheduler's calls and records nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = ROOT.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"


def _child(kind: str, trace: str, num_blocks: int, limit: int | None) -> dict:
    import itertools

    from engine.backends.vllm_v1.manager import V1Manager as V1Backend
    from engine.replay.common import synth_output_tokens
    from engine.replay.sequential import SequentialReplay
    from engine.settings import EngineSettings
    from engine.trace.reader import TraceReader

    settings = EngineSettings(block_size=16, num_blocks=num_blocks)
    backend = V1Backend(settings)  # imports vLLM before the clock starts
    requests = itertools.islice(TraceReader(trace), limit)
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind in ("replay", "detailed"):
        last = None
        for last in SequentialReplay(backend, requests, detail=kind == "detailed"):
            pass
        n, hits, queries = last.totals.requests, last.totals.hits, last.totals.queries
    else:
        m, bs = backend.manager, settings.block_size
        make = backend.new_request
        n = hits = queries = 0
        prev = None
        for i, tr in enumerate(requests):
            if prev is not None:
                m.free(prev)
            r = make(str(i), tr.prompt_token_ids, tr.arrival_time)
            blocks, hit, _ = m.get_computed_blocks(r)
            if m.allocate_slots(r, r.num_tokens - hit, hit, blocks) is None:
                prev = None
                continue
            m.record_prefix_cache_stats(r, hit)
            r.num_computed_tokens = r.num_tokens
            out = synth_output_tokens(tr)
            if out:
                r.append_output_token_ids(out[0])
                done, comp = 1, r.num_computed_tokens
                while done < len(out):
                    k = min(bs - comp % bs, len(out) - done)
                    if k > 1:
                        r.append_output_token_ids(list(out[done:done + k - 1]))
                    if m.allocate_slots(r, k) is None:
                        break
                    done += k - 1
                    comp += k
                    r.num_computed_tokens = comp
                    r.append_output_token_ids(out[done])
                    done += 1
            m.take_events()
            s = m.make_prefix_cache_stats()
            hits += s.hits
            queries += s.queries
            n += 1
            prev = r
    seconds = time.perf_counter() - start
    return {
        "kind": kind,
        "seconds": seconds,
        # CPU time of the side's own process: steadier than wall time on a busy machine.
        "cpu_seconds": time.process_time() - cpu_start,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "requests": n,
        "hit_rate": hits / queries if queries else 0.0,
    }


def run_side(kind: str, trace: Path, num_blocks: int, limit: int | None) -> dict:
    cmd = [sys.executable, "-m", "bench.replay_bench", "--child", kind, "--trace", str(trace),
           "--num-blocks", str(num_blocks)]
    if limit:
        cmd += ["--limit", str(limit)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", choices=("replay", "detailed", "bare"))
    p.add_argument("--trace", default=str(CONVERSATION))
    p.add_argument("--num-blocks", type=int, default=10000)
    p.add_argument("--limit", type=int, default=None, help="first N requests only")
    p.add_argument("--detail-limit", type=int, default=1500, help="detailed run: first N (0: skip)")
    p.add_argument("--detail-blocks", type=int, default=100_000)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.trace, args.num_blocks, args.limit)))
        return 0
    trace = Path(args.trace)
    if not trace.exists():
        print(f"skip: {trace} not present")
        return 0
    bare = run_side("bare", trace, args.num_blocks, args.limit)
    replay = run_side("replay", trace, args.num_blocks, args.limit)
    t_ratio = replay["seconds"] / bare["seconds"]
    m_ratio = replay["maxrss_mb"] / bare["maxrss_mb"]
    print(f"== headless replay vs bare vLLM loop: {trace.name}, block 16, "
          f"{args.num_blocks:,} blocks, {replay['requests']:,} requests")
    print(f"{'':22}{'bare loop':>12}{'prefix-tui':>12}{'ratio':>8}  goal")
    print(f"{'wall time (s)':22}{bare['seconds']:>12.2f}{replay['seconds']:>12.2f}"
          f"{t_ratio:>7.2f}x  <= 1.25x {'ok' if t_ratio <= 1.25 else 'MISSED'}")
    print(f"{'peak RSS (MB)':22}{bare['maxrss_mb']:>12.0f}{replay['maxrss_mb']:>12.0f}"
          f"{m_ratio:>7.2f}x  <= 1.5x {'ok' if m_ratio <= 1.5 else 'MISSED'}")
    _cpu(bare, replay)
    _same(bare, replay)
    if args.detail_limit:
        bare = run_side("bare", trace, args.detail_blocks, args.detail_limit)
        detailed = run_side("detailed", trace, args.detail_blocks, args.detail_limit)
        ratio = detailed["seconds"] / bare["seconds"]
        print(f"== detailed replay (the inspector's) vs bare vLLM loop: first "
              f"{detailed['requests']:,} requests, block 16, {args.detail_blocks:,} blocks")
        print(f"{'':22}{'bare loop':>12}{'detailed':>12}{'ratio':>8}  goal")
        print(f"{'wall time (s)':22}{bare['seconds']:>12.2f}{detailed['seconds']:>12.2f}"
              f"{ratio:>7.2f}x  <= 1.3x {'ok' if ratio <= 1.3 else 'MISSED'}")
        _cpu(bare, detailed)
        _same(bare, detailed)
    return 0


def _cpu(bare: dict, other: dict) -> None:
    ratio = other["cpu_seconds"] / bare["cpu_seconds"]
    print(f"{'CPU time (s)':22}{bare['cpu_seconds']:>12.2f}{other['cpu_seconds']:>12.2f}"
          f"{ratio:>7.2f}x")


def _same(bare: dict, other: dict) -> None:
    same = abs(bare["hit_rate"] - other["hit_rate"]) < 1e-12 and bare["requests"] == other["requests"]
    print(f"{'hit rate':22}{bare['hit_rate']:>12.4f}{other['hit_rate']:>12.4f}"
          f"{'same' if same else 'DIFFER':>8}")


if __name__ == "__main__":
    sys.exit(main())
