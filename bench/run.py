"""`make bench`: every benchmark, each printing its figures and ratios side by side."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("bench.replay_bench", "bench.tui_bench", "bench.serve_bench", "bench.serve_loop_bench",
           "bench.huge_bench", "bench.json_memory_bench", "bench.sweep_bench",
           "bench.kv_events_bench", "bench.trace_formats_bench",
           "bench.reasons_bench")


def main() -> int:
    worst = 0
    for name in BENCHES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"== {name}: not present")
            continue
        print(flush=True)
        worst = max(worst, module.main([]) or 0)
    return worst


if __name__ == "__main__":
    sys.exit(main())
