"""``prefix-tui TRACE``: check the input, then open the inspector."""

from __future__ import annotations

import argparse


def run_inspector(args: argparse.Namespace) -> int:
    """Bad settings or an unreadable trace raise UserError before the screen is taken
    over, so they end as one line on stderr."""
    from engine.options import backend_from_args
    from engine.trace.reader import TraceReader
    from tui.app import InspectorApp

    entry, options = backend_from_args(args)  # bad --max-num-seqs etc.: one line, exit 2
    # Opens the file and reads its first line: a missing or empty trace fails here.
    TraceReader(args.trace, tokenizer_name=args.tokenizer, trace_block_size=args.trace_block_size,
                max_requests=args.max_requests)
    app = InspectorApp(
        args.trace, entry, options,
        tokenizer_name=args.tokenizer, trace_block_size=args.trace_block_size,
        max_requests=args.max_requests,
    )
    app.run()
    return app.return_code or 0
