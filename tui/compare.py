"""`prefix-tui compare`: replay traces, in one or more modes, and print them side by side.

One column per run: every trace in every mode of ``--mode`` (a comma-separated list;
``--modes`` is the same flag). Two or more runs; a run's label is its trace's file name
(the shortest distinct path suffix when two traces share a name), its mode, or both. Ratio
columns divide each later run by the first (numbers from engine.metrics, never their
text). ``--json`` writes the runs' settings, status and totals, as `--headless --json`
does (atomic, never over an existing file without ``--force``, never over a trace).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine import metrics
from engine.backends import MODES
from engine.errors import UserError
from engine.export import SCHEMA_VERSION, check_writable, write_json_atomic
from engine.metrics import Figure, Unit
from engine.options import backend_from_args, parse_engines
from tui.exit_codes import EXIT_OK, EXIT_USAGE, EXIT_VLLM_ERROR
from tui.report import (
    RunResult,
    format_figure,
    print_table,
    replay_trace,
    report_figures,
    settings_line,
)
from tui.engine_diff import difference_dict, engine_differences, print_differences, rows
from tui.widgets.safe import safe_text

ORDINALS = ("1st", "2nd", "3rd")


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise UserError(f"--mode: unknown mode {m!r} (have: {', '.join(MODES)})")
    if len(set(modes)) != len(modes):
        raise UserError(f"--mode: a mode given twice ({text})")
    return modes or ["sequential"]


def distinct_labels(paths: list[str]) -> list[str]:
    """Each trace's file name, or as many trailing path parts as it takes to tell two
    traces with the same name apart; the same file given twice gets #2, #3."""
    parts = [Path(p).resolve().parts for p in paths]
    labels = []
    for i, p in enumerate(parts):
        depth = 1
        while depth < len(p) and any(q != p and q[-depth:] == p[-depth:] for q in parts):
            depth += 1
        labels.append("/".join(p[-depth:]))
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


def ordinal(n: int) -> str:
    return ORDINALS[n - 1] if n <= len(ORDINALS) else f"{n}th"


def run_compare(args: argparse.Namespace) -> int:
    modes = parse_modes(args.mode)
    engines = parse_engines(args.engine)
    traces = list(args.traces)
    if len(traces) * len(modes) * len(engines) < 2:
        raise UserError("compare needs two runs: two or more traces, or one trace with "
                        "--mode sequential,serve or --engines v0,v1")
    if args.json:
        check_writable(args.json, args.force, inputs=tuple(traces))
    # Bad flags, or an engine that cannot run here: one line before any replay.
    plans = [(mode, engine, backend_from_args(args, mode, engine))
             for engine in engines for mode in modes]
    show = not args.no_progress and Console(stderr=True).is_terminal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names = distinct_labels(traces)
    runs: list[RunResult] = []
    labels: list[str] = []
    keep_rows = len(engines) > 1  # engines are compared request by request too
    for (name, path), (mode, engine, (entry, options)) in itertools.product(
            zip(names, traces), plans):
        runs.append(replay_trace(path, args, entry, options, keep_rows, show))
        labels.append(" · ".join(x for x, many in (
            (name, len(traces) > 1), (mode, len(modes) > 1), (engine, len(engines) > 1))
            if many))
    print_table(Console(), compare_table(runs, labels, modes))
    diffs = engine_differences(runs, engines) if len(runs) == 2 and len(engines) == 2 else None
    if diffs is not None:
        compared = min(len(rows(r)) for r in runs)
        print_differences(Console(), diffs, (engines[0], engines[1]), compared)
    if args.json:
        doc = compare_document(runs, labels)
        if diffs is not None:
            doc["differences"] = [difference_dict(d, (engines[0], engines[1])) for d in diffs]
        write_json_atomic(args.json, doc)
        Console(stderr=True).print(Text(f"wrote {safe_text(args.json)}"), soft_wrap=True)
    worst = EXIT_OK
    for run in runs:
        if run.status != "complete":
            print(f"prefix-tui: {safe_text(run.label)}: {safe_text(run.message)}", file=sys.stderr)
            worst = max(worst, EXIT_USAGE if run.status == "bad_input" else EXIT_VLLM_ERROR)
    return worst


def compare_caption(runs: list[RunResult], modes: list[str]) -> Text:
    """The settings every run shares (the modes, when they differ, are the columns)."""
    settings = dict(runs[0].settings)
    for key in ("vllm_version", "engine"):  # compare --engines: each run's own
        values = list(dict.fromkeys(str(r.settings.get(key, "v1")) for r in runs))
        settings[key] = " / ".join(values)
    if len(modes) > 1:
        settings["mode"] = " / ".join(modes)
    return settings_line(settings)


def compare_table(runs: list[RunResult], labels: list[str], modes: list[str]) -> Table:
    table = Table(title="PREFIX SHARING METRICS (vLLM Real Block Manager): comparison",
                  caption=compare_caption(runs, modes))
    table.add_column("metric", no_wrap=True)
    for label in labels:
        table.add_column(Text(safe_text(label)), justify="right")
    for k in range(2, len(runs) + 1):
        table.add_column(f"ratio {ordinal(k)}/1st", justify="right")
    per_run = [{f.key: f for f in report_figures(r, ranking=False)} for r in runs]
    keys: dict[str, str] = {}  # every run's figures, in first-seen order (serve adds some)
    for figs in per_run:
        for key, f in figs.items():
            keys.setdefault(key, f.label)
    for key, label in keys.items():
        figs = [p.get(key) for p in per_run]
        cells = [Text(format_figure(f) if f is not None else "–") for f in figs]
        cells += [Text(ratio_text(f, figs[0])) for f in figs[1:]]
        table.add_row(Text(safe_text(label)), *cells)
    return table


def ratio_text(a: Figure | None, b: Figure | None) -> str:
    """The ratio of two runs' numbers (the figures themselves, never their text)."""
    if a is None or b is None or a.unit is Unit.TEXT or b.unit is Unit.TEXT:
        return "–"
    return f"{a.value / b.value:.2f}×" if b.value else "–"


def compare_document(runs: list[RunResult], labels: list[str]) -> dict:
    """compare --json: per run what `--headless --json` writes, less the request rows."""
    return {
        "schema_version": SCHEMA_VERSION,
        "runs": [
            {
                "label": label,
                "settings": run.settings,
                "status": {"state": run.status, "message": run.message},
                "totals": metrics.totals_dict(run.totals),
                "serve": metrics.serve_dict(run.summary, run.totals) if run.summary else None,
            }
            for run, label in zip(runs, labels)
        ],
    }
