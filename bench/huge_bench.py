"""A ~1 GB trace through `prefix-tui TRACE --headless`: time, requests/s and peak RSS, next
to the same for a trace 10x smaller, to show that memory stays flat (the trace is read line
by line and the headless replay keeps only counts). Also times how long the reader takes to
yield its first request from the 1 GB file.

    python -m bench.huge_bench [--size-mb 1024] [--small-ratio 10] [--keep]

The traces are written to a temporary directory and removed afterwards. Each replay runs in
its own child process; its peak RSS is that child's own ru_maxrss (os.wait4 gives the
rusage of one child; getrusage(RUSAGE_CHILDREN) would give the largest of all children).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_trace(path: Path, size_bytes: int, *, prompt_tokens: int, seed: int = 0) -> int:
    """Native JSONL of about ``size_bytes``: prompts of ``prompt_tokens`` ids, two thirds a
    shared prefix (one of 4) and one third a suffix (one of 400 variants), so prefixes are
    hit constantly and the suffixes overflow a 20,000-block pool (evictions). A few hundred
    distinct lines are rendered once and written over and over: fast. Returns the lines."""
    rng = random.Random(seed)
    n_prefix = prompt_tokens * 2 // 3
    prefixes = [[rng.randrange(50257) for _ in range(n_prefix)] for _ in range(4)]
    variants = []
    for v in range(400):
        ids = prefixes[v % 4] + [rng.randrange(50257) for _ in range(prompt_tokens - n_prefix)]
        variants.append((json.dumps({"prompt_token_ids": ids, "output_len": 64}) + "\n").encode())
    written = lines = 0
    with open(path, "wb") as fh:
        while written < size_bytes:
            chunk = b"".join(variants[rng.randrange(len(variants))] for _ in range(100))
            fh.write(chunk)
            written += len(chunk)
            lines += 100
    return lines


def replay(path: Path, num_blocks: int) -> dict:
    """`python -m tui PATH --headless` in a child; wall time, the report's figures, peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui", str(path), "--headless", "--no-progress",
             "--num-gpu-blocks-override", str(num_blocks)],
            cwd=ROOT, stdout=out, stderr=err,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        report, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"prefix-tui exited {proc.returncode}: {errors.strip()[-500:]}")
    requests = int(re.search(r"Total requests\D*([\d,]+)", report).group(1).replace(",", ""))
    seconds = float(re.search(r"replayed in ([\d.]+) s", report).group(1))
    sharing = re.search(r"Overall sharing fraction\D*([\d.]+ %)", report).group(1)
    evictions = re.search(r"Evictions \(cached blocks\)\D*([\d,]+)", report).group(1)
    return {
        "bytes": path.stat().st_size,
        "requests": requests,
        "wall_s": wall,
        "replay_s": seconds,
        "req_per_s": requests / seconds if seconds else float("nan"),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
        "sharing": sharing,
        "evictions": evictions,
    }


def first_request_latency(path: Path) -> tuple[float, int]:
    from engine.trace.reader import TraceReader

    start = time.perf_counter()
    reader = TraceReader(path)
    first = next(iter(reader))
    seconds = time.perf_counter() - start
    assert first.num_prompt_tokens > 0
    return seconds, reader.bytes_read


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.huge_bench", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="size of the big trace (default 1024)")
    p.add_argument("--small-ratio", type=int, default=10, help="the small trace is this much smaller")
    p.add_argument("--prompt-tokens", type=int, default=3000, help="tokens per prompt (default 3000)")
    p.add_argument("--num-gpu-blocks", type=int, default=20000)
    p.add_argument("--dir", default=None, help="where to write the traces (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the traces")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="prefix-tui-huge-", dir=args.dir))
    try:
        big, small = workdir / "huge.jsonl", workdir / "small.jsonl"
        t0 = time.perf_counter()
        write_trace(big, args.size_mb << 20, prompt_tokens=args.prompt_tokens)
        write_trace(small, (args.size_mb << 20) // args.small_ratio, prompt_tokens=args.prompt_tokens)
        print(f"== huge trace bench: wrote {big.stat().st_size / 2**20:,.0f} MiB + "
              f"{small.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - t0:.1f} s "
              f"({workdir})", flush=True)

        latency, read = first_request_latency(big)
        print(f"first request from the {big.stat().st_size / 2**30:.2f} GiB trace: "
              f"{latency * 1000:.1f} ms (read {read:,} bytes of {big.stat().st_size:,})", flush=True)

        runs = {}
        for label, path in (("small", small), ("huge", big)):
            runs[label] = r = replay(path, args.num_gpu_blocks)
            print(f"{label:>5}: {r['bytes'] / 2**20:8,.0f} MiB  {r['requests']:>8,} requests  "
                  f"wall {r['wall_s']:7.1f} s  replay {r['replay_s']:7.1f} s  "
                  f"{r['req_per_s']:8,.0f} req/s  peak RSS {r['peak_rss_mb']:7,.0f} MiB  "
                  f"sharing {r['sharing']}  evictions {r['evictions']}", flush=True)
        s, h = runs["small"], runs["huge"]
        print(f"ratio huge/small: data {h['bytes'] / s['bytes']:.1f}x, requests "
              f"{h['requests'] / s['requests']:.1f}x, replay time {h['replay_s'] / s['replay_s']:.1f}x, "
              f"peak RSS {h['peak_rss_mb'] / s['peak_rss_mb']:.2f}x")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"(getrusage(RUSAGE_CHILDREN).ru_maxrss, the largest child: {children:,.0f} MiB)")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
