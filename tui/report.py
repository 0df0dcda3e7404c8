"""The headless report (`--headless`) and `compare`: replay a whole trace, print rich tables.

Paths and ids from the user are untrusted text: they go into rich ``Text`` objects, never
into markup strings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine import metrics
from engine.errors import TraceError, UserError
from engine.export import check_writable, export_document, write_json_atomic
from engine.records import RequestResult, StepRecord, Totals
from engine.session import settings_dict, settings_from_args
from engine.vllm_v1 import EngineSettings
from tui.widgets.safe import safe_text

EXIT_OK, EXIT_VLLM_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunResult:
    label: str
    settings: dict
    totals: Totals = field(default_factory=Totals)
    results: list[RequestResult] = field(default_factory=list)
    status: str = "complete"  # complete | vllm_error | interrupted | bad_input
    message: str = ""
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # mode-specific figures (serve mode)


def _progress(console: Console, disabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[reqs]} requests"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=disabled,
    )


def replay_trace(
    path: str, args: argparse.Namespace, settings: EngineSettings, mode: str,
    keep_rows: bool, show_progress: bool,
) -> RunResult:
    """Replay one trace to the end (or to an error / Ctrl-C), counting only."""
    from engine.trace import TraceReader
    from engine.session import make_replay

    reader = TraceReader(path, tokenizer_name=args.tokenizer, trace_block_size=args.trace_block_size)
    err_console = Console(stderr=True)
    with err_console.status("importing vLLM…") if show_progress else _null():
        replay, version = make_replay(args, settings, reader, mode=mode, detail=False)
    run = RunResult(label=path, settings=settings_dict(settings, version, mode=mode))
    start = time.perf_counter()
    progress = _progress(err_console, disabled=not show_progress)
    last: StepRecord | None = None
    try:
        with progress:
            task = progress.add_task("replaying", total=max(reader.total_bytes, 1), reqs=0)
            for n, record in enumerate(replay, 1):
                last = record
                if keep_rows:
                    run.results.extend(record.admitted)
                if n % 64 == 0:
                    progress.update(task, completed=reader.bytes_read, reqs=n)
                if record.error is not None:
                    run.status = "vllm_error"
                    run.message = f"step {record.index}: {record.error.message}"
    except KeyboardInterrupt:
        run.status = "interrupted"
        run.message = f"interrupted after {last.index + 1 if last else 0} steps"
    except TraceError as err:
        run.status = "bad_input"
        run.message = str(err)
    run.seconds = time.perf_counter() - start
    if last is not None:
        run.totals = last.totals
    summary = getattr(replay, "serve_summary", None)
    if callable(summary):
        run.summary = summary()
    return run


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_headless(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.json:
        check_writable(args.json, args.force)
    show = not args.no_progress and Console(stderr=True).is_terminal
    # Ctrl-C must reach the replay loop as KeyboardInterrupt, even when a parent ignored it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run = replay_trace(args.trace, args, settings, args.mode, keep_rows=bool(args.json), show_progress=show)
    console = Console()
    print_report(console, run)
    if args.json:
        doc = export_document(
            run.settings, run.totals, run.results,
            {"state": run.status, "message": run.message, "serve": run.summary},
        )
        write_json_atomic(args.json, doc)
        Console(stderr=True).print(Text(f"wrote {safe_text(args.json)}"))
    message = safe_text(run.message)
    if run.status == "bad_input":
        print(f"prefix-tui: {message}", file=sys.stderr)
        return EXIT_USAGE
    if run.status == "vllm_error":
        print(f"prefix-tui: {message}", file=sys.stderr)
        return EXIT_VLLM_ERROR
    if run.status == "interrupted":
        print(f"prefix-tui: {message}; partial results above", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def report_rows(run: RunResult) -> list[tuple[str, str, str]]:
    """(section, label, value) rows of the report; compare reuses them."""
    t = run.totals
    rows = [
        ("Request statistics", "Total requests", f"{t.requests:,}"),
        ("Request statistics", "Total tokens (prompt)", f"{t.tokens:,}"),
        ("Request statistics", "Total blocks (prompt)", f"{t.blocks:,}"),
        ("Request statistics", "Requests not fitted", f"{t.not_fitted:,}"),
        ("Block reuse statistics", "Blocks reused (prefix-cache hits)", f"{t.blocks_reused:,}"),
        ("Block reuse statistics", "Blocks newly allocated", f"{t.blocks_new:,}"),
        ("Block reuse statistics", "Overall sharing fraction", _pct(metrics.sharing_fraction(t))),
        ("Block reuse statistics", "Average per-request sharing fraction", _pct(metrics.avg_sharing_fraction(t))),
        ("Block reuse statistics", "Evictions (cached blocks)", f"{t.evictions:,}"),
        ("Cache hit rate (vLLM PrefixCacheStats)", "Hit rate, cumulative", _pct(metrics.hit_rate(t))),
        ("Cache hit rate (vLLM PrefixCacheStats)", "Hit rate, last 1,000 requests", _pct(metrics.recent_hit_rate(t))),
        ("Cache hit rate (vLLM PrefixCacheStats)", "Hit tokens / queried tokens", f"{t.hits:,} / {t.queries:,}"),
    ]
    if t.preemptions or t.preempted_queries:
        rows.append(("Cache hit rate (vLLM PrefixCacheStats)", "Preempted: hit / queried tokens",
                     f"{t.preempted_hits:,} / {t.preempted_queries:,}"))
    sm = run.summary
    if sm:
        sec = "Serve mode (vLLM Scheduler)"
        rows += [
            (sec, "Scheduler", f"{sm.get('scheduler')} (chunked prefill "
                               f"{'on' if sm.get('enable_chunked_prefill') else 'off'})"),
            (sec, "max_num_seqs / max_num_batched_tokens",
             f"{sm.get('max_num_seqs'):,} / {sm.get('max_num_batched_tokens'):,}"),
            (sec, "Requests finished / rejected", f"{sm['finished']:,} / {sm['rejected']:,}"),
            (sec, "Scheduler iterations (simulated)", f"{sm['iterations']:,}"),
            (sec, "Simulated time", f"{sm['simulated_time_s']:,.1f} s "
                                    f"({sm['iteration_time_s']} s per iteration)"),
            (sec, "Preemptions", f"{sm['preemptions']:,}"),
            (sec, "Peak KV usage", f"{sm['peak_kv_blocks']:,} blocks "
                                   f"({_pct(sm['peak_kv_usage'])})"),
            (sec, "Output tokens", f"{sm['output_tokens']:,}"),
        ]
    return rows


def settings_line(s: dict) -> Text:
    caching = f"on ({s['prefix_caching_hash_algo']})" if s["enable_prefix_caching"] else "off"
    return Text(
        f"vLLM {s['vllm_version']} · mode {s.get('mode', 'sequential')} · block size "
        f"{s['block_size']} · pool {s['num_gpu_blocks']:,} blocks · max_model_len "
        f"{s['max_model_len']:,} · prefix caching {caching}"
    )


def print_report(console: Console, run: RunResult) -> None:
    table = Table(
        title="PREFIX SHARING METRICS (vLLM Real Block Manager)",
        caption=settings_line(run.settings),
        show_header=False, expand=False,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    section = None
    for sec, label, value in report_rows(run):
        if sec != section:
            table.add_row(Text(sec, style="bold"), "", end_section=False)
            section = sec
        table.add_row(Text("  " + label), Text(value))
    console.print(Text("trace: ") + Text(safe_text(run.label)))
    console.print(table)
    if run.status != "complete":
        console.print(Text(f"stopped early ({run.status}): {safe_text(run.message)}",
                           style="bold yellow"))
    console.print(Text(f"replayed in {run.seconds:.2f} s"), style="dim")


def run_compare(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    show = not args.no_progress and Console(stderr=True).is_terminal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.modes:
        if len(args.traces) != 1:
            raise UserError("--modes compares one trace in several modes: give exactly one trace")
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [m for m in modes if m not in ("sequential", "serve")]
        if bad or len(modes) < 2:
            raise UserError("--modes takes two or more of: sequential, serve")
        runs = [replay_trace(args.traces[0], args, settings, m, False, show) for m in modes]
        labels = modes
    else:
        if len(args.traces) < 2:
            raise UserError("compare needs two or more traces (or one trace with --modes)")
        runs = [replay_trace(p, args, settings, args.mode, False, show) for p in args.traces]
        labels = [safe_text(Path(p).name) for p in args.traces]
    console = Console()
    table = Table(title="PREFIX SHARING METRICS (vLLM Real Block Manager): comparison",
                  caption=settings_line(runs[0].settings))
    table.add_column("metric", no_wrap=True)
    for label in labels:
        table.add_column(Text(label), justify="right")
    if len(runs) == 2:
        table.add_column("ratio 1st/2nd", justify="right")
    all_rows = [report_rows(r) for r in runs]
    labels_seen: list[str] = []  # every run's rows, in first-seen order (serve adds some)
    for rows in all_rows:
        labels_seen += [lbl for _s, lbl, _v in rows if lbl not in labels_seen]
    for row_label in labels_seen:
        values = []
        for rows in all_rows:
            values.append(next((v for _s, lbl, v in rows if lbl == row_label), "–"))
        cells = [Text(v) for v in values]
        if len(runs) == 2:
            cells.append(Text(_ratio_text(values[0], values[1])))
        table.add_row(Text(row_label), *cells)
    console.print(table)
    worst = EXIT_OK
    for run in runs:
        if run.status != "complete":
            print(f"prefix-tui: {safe_text(run.label)}: {safe_text(run.message)}",
                  file=sys.stderr)
            worst = max(worst, EXIT_USAGE if run.status == "bad_input" else EXIT_VLLM_ERROR)
    return worst


def _ratio_text(a: str, b: str) -> str:
    try:
        x = float(a.replace(",", "").replace("%", "").split("/")[0])
        y = float(b.replace(",", "").replace("%", "").split("/")[0])
    except ValueError:
        return "–"
    return f"{x / y:.2f}×" if y else "–"
