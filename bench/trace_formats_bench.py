"""Reading traces (no vLLM): what compression and a Jinja chat template cost, side by side.

- The Mooncake conversation trace's first N lines read plain, gzip and zstd (decompressed
  lazily as the reader goes): CPU time per pass and the ratio to plain.
- The bundled multi-turn chat trace read with the simple template and with a Jinja
  template (a <think>-dropping one, as tests/test_chat_template.py's): the Jinja side
  renders each prompt and, for every later turn, the previous turn again to find where
  the prompt stops extending it. CPU time (time.process_time) of one pass each.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

from engine.trace.reader import TraceReader

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = ROOT.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"
MULTI_TURN = ROOT / "traces" / "multi_turn.jsonl"
THINK_DROPPING = """\
{%- for m in messages -%}
{%- set content = m['content'] -%}
{%- if m['role'] == 'assistant' and not loop.last and '</think>' in content -%}
{%- set content = content.split('</think>')[-1] -%}
{%- endif -%}
<|{{ m['role'] }}|>
{{ content }}<|end|>
{% endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{{ '\\n' }}{%- endif -%}
"""


def cpu(reader: TraceReader) -> tuple[float, int, int]:
    """(CPU seconds, requests, later turns that break) of one pass."""
    start = time.process_time()
    n = breaks = 0
    for r in reader:
        n += 1
        breaks += r.template_break is not None
    return time.process_time() - start, n, breaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=2000, help="Mooncake lines read")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if CONVERSATION.exists():
            with CONVERSATION.open("rb") as f:
                data = b"".join(line for _, line in zip(range(args.limit), f))
            files = {"plain": tmpdir / "t.jsonl", "gzip": tmpdir / "t.jsonl.gz"}
            files["plain"].write_bytes(data)
            files["gzip"].write_bytes(gzip.compress(data))
            try:
                import zstandard

                files["zstd"] = tmpdir / "t.jsonl.zst"
                files["zstd"].write_bytes(zstandard.ZstdCompressor().compress(data))
            except ModuleNotFoundError:
                print("(zstandard not installed: no zstd column)")
            cpu(TraceReader(files["plain"]))  # warm-up (imports), not counted
            times = {k: cpu(TraceReader(path))[0] for k, path in files.items()}
            print(f"== reading {CONVERSATION.name}, first {args.limit:,} lines "
                  f"({len(data) / 1e6:.1f} MB), CPU s per pass")
            print("".join(f"{k:>10}" for k in times) + "   ratio to plain")
            print("".join(f"{t:>10.2f}" for t in times.values()) + "   "
                  + " ".join(f"{k} {t / times['plain']:.2f}x" for k, t in times.items() if k != "plain"))
        else:
            print(f"skip compression: {CONVERSATION} not present")
        template = tmpdir / "think.jinja"
        template.write_text(THINK_DROPPING)
        # One untimed pass each first: the tokenizer's load and jinja2's import are not counted.
        cpu(TraceReader(MULTI_TURN))
        cpu(TraceReader(MULTI_TURN, chat_template=str(template)))
        simple = cpu(TraceReader(MULTI_TURN))
        jinja = cpu(TraceReader(MULTI_TURN, chat_template=str(template)))
        print(f"== reading {MULTI_TURN.name} ({simple[1]:,} requests), CPU s per pass")
        print(f"{'simple':>10}{'jinja':>10}   ratio   breaks found (jinja)")
        print(f"{simple[0]:>10.2f}{jinja[0]:>10.2f}   {jinja[0] / simple[0]:.2f}x   {jinja[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
