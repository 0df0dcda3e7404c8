"""`prefix-tui sweep TRACE`: one replay on vLLM's real manager per pool size (and block
size), each in its own process, with the ceilings beside the curve.

Prints a table, then the curve (plotext) with the ceilings as lines; ``--json`` / ``--csv``
write the points (atomic, never over an existing file without --force, never over the
trace). Ctrl-C keeps the points done: they are printed and written (exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine import metrics
from engine.errors import UserError
from engine.export import check_writable, write_json_atomic, write_text_atomic
from engine.options import (
    add_engine_arguments,
    backend_from_args,
    trace_source_from_args,
    unused_serve_flags,
)
from engine.sweep.executors import EXECUTORS, ExecutorChoice, default_jobs, run_points
from engine.sweep.plan import SweepOutcome, SweepPlan, plan_sweep
from engine.sweep.points import PointResult, parse_list, parse_sizes
from tui.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_VLLM_ERROR
from tui.report import print_table
from tui.sweep_cells import (
    axis_cells,
    axis_headers,
    figure_cells,
    figure_headers,
    miss_cell,
    pct as _pct,
)
from tui.sweep_plot import curve_text
from tui.widgets.safe import safe_text

BOUND_NOTE = "prefix-tui's bound, not vLLM's"


def sweep_parser() -> argparse.ArgumentParser:
    # The engine flags are the inspector's; the pool and the block size become lists.
    p = argparse.ArgumentParser(
        prog="prefix-tui sweep", conflict_handler="resolve",
        description="Replay a trace once per pool size (and block size) on vLLM's real "
                    "KV-cache manager, each point in its own process, with the ceilings.",
    )
    p.add_argument("trace", help="trace file: native JSONL or Mooncake JSONL")
    add_engine_arguments(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--num-gpu-blocks-override", default=None, metavar="N[,N...]",
                   help="pool sizes in blocks, vLLM's null block included; inf: a pool that "
                        "never evicts (default 1000,10000,100000,inf)")
    g.add_argument("--capacity-tokens", default=None, metavar="T[,T...]",
                   help="pool sizes in tokens instead (1e6 is fine; inf), usable blocks x "
                        "block size")
    g.add_argument("--block-size", default="16", metavar="B[,B...]",
                   help="tokens per KV block, one sweep each (default 16)")
    g.add_argument("--kv-offloading-size", default=None, metavar="GIB[,GIB...]",
                   help="serve: vLLM's CPU offloading tier per point, in GiB (0: none); "
                        "an axis beside the pools")
    g.add_argument("--num-cpu-blocks", default=None, metavar="N[,N...]",
                   help="serve: the CPU tier per point as exact block counts (0: none)")
    g.add_argument("--instances", default=None, metavar="N[,N...]",
                   help="replicas behind --router per point, each with the point's pool "
                        "(an axis)")
    g.add_argument("--warmup-fraction", type=float, default=0.0, metavar="F",
                   help="the first F of the requests fill the cache but are left out of "
                        "the figures (default 0)")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help=f"worker processes (default: the cores, {default_jobs()} here)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local worker processes (default) or Ray tasks")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="an existing Ray cluster (default: start a local Ray)")
    g.add_argument("--no-ceilings", action="store_true",
                   help="no extra never-evicting run and no prefix-tui bounds")
    g.add_argument("--json", metavar="FILE", help="write the points and ceilings")
    g.add_argument("--csv", metavar="FILE", help="write the points, one row each")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--no-plot", action="store_true", help="no curve in the terminal")
    g.add_argument("--plot", metavar="FILE.png|svg",
                   help="also draw the capacity curve and ceilings to a file (matplotlib: "
                        "pip install 'prefix-tui[plot]')")
    g.add_argument("--tui", action="store_true",
                   help="the sweep screen: a progress bar per point, the curve as points "
                        "arrive (no --json / --csv)")
    return p


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    if args.engine != "v1":
        raise UserError("sweep runs vLLM V1 (--engine v1)")
    if getattr(args, "hf_config", None):
        # The never-evicting pool's size and prefix-tui's bounds assume one full-attention
        # group; a hybrid layout's groups share the pool differently.
        raise UserError("sweep: --hf-config (hybrid KV layouts) is not supported yet")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {args.jobs})")
    if args.ray_address and args.executor != "ray":
        raise UserError("--ray-address goes with --executor ray")
    if getattr(args, "replica", None) is not None:
        raise UserError("--replica is the inspector's (a sweep reports every replica)")
    gib, cpu_blocks = args.kv_offloading_size, args.num_cpu_blocks
    if gib is not None and cpu_blocks is not None:
        raise UserError("give --kv-offloading-size or --num-cpu-blocks, not both")
    tier_flag = "--kv-offloading-size" if gib is not None else "--num-cpu-blocks"
    if (gib is not None or cpu_blocks is not None) and args.mode != "serve":
        raise UserError(f"{tier_flag}: the CPU tier is vLLM's scheduler's, sweep it with "
                        "--mode serve")
    sizes = (parse_sizes(tier_flag, gib if gib is not None else cpu_blocks,
                         floats=gib is not None)
             if gib is not None or cpu_blocks is not None else None)
    instances = (parse_list("--instances", args.instances, allow_inf=False)
                 if args.instances is not None else None)
    block_sizes = parse_list("--block-size", args.block_size, allow_inf=False)
    pools = capacities = None
    if args.capacity_tokens is not None:
        capacities = parse_list("--capacity-tokens", args.capacity_tokens, allow_inf=True,
                                floats=True)
    if args.num_gpu_blocks_override is not None:
        pools = parse_list("--num-gpu-blocks-override", args.num_gpu_blocks_override,
                           allow_inf=True)
    elif capacities is None:
        pools = [1000, 10000, 100000, None]
    # The other flags are checked as the inspector checks them, with the lists' first
    # values; each point then gets its own.
    base = argparse.Namespace(**{**vars(args), "block_size": block_sizes[0],
                                 "num_gpu_blocks_override": 2, "kv_offloading_size": None,
                                 "num_cpu_blocks": None,
                                 "instances": instances[0] if instances else None})
    entry, options = backend_from_args(base)
    tiers = None
    if sizes is not None:
        assert options.serve is not None
        key = "kv_offloading_size" if gib is not None else "num_cpu_blocks"
        tiers = [dataclasses.replace(options.serve.tier, **{key: v}) for v in sizes]
    return plan_sweep(engine=entry.engine, mode=entry.mode, options=options,
                      source=trace_source_from_args(args), block_sizes=block_sizes,
                      pools=pools, capacities=capacities,
                      warmup_fraction=args.warmup_fraction, ceilings=not args.no_ceilings,
                      tiers=tiers, instances=instances)


def settings_doc(args: argparse.Namespace, plan: SweepPlan, version: str) -> dict:
    spec = plan.specs[0]
    s = spec.options.settings
    serve = spec.options.serve
    return {
        "vllm_version": version,
        "engine": spec.engine,
        "mode": spec.mode,
        "trace": spec.source.path,
        "tokenizer": spec.source.tokenizer_name,
        "trace_block_size": spec.source.trace_block_size,
        "max_requests": spec.source.max_requests,
        "requests_in_trace": plan.requests,
        "warmup_fraction": plan.warmup_fraction,
        "warmup_requests": plan.warmup,
        "block_sizes": list(plan.block_sizes),
        "max_model_len": s.max_model_len,
        "enable_prefix_caching": s.enable_caching,
        "prefix_caching_hash_algo": s.hash_algo,
        "serve": dataclasses.asdict(serve) if serve is not None else None,
        "instances": (list(dict.fromkeys(s.instances for s in plan.points))
                      if plan.replica_axis else None),
        "router": spec.options.router if plan.replica_axis else None,
        "cpu_tier_axis": _tier_axis(plan),
        "executor": args.executor,
        "jobs": args.jobs or default_jobs(),
    }


def _tier_axis(plan: SweepPlan) -> dict | None:
    tiers = [s.tier for s in plan.points if s.tier is not None]
    if not tiers:
        return None
    gib = tiers[0].kv_offloading_size is not None
    values = [t.kv_offloading_size if gib else t.num_cpu_blocks for t in tiers]
    return {"flag": "--kv-offloading-size" if gib else "--num-cpu-blocks",
            "values": list(dict.fromkeys(values)), "eviction_policy": tiers[0].eviction_policy,
            "offload_latency": tiers[0].latency}


class _Bars:
    """A progress bar per point (stderr, transient)."""

    def __init__(self, plan: SweepPlan, show: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[phase]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True, disable=not show,
        )
        self.tasks = {s.index: self.progress.add_task(
            ("ceiling · " if s.ceiling else "") + s.label, total=max(plan.requests, 1),
            phase="waiting") for s in plan.specs}

    def update(self, index: int, phase: str, done: int, total: int) -> None:
        self.progress.update(self.tasks[index], completed=done, total=max(total, 1),
                             phase=phase)

    def finish(self, result: PointResult) -> None:
        self.progress.update(self.tasks[result.index], phase=result.status)


def run_sweep(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    unused = unused_serve_flags(args, [plan.specs[0].mode])
    if unused:
        print(f"prefix-tui: warning: {', '.join(unused)} only apply to --mode serve; ignored",
              file=sys.stderr)
    for out in (args.json, args.csv):
        if out:
            check_writable(out, args.force, inputs=(args.trace,))
    if args.json and args.csv and args.json == args.csv:
        raise UserError("--json and --csv name the same file")
    if args.plot:
        from tui.plot import Plot

        if args.plot in (args.json, args.csv):
            raise UserError("--plot names the same file as --json or --csv")
        Plot.checked(args.plot, args.force, inputs=(args.trace,))  # before the points run
    choice = ExecutorChoice(args.executor, args.jobs, args.ray_address)
    if args.tui:
        if args.json or args.csv or args.plot:
            raise UserError("--tui shows the sweep; --json / --csv / --plot go without it")
        from tui.sweep_app import SweepApp

        app = SweepApp(plan, choice)
        app.run()
        return app.return_code or 0
    show = not args.no_progress and Console(stderr=True).is_terminal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bars = _Bars(plan, show)
    done: list[PointResult] = []

    def on_result(r: PointResult) -> None:
        done.append(r)
        bars.finish(r)

    interrupted = False
    try:
        with bars.progress:
            run_points(plan.specs, choice, on_result, bars.update)
    except KeyboardInterrupt:
        interrupted = True
    outcome = SweepOutcome(plan, tuple(sorted(done, key=lambda r: r.index)))
    console = Console()
    print_table(console, sweep_table(outcome))
    for line in ceiling_lines(outcome):
        console.print(line)
    if not args.no_plot and outcome.point_pairs():
        width = min(console.width, 110) if console.is_terminal else 100
        console.print(Text.from_ansi(curve_text(outcome, width, 22, color=console.is_terminal
                                                and not console.no_color)))
    version = next((r.vllm_version for r in outcome.results if r.vllm_version), "")
    if args.json:
        doc = outcome.document(settings_doc(args, plan, version))
        doc["status"] = "interrupted" if interrupted else "complete"
        write_json_atomic(args.json, doc)
        Console(stderr=True).print(Text(f"wrote {safe_text(args.json)}"), soft_wrap=True)
    if args.csv:
        write_text_atomic(args.csv, outcome.csv_text())
        Console(stderr=True).print(Text(f"wrote {safe_text(args.csv)}"), soft_wrap=True)
    if args.plot and outcome.point_pairs():
        from tui.plot import write_sweep

        warm = f" · warm-up {plan.warmup:,} requests not counted" if plan.warmup else ""
        write_sweep(outcome, args.plot, args.force,
                    f"{safe_text(args.trace)} · capacity sweep, vLLM {version} · mode "
                    f"{plan.specs[0].mode}{warm}")
        Console(stderr=True).print(Text(f"wrote {safe_text(args.plot)}"), soft_wrap=True)
    return _exit_code(outcome, interrupted)


def _exit_code(outcome: SweepOutcome, interrupted: bool) -> int:
    code = EXIT_OK
    for r in outcome.results:
        if r.status == "complete":
            continue
        spec = outcome.plan.specs[r.index]
        print(f"prefix-tui: {safe_text(spec.label)}: {safe_text(r.message)}", file=sys.stderr)
        code = max(code, EXIT_USAGE if r.status == "bad_input" else EXIT_VLLM_ERROR)
    if interrupted:
        print(f"prefix-tui: interrupted after {len(outcome.results)} of "
              f"{len(outcome.plan.specs)} runs; partial results above", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def sweep_table(outcome: SweepOutcome) -> Table:
    plan = outcome.plan
    warm = (f" · warm-up: first {plan.warmup:,} of {plan.requests:,} requests not counted"
            if plan.warmup else "")
    table = Table(title="CAPACITY SWEEP (vLLM Real Block Manager, one process per point)",
                  caption=Text(f"mode {plan.specs[0].mode}{warm} · bound: farthest-next-use, "
                               f"{BOUND_NOTE}"))
    hit = "GPU hit rate (vLLM)" if plan.tier_axis else "hit rate (vLLM)"
    for name in ("block", *axis_headers(plan), "pool (blocks)", "capacity (tokens)", hit,
                 "bound (prefix-tui)", *figure_headers(plan), "sharing", "avg sharing",
                 "evictions", "not fitted", "requests", "tokens", "missed blocks: why",
                 "time"):
        table.add_column(name, justify="left" if name.startswith("missed") else "right",
                         no_wrap=True)
    for spec, r in outcome.point_pairs():
        t = r.totals
        inf = spec.num_blocks is None
        pool = f"inf ({r.num_blocks_run:,})" if inf else f"{spec.num_blocks:,}"
        cap = "inf" if inf else f"{spec.capacity_tokens:,}"
        ok = r.status == "complete"
        bound = r.bound.hit_rate if (r.bound is not None and not inf) else None
        table.add_row(
            str(spec.block_size), *axis_cells(plan, spec, r), pool, cap,
            _pct(metrics.hit_rate(t)) if ok else Text(r.status, style="bold yellow"),
            _pct(bound), *figure_cells(plan, spec, r), _pct(metrics.sharing_fraction(t)),
            _pct(metrics.avg_sharing_fraction(t)), f"{t.evictions:,}", f"{t.not_fitted:,}",
            f"{t.requests:,}", f"{t.tokens:,}", miss_cell(r.reasons), f"{r.seconds:.1f} s",
        )
    return table


def ceiling_lines(outcome: SweepOutcome) -> list[Text]:
    out = []
    for c in outcome.ceilings():
        parts = [f"block {c.block_size}: ceilings"]
        if c.unbounded is not None and c.unbounded.status == "complete":
            parts.append(f"unbounded (vLLM, pool of {c.unbounded.num_blocks_run:,} blocks that "
                         f"never evicts) {_pct(metrics.hit_rate(c.unbounded.totals))}")
        if c.reuse is not None:
            parts.append(f"reuse bound ({BOUND_NOTE}: full blocks whose whole prefix "
                         f"appeared earlier) {_pct(c.reuse.hit_rate)}")
        if len(parts) > 1:
            out.append(Text(" · ".join(parts)))
    return out
