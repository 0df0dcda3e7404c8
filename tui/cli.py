"""Command line: `prefix-tui TRACE` (inspector), `--headless`, `gen`, `compare`.

Every user-facing failure ends as one line on stderr and a documented exit code:
0 done, 1 vLLM raised during replay (partial results kept), 2 bad input or usage,
130 interrupted (partial results kept).
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError
from engine.kvevents.options import add_event_arguments
from engine.options import add_engine_arguments, unused_serve_flags
from tui.exit_codes import EXIT_INTERRUPTED
from tui.pictures import add_picture_arguments, check_picture_args
from tui.widgets.safe import safe_text


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefix-tui",
        description="Replay a request trace against vLLM's real KV-cache block manager.",
        epilog="Other commands: `prefix-tui gen --help`, `prefix-tui compare --help`, "
               "`prefix-tui sweep --help`, `prefix-tui attach --help`, "
               "`prefix-tui events --help`, `prefix-tui learn`. `prefix-tui --version`: "
               "the versions in use.",
    )
    p.add_argument("trace", help="trace file: native JSONL or Mooncake JSONL")
    p.add_argument("--headless", action="store_true", help="replay it all and print the report")
    p.add_argument("--json", metavar="FILE", help="headless: write totals and per-request rows")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing --json / --export-events / --plot / -o file")
    p.add_argument("--no-progress", action="store_true", help="headless: no progress bar")
    add_engine_arguments(p)
    add_event_arguments(p)
    add_picture_arguments(p)
    return p


def _gen_parser() -> argparse.ArgumentParser:
    from engine.trace.generate import add_gen_arguments

    p = argparse.ArgumentParser(prog="prefix-tui gen", description="Write a synthetic trace.")
    add_gen_arguments(p)
    return p


def _compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefix-tui compare",
        description="Replay traces (or one trace in several modes) and print them side by side.",
    )
    p.add_argument("traces", nargs="+", help="one or more traces")
    p.add_argument("--json", metavar="FILE", help="write every run's settings and totals")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(p, several_modes=True)
    return p


def _warn_unused(args: argparse.Namespace, modes: list[str]) -> None:
    unused = unused_serve_flags(args, modes)
    if unused:
        verb = "applies" if len(unused) == 1 else "apply"
        print(f"prefix-tui: warning: {', '.join(unused)} {verb} only to --mode serve; ignored",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["--version"]:
            from tui.version import version_text

            print(version_text())
            return 0
        if argv and argv[0] == "gen":
            from engine.trace.generate import run_gen

            return run_gen(_gen_parser().parse_args(argv[1:]))
        if argv and argv[0] == "sweep":
            from tui.sweep_cli import run_sweep, sweep_parser

            return run_sweep(sweep_parser().parse_args(argv[1:]))
        if argv and argv[0] == "attach":
            from tui.attach_cli import attach_parser, run_attach

            return run_attach(attach_parser().parse_args(argv[1:]))
        if argv and argv[0] == "events":
            from tui.events_cli import events_parser, run_events

            return run_events(events_parser().parse_args(argv[1:]))
        if argv and argv[0] == "compare":
            from tui.compare import parse_modes, run_compare

            args = _compare_parser().parse_args(argv[1:])
            _warn_unused(args, parse_modes(args.mode))
            return run_compare(args)
        if argv and argv[0] == "learn":
            from tui.learn_cli import learn_parser, run_learn

            return run_learn(learn_parser().parse_args(argv[1:]), argv[1:])
        args = _main_parser().parse_args(argv)
        _warn_unused(args, [args.mode])
        check_picture_args(args)
        if not args.headless and getattr(args, "instances", None) is not None:
            args.replica = 0 if args.replica is None else args.replica  # r / R switch in the inspector
        if args.screenshot_at is not None:
            from tui.pictures import run_screenshot

            return run_screenshot(args)
        if args.headless:
            from tui.report import run_headless

            if getattr(args, "replica", None) is not None:
                raise UserError("--replica is for the inspector (--headless reports every replica)")

            return run_headless(args)
        if args.json:
            raise UserError("--json goes with --headless")
        from tui.launch import check_inspector, run_inspector

        if args.web:
            from tui.web import serve

            check_inspector(args)  # bad flags or trace: one line here, not in each browser
            return serve(argv, args.host, args.port, f"prefix-tui {args.trace}")
        return run_inspector(args)
    except UserError as err:
        # Paths and ids in the message come from the user's files: no raw control bytes.
        print(f"prefix-tui: {safe_text(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("prefix-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
