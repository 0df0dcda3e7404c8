"""The headless report (`--headless`) and `compare`: replay a whole trace, print rich tables.

Paths and ids from the user are untrusted text: they go into rich ``Text`` objects, never
into markup strings.
"""

from __future__ import annotations

import dataclasses

import argparse
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine import metrics
from engine.backends import BackendEntry, BuildOptions
from engine.errors import TraceError
from engine.export import check_writable, export_document, request_row, write_json_atomic
from engine.metrics import Figure, Unit
from engine.layout_metrics import SEC_GROUPS, group_rows
from engine.model import KVGroupInfo, ServeSummary, StepRecord, Totals
from engine.reasons import ReasonTally
from engine.replay.routing import idle_replicas_note
from engine.options import backend_from_args, settings_dict, trace_source_from_args
from tui.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_VLLM_ERROR
from tui.widgets.safe import safe_text


@dataclass
class RunResult:
    label: str
    settings: dict
    totals: Totals = field(default_factory=Totals)
    # --json rows, as (step index, that step's rows): counts only, never a request's
    # tokens (a Mooncake request's would be ~0.5 MB), appended one step at a time.
    row_batches: list[tuple[int, list[dict]]] = field(default_factory=list)
    status: str = "complete"  # complete | vllm_error | interrupted | bad_input
    message: str = ""
    seconds: float = 0.0
    summary: ServeSummary | None = None  # serve mode's run figures
    breakdown: metrics.Breakdown = field(default_factory=metrics.Breakdown)  # by tenant, ...
    notes: list[str] = field(default_factory=list)  # about the trace (fields ignored, ...)
    reasons: ReasonTally | None = None  # miss reasons and hit sources, summed
    replicas: list[Totals] = field(default_factory=list)  # --instances: each replica's


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
    path: str, args: argparse.Namespace, entry: BackendEntry, options: BuildOptions,
    keep_rows: bool, show_progress: bool,
    on_record: Callable[[StepRecord], object] | None = None,
) -> RunResult:
    """Replay one trace to the end (or to an error / Ctrl-C), counting only;
    ``on_record`` sees every record (--plot's series)."""
    source = trace_source_from_args(args, path)
    reader = source.reader()
    # A bad first request stops here, before vLLM takes seconds to load.
    stream = iter(reader)
    first = next(stream, None)
    requests = itertools.chain([first] if first is not None else [], stream)
    err_console = Console(stderr=True)
    with err_console.status("importing vLLM…") if show_progress else _null():
        backend = entry.build(options)
    replay = backend.replay(requests, detail=False)
    # Enough to reproduce the run: the trace and how it was read, the mode and its knobs.
    serve = dataclasses.asdict(options.serve) if options.serve is not None else None
    v0 = {"v0": dataclasses.asdict(options.v0)} if options.v0 is not None else {}
    # The backend's settings: a V0 backend has no null block and hashes with hash().
    run = RunResult(label=path, settings=settings_dict(
        backend.settings, backend.version, backend.groups, engine=entry.engine, mode=entry.mode,
        trace=source.path, tokenizer=source.tokenizer_name,
        trace_format=reader.format, trace_block_size=reader.trace_block_size,
        max_requests=source.max_requests, lora_names=list(source.lora_names),
        chat_template=reader.chat_template,
        serve=serve, **v0,
        **({"instances": options.instances, "router": options.router}
           if options.instances is not None else {}),
    ))
    run.reasons = ReasonTally(backend.settings.block_size)
    start = time.perf_counter()
    progress = _progress(err_console, disabled=not show_progress)
    last: StepRecord | None = None
    try:
        with progress:
            task = progress.add_task("replaying", total=max(reader.total_bytes, 1), reqs=0)
            for n, record in enumerate(replay, 1):
                last = record
                run.breakdown.add(record.rows, record.index)
                run.reasons.add(record.rows)
                if on_record is not None:
                    on_record(record)
                if keep_rows and record.rows:
                    # One append: Ctrl-C cannot land between keeping rows and saying so.
                    run.row_batches.append((record.index, [request_row(r) for r in record.rows]))
                if n % 64 == 0:
                    progress.update(task, completed=reader.bytes_read, reqs=n)
                if record.error is not None:
                    run.status = "vllm_error"
                    run.message = f"step {record.index}: {record.error.message}"
    except KeyboardInterrupt:
        # Ctrl-C may land between `last = record` and its rows being kept: add them then,
        # so the rows add up to the totals of `last`.
        rows = last.rows if last is not None and keep_rows else ()
        if rows and (not run.row_batches or run.row_batches[-1][0] != last.index):
            run.row_batches.append((last.index, [request_row(r) for r in rows]))
        if last is not None and run.breakdown.last_step != last.index:
            run.breakdown.add(last.rows, last.index)
            run.reasons.add(last.rows)
        run.status = "interrupted"
        run.message = f"interrupted after {last.index + 1 if last else 0} steps"
    except TraceError as err:
        run.status = "bad_input"
        run.message = str(err)
    run.seconds = time.perf_counter() - start
    if reader.ignored_fields:  # a production format's fields prefix-tui does not use
        fields = ", ".join(f"{k} (first on line {n})" for k, n in reader.ignored_fields.items())
        run.notes.append(f"fields ignored ({reader.format} format): {fields}")
    if last is not None:
        run.totals = last.totals
    run.summary = replay.summary()
    replica_totals = getattr(replay, "replica_totals", None)
    if replica_totals is not None:
        run.replicas = replica_totals()
    return run


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_headless(args: argparse.Namespace) -> int:
    entry, options = backend_from_args(args)
    if args.json:
        check_writable(args.json, args.force, inputs=(args.trace,))
    plot = None
    if getattr(args, "plot", None):
        from tui.plot import Plot

        plot = Plot.checked(args.plot, args.force, inputs=(args.trace, args.json or ""))
    show = not args.no_progress and Console(stderr=True).is_terminal
    # Ctrl-C must reach the replay loop as KeyboardInterrupt, even when a parent ignored it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run = replay_trace(args.trace, args, entry, options, keep_rows=bool(args.json),
                       show_progress=show, on_record=plot.series.add if plot else None)
    console = Console()
    print_report(console, run)
    if plot is not None:
        plot.write(run.label, settings_line(run.settings).plain, run.status)
        Console(stderr=True).print(Text(f"wrote {safe_text(args.plot)}"), soft_wrap=True)
    if args.json:
        doc = export_document(
            run.settings, run.totals, [row for _i, rows in run.row_batches for row in rows],
            {"state": run.status, "message": run.message,
             "serve": metrics.serve_dict(run.summary, run.totals) if run.summary else {},
             **({"replicas": [{"replica": k, **metrics.totals_dict(t)}
                              for k, t in enumerate(run.replicas)]} if run.replicas else {})},
            run.breakdown,
            run.reasons.as_dict() if run.reasons is not None and run.reasons.rows else None,
        )
        write_json_atomic(args.json, doc)
        Console(stderr=True).print(Text(f"wrote {safe_text(args.json)}"), soft_wrap=True)
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


