"""What miss reasons and hit sources cost: the headless sequential replay with them (the
default) and with them off, on the Mooncake conversation trace, side by side.

Each side runs in its own process, so peak RSS (ru_maxrss) is its own. The history behind
the reasons (which request first stored each hash, which evicted it) grows with the
distinct block hashes of the trace: the RSS line shows how much.
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

    from engine.backends.vllm_v1.manager import V1Manager
    from engine.replay.sequential import SequentialReplay
    from engine.settings import EngineSettings
    from engine.trace.reader import TraceReader

    backend = V1Manager(EngineSettings(block_size=16, num_blocks=num_blocks))
    replay = SequentialReplay(backend, itertools.islice(TraceReader(trace), limit), detail=False)
    if kind == "off":
        replay.reasons = None
    start = time.process_time()
    last = None
    for last in replay:
        pass
    seconds = time.process_time() - start
    return {"seconds": seconds, "requests": last.totals.requests, "hits": last.totals.hits,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(kind: str, trace: Path, num_blocks: int, limit: int | None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.reasons_bench", "--child", kind, "--trace", str(trace),
         "--num-blocks", str(num_blocks), "--limit", str(limit or 0)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.reasons_bench")
    p.add_argument("--child", choices=("on", "off"))
    p.add_argument("--trace", default=str(CONVERSATION))
    p.add_argument("--num-blocks", type=int, default=10_000)
    p.add_argument("--limit", type=int, default=3000)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.trace, a.num_blocks, a.limit or None)))
        return 0
    print(f"== miss reasons: headless replay with / without, first {a.limit:,} requests of "
          f"the Mooncake conversation trace, {a.num_blocks:,} blocks (CPU seconds)")
    trace = Path(a.trace)
    if not trace.exists():
        print(f"skip: {trace} not present")
        return 0
    off = _run("off", trace, a.num_blocks, a.limit)
    on = _run("on", trace, a.num_blocks, a.limit)
    assert (on["requests"], on["hits"]) == (off["requests"], off["hits"]), (on, off)
    print(f"time     {on['seconds']:8.1f} s with vs {off['seconds']:8.1f} s without = "
          f"{on['seconds'] / off['seconds']:.2f}x (goal <= 1.10x)")
    print(f"peak RSS {on['rss_mb']:8.0f} MB with vs {off['rss_mb']:8.0f} MB without = "
          f"{on['rss_mb'] / off['rss_mb']:.2f}x; same requests and hit tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
