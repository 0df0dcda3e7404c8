"""`--json` memory: the headless replay with and without `--json`, peak RSS side by side.

The --json rows hold counts, never a request's tokens (a Mooncake request's prompt is ~0.5
MB of Python ints): with `--json` the peak stays within 1.1x of the run without it. Both
sides run the real CLI (`python -m tui TRACE --headless ...`) in their own process, on the
first 3,000 requests of the Mooncake conversation trace with a 62,501-block pool (the
numbers issue 14 measured: 2.63 GB vs 1.16 GB before rows stopped keeping tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = ROOT.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"


def run_cli(trace: Path, limit: int, num_blocks: int, json_out: Path | None) -> dict:
    """One headless run in its own process: peak RSS from wait4, wall time around it."""
    cmd = [sys.executable, "-m", "tui", str(trace), "--headless", "--no-progress",
           "--max-requests", str(limit), "--num-gpu-blocks-override", str(num_blocks)]
    if json_out is not None:
        cmd += ["--json", str(json_out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr}")
    return {"seconds": seconds, "maxrss_mb": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--trace", default=str(CONVERSATION))
    p.add_argument("--limit", type=int, default=3000, help="first N requests")
    p.add_argument("--num-blocks", type=int, default=62_501)
    args = p.parse_args(argv)
    trace = Path(args.trace)
    if not trace.exists():
        print(f"skip: {trace} not present")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        plain = run_cli(trace, args.limit, args.num_blocks, None)
        with_json = run_cli(trace, args.limit, args.num_blocks, out)
        rows = len(json.loads(out.read_text())["requests"])
    ratio = with_json["maxrss_mb"] / plain["maxrss_mb"]
    print(f"== --json memory: {trace.name}, first {args.limit:,} requests ({rows:,} rows "
          f"written), {args.num_blocks:,} blocks")
    print(f"{'':22}{'no --json':>12}{'--json':>12}{'ratio':>8}  goal")
    print(f"{'peak RSS (MB)':22}{plain['maxrss_mb']:>12.0f}{with_json['maxrss_mb']:>12.0f}"
          f"{ratio:>7.2f}x  <= 1.1x {'ok' if ratio <= 1.1 else 'MISSED'}")
    print(f"{'wall time (s)':22}{plain['seconds']:>12.1f}{with_json['seconds']:>12.1f}"
          f"{with_json['seconds'] / plain['seconds']:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