def format_figure(f: Figure) -> str:
    """A figure as the report and compare show it."""
    if f.unit is Unit.RATIO:
        return _pct(float(f.value))
    if f.unit is Unit.SECONDS:
        return f"{f.value:,.2f} s" if f.value < 1 else f"{f.value:,.1f} s"
    if f.unit is Unit.TEXT:
        return str(f.value)
    text = f"{f.value:,}"
    if f.second is not None:
        text += f" / {f.second:,}"
    if f.share is not None:
        text += f" ({_pct(f.share)})"
    return text


UNDEFINED_WITHOUT_CACHING = {"hit_rate", "recent_hit_rate", "hit_tokens"}


def report_figures(run: RunResult, ranking: bool = True) -> list[Figure]:
    """The report's figures; ``ranking``: with the prefixes that saved the most tokens
    (compare leaves them out: a rank is a different request in each run)."""
    figures = metrics.figures(run.totals, run.summary) + metrics.breakdown_figures(run.breakdown)
    figures += kv_group_figures(run.totals, run.settings.get("kv_cache_groups") or [])
    if run.reasons is not None:
        figures += [f for f in run.reasons.figures()
                    if ranking or not f.key.startswith("prefix:")]
    if run.settings.get("enable_prefix_caching", True):
        return figures
    # With caching off vLLM makes no lookups: a hit rate is undefined, not 0 %.
    return [
        dataclasses.replace(f, value="n/a (caching off)", unit=Unit.TEXT, second=None)
        if f.key in UNDEFINED_WITHOUT_CACHING or metrics.is_group_key(f.key) else f
        for f in figures
    ]


