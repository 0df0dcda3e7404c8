"""`prefix-tui events FILE`: a recorded (attach --record) or exported (--export-events)
KV event stream, read back into the attach view's figures."""

from __future__ import annotations

import argparse

from engine.errors import UserError
from engine.export import check_writable, write_json_atomic
from engine.kvevents.reader import decode_stream, stream_format
from engine.kvevents.state import CacheState
from engine.kvevents.summary import summary_dict
from tui.attach_cli import print_summary
from tui.exit_codes import EXIT_OK


def events_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefix-tui events",
        description="Open a recorded (attach --record) or exported (--export-events) KV event "
                    "stream in the attach view.",
    )
    p.add_argument("file", help="a .jsonl export or a msgpack stream file")
    p.add_argument("--headless", action="store_true", help="no screen: print the figures")
    p.add_argument("--json", metavar="FILE", help="headless: write the figures here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    return p


def replay_file(path: str, state: CacheState) -> None:
    """Apply every batch of the file, in order; sequence gaps (msgpack) are counted."""
    from engine.backends import event_decoder

    expected: int | None = None
    for stored, batch in decode_stream(path, lambda json: event_decoder(json=json)):
        seq = stored.seq
        if seq is not None and expected is not None and seq > expected:
            state.gap(expected, seq, 0)
        if seq is not None:
            expected = seq + 1
        state.apply(batch, seq=seq, source="file")


def run_events(args: argparse.Namespace) -> int:
    fmt, meta = stream_format(args.file)
    if not args.headless:
        if args.json:
            raise UserError("--json goes with --headless")
        from tui.live_app import run_events_view

        return run_events_view(args.file)
    if args.json:
        check_writable(args.json, args.force, inputs=(args.file,))
    state = CacheState()
    replay_file(args.file, state)
    doc = summary_dict(state, status="complete", seconds=0.0, source={
        "file": args.file, "encoding": fmt.value,
        "block_hashes": (meta or {}).get("block_hashes")})
    print_summary(doc)
    if args.json:
        write_json_atomic(args.json, doc)
    return EXIT_OK
