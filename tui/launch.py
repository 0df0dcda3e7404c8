"""``prefix-tui TRACE``: check the input, then open the inspector."""

from __future__ import annotations

import argparse


def check_inspector(args: argparse.Namespace):  # noqa: ANN201 - (entry, options, source)
    """Bad settings or an unreadable trace raise UserError before the screen is taken
    over, so they end as one line on stderr."""
    from engine.options import backend_from_args, trace_source_from_args

    entry, options = backend_from_args(args)  # bad --max-num-seqs etc.: one line, exit 2
    # Opens the file and reads its first line: a missing or empty trace fails here.
    source = trace_source_from_args(args)
    source.reader()
    return entry, options, source


def run_inspector(args: argparse.Namespace) -> int:
    from tui.app import InspectorApp

    entry, options, source = check_inspector(args)
    app = InspectorApp(source, entry, options)
    app.run()
    return app.return_code or 0