def kv_group_figures(t: Totals, groups: list[dict]) -> list[Figure]:
    """Per KV cache group (several groups): the cached blocks vLLM's lookups handed back,
    and the places a sliding window left to its null block."""
    infos = tuple(KVGroupInfo(**g) for g in groups)
    out: list[Figure] = []
    for key, label, hit, skipped, _new in group_rows(t, infos):
        out.append(Figure(SEC_GROUPS, key, f"{label}: cached blocks reused", hit, Unit.COUNT))
        if skipped:
            out.append(Figure(SEC_GROUPS, f"{key}:null", f"{label}: null blocks (outside "
                              "the window)", skipped, Unit.COUNT))
    return out


def layout_line(s: dict) -> Text | None:
    """The KV cache groups vLLM built from --hf-config, under the report."""
    cfg = s.get("hf_config")
    if not cfg:
        return None
    counts: dict[str, int] = {}
    for g in s.get("kv_cache_groups") or []:
        label = KVGroupInfo(**g).label
        counts[label] = counts.get(label, 0) + 1
    groups = ", ".join(f"{n}× {label}" for label, n in counts.items())
    return Text(f"model {cfg['model_type']} ({cfg['layers']}) from {cfg['path']}: "
                f"vLLM's KV cache groups {groups}")


def settings_line(s: dict) -> Text:
    caching = f"on ({s['prefix_caching_hash_algo']})" if s["enable_prefix_caching"] else "off"
    engine = s.get("engine", "v1")
    order = f" ({s['v0']['call_order']} call order)" if s.get("v0") else ""
    return Text(
        f"vLLM {s['vllm_version']} {engine}{order} · mode {s.get('mode', 'sequential')} · "
        "block size "
        f"{s['block_size']} · pool {s['num_gpu_blocks']:,} blocks · max_model_len "
        f"{s['max_model_len']:,} · prefix caching {caching}"
        + (f" · first {s['max_requests']:,} requests" if s.get("max_requests") else "")
    )


def print_table(console: Console, table: Table) -> None:
    """Print a table whole. Piped, rich assumes 80 columns and would wrap a cell mid-word
    ("AsyncSche…"): widen the console to the table instead (COLUMNS, when set, rules)."""
    if not console.is_terminal and "COLUMNS" not in os.environ:
        wide = console.options.update_width(10_000)
        console.width = max(console.width, console.measure(table, options=wide).maximum)
    console.print(table)


def replicas_table(run: RunResult) -> Table:
    """--instances: each replica's figures and the overall ones (vLLM's per replica); a
    caption names the replicas the router sent nothing, and why."""
    router = run.settings.get("router", "round-robin")
    idle = idle_replicas_note([t.requests for t in run.replicas], router,
                              done=run.status == "complete")
    table = Table(title=f"REPLICAS ({len(run.replicas)}, router {router})",
                  caption=Text(idle) if idle else None, caption_justify="left")
    for col in ("replica", "requests", "served", "prompt tokens", "hit tokens", "hit rate",
                "sharing", "evictions", "not fitted"):
        table.add_column(col, justify="right")
    for k, t in [(str(k), t) for k, t in enumerate(run.replicas)] + [("all", run.totals)]:
        table.add_row(k, f"{t.requests:,}", f"{metrics.served(t):,}", f"{t.tokens:,}",
                      f"{t.hits:,}", _pct(metrics.hit_rate(t)),
                      _pct(metrics.sharing_fraction(t)), f"{t.evictions:,}",
                      f"{t.not_fitted:,}", end_section=k == str(len(run.replicas) - 1))
    return table


def print_report(console: Console, run: RunResult) -> None:
    table = Table(
        title="PREFIX SHARING METRICS (vLLM Real Block Manager)",
        caption=settings_line(run.settings),
        show_header=False, expand=False,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    section = None
    for f in report_figures(run):
        if f.section != section:
            table.add_row(Text(f.section, style="bold"), "", end_section=False)
            section = f.section
        table.add_row(Text("  " + safe_text(f.label)), Text(format_figure(f)))
    console.print(Text("trace: ") + Text(safe_text(run.label)))
    print_table(console, table)
    layout = layout_line(run.settings)
    if layout is not None:
        console.print(Text(safe_text(layout.plain)), style="dim")
    if run.replicas:
        print_table(console, replicas_table(run))
    if run.status != "complete":
        console.print(Text(f"stopped early ({run.status}): {safe_text(run.message)}",
                           style="bold yellow"))
    console.print(Text(f"replayed in {run.seconds:.2f} s"), style="dim")
    for note in run.notes:
        console.print(Text(safe_text(note)), style="dim")
