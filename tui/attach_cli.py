"""`prefix-tui attach ENDPOINT`: subscribe to a vLLM server's KV event stream.

Headless (`--headless --duration S --json FILE`) it listens, then prints the figures and
writes them; the live view is the attach Screen (tui/screens/live.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from engine.errors import UserError
from engine.export import check_writable, write_json_atomic
from engine.kvevents.attach import AttachSettings, Subscriber
from engine.kvevents.options import check_endpoint, meta_path
from engine.kvevents.prometheus import interval_rate
from engine.kvevents.prometheus import poll as poll_metrics
from engine.kvevents.record import Recorder
from engine.kvevents.state import CacheState
from engine.kvevents.summary import summary_dict
from tui.exit_codes import EXIT_INTERRUPTED, EXIT_OK
from tui.widgets.safe import safe_text

SERVER_HINT = ("a vLLM server started with --kv-events-config '{\"enable_kv_cache_events\": "
               "true, \"publisher\": \"zmq\", \"endpoint\": \"tcp://*:5557\", "
               "\"replay_endpoint\": \"tcp://*:5558\"}'")


def attach_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefix-tui attach",
        description="Subscribe to a vLLM server's KV event stream (vLLM's ZMQ publisher) and "
                    f"show what it caches. The server: {SERVER_HINT}.",
    )
    p.add_argument("endpoint", help="the server's event endpoint, e.g. tcp://HOST:5557")
    p.add_argument("--replay-endpoint", metavar="ENDPOINT", default=None,
                   help="its replay endpoint (e.g. tcp://HOST:5558): missed batches and the "
                        "history before joining are asked for there")
    p.add_argument("--bind", action="store_true",
                   help="bind ENDPOINT instead of connecting (for a publisher that connects, "
                        "such as prefix-tui --serve-events tcp://HOST:PORT)")
    p.add_argument("--topic", default="", help="vLLM's topic (default: empty, every message)")
    p.add_argument("--no-history", action="store_true",
                   help="do not ask the replay endpoint for what came before joining")
    p.add_argument("--metrics-url", metavar="URL", default=None,
                   help="also poll the server's Prometheus endpoint (http://HOST:PORT/metrics) "
                        "for vLLM's prefix-cache queries / hits counters: the live hit rate")
    p.add_argument("--headless", action="store_true", help="no screen: listen, then report")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="headless: listen this long (default 10 s)")
    p.add_argument("--stop-when-idle", type=float, default=None, metavar="S",
                   help="headless: stop once no batch came for S seconds after the first")
    p.add_argument("--silence-timeout", type=float, default=5.0, metavar="S",
                   help="say so when nothing arrived for S seconds (default 5)")
    p.add_argument("--json", metavar="FILE", help="headless: write the figures here")
    p.add_argument("--record", metavar="FILE",
                   help="save the stream (in sequence order, recovered batches included) as "
                        "msgpack frames, the --export-events-format msgpack file; "
                        "`prefix-tui events FILE` opens it")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing --json / --record file")
    p.add_argument("--verbose", action="store_true", help="let vLLM's log lines through")
    return p


def settings_from_args(args: argparse.Namespace) -> AttachSettings:
    check_endpoint("attach", args.endpoint)
    if args.replay_endpoint is not None:
        check_endpoint("--replay-endpoint", args.replay_endpoint)
    for flag, value in (("--duration", args.duration), ("--stop-when-idle", args.stop_when_idle),
                        ("--silence-timeout", args.silence_timeout)):
        if value is not None and not 0 < value <= 7 * 86400:
            raise UserError(f"{flag} {value}: expected a positive number of seconds")
    url = args.metrics_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise UserError(f"--metrics-url {url}: expected http://HOST:PORT/metrics")
    return AttachSettings(endpoint=args.endpoint, replay_endpoint=args.replay_endpoint,
                          topic=args.topic, bind=args.bind, history=not args.no_history)


def run_attach(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not args.headless:
        if args.json or args.duration is not None or args.stop_when_idle is not None:
            raise UserError("--json, --duration and --stop-when-idle go with --headless")
        from tui.live_app import run_live

        return run_live(args, settings)
    if args.json:
        check_writable(args.json, args.force)
    if args.record:
        check_writable(args.record, args.force)
        check_writable(meta_path(args.record), args.force)
        if args.json and Path(args.json).resolve() == Path(args.record).resolve():
            raise UserError(f"{args.record}: given to both --json and --record")
    from engine.backends import event_decoder

    decode = event_decoder()  # imports vLLM (seconds) before the sockets open
    state = CacheState()
    recorder = Recorder(args.record) if args.record else None
    sub = Subscriber(settings, decode, state, record=recorder)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C must reach the loop as KeyboardInterrupt, even when a parent ignored it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sub.open()
    where = f" (replay: {settings.replay_endpoint})" if settings.replay_endpoint else ""
    verb = "bound to" if settings.bind else "listening on"
    print(f"prefix-tui attach: {verb} {safe_text(settings.endpoint)}{safe_text(where)}",
          file=sys.stderr, flush=True)
    before = poll_metrics(args.metrics_url) if args.metrics_url else None
    status, seconds = _listen(sub, state, args)
    doc = summary_dict(state, status=status, seconds=seconds, source={
        "endpoint": settings.endpoint, "replay_endpoint": settings.replay_endpoint,
        "topic": settings.topic, "bind": settings.bind})
    if args.metrics_url:
        after = poll_metrics(args.metrics_url)
        doc["vllm_metrics"] = {
            "url": args.metrics_url, "queries": after.queries, "hits": after.hits,
            "hit_rate": after.hit_rate, "hit_rate_during": interval_rate(before, after),
            "error": after.error or (before.error if before is not None else ""),
        }
    sub.close()
    if recorder is not None:
        recorder.close({"recorded_from": settings.endpoint, "block_hashes": state.hash_type,
                        "status": status})
    print_summary(doc)
    if args.json:
        write_json_atomic(args.json, doc)
    return EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK


def _listen(sub: Subscriber, state: CacheState, args: argparse.Namespace) -> tuple[str, float]:
    duration = 10.0 if args.duration is None else args.duration
    start = time.monotonic()
    warned = False
    status = "complete"
    try:
        while True:
            now = time.monotonic()
            if now - start >= duration:
                break
            sub.poll(min(0.1, max(0.0, start + duration - now)))
            quiet = sub.silent_for()
            if (args.stop_when_idle is not None and state.batches
                    and quiet >= args.stop_when_idle):
                status = "stream_stopped"
                break
            if not warned and quiet >= args.silence_timeout:
                warned = True
                what = "nothing" if not state.batches and not state.problems.malformed_frames \
                    else "nothing more"
                print(f"prefix-tui attach: {what} from {safe_text(args.endpoint)} for "
                      f"{args.silence_timeout:g} s (is it {SERVER_HINT}?)",
                      file=sys.stderr, flush=True)
            elif quiet < args.silence_timeout:
                warned = False
    except KeyboardInterrupt:
        status = "interrupted"
    if status == "complete" and not state.batches:
        status = "silent"
    return status, time.monotonic() - start


def print_summary(doc: dict) -> None:
    lines = [
        f"batches {doc['batches']:,}  stored {doc['stored']:,}  removed {doc['removed']:,}  "
        f"cleared {doc['cleared']:,}  cached now {doc['cached_now']:,} hashes "
        f"({doc['cached_blocks']:,} blocks)",
        f"missed {doc['missed_batches']:,} batches, recovered {doc['recovered_batches']:,}; "
        f"history {doc['history_batches']:,}; malformed frames {doc['malformed_frames']:,}, "
        f"bad events {doc['bad_events']:,}, unknown tags {doc['unknown_tags']:,}, "
        f"wrong hash types {doc['wrong_hash_types']:,}",
        f"status {doc['status']} after {doc['seconds']:.1f} s",
    ]
    m = doc.get("vllm_metrics")
    if m is not None:
        if m["error"]:
            lines.append(f"vLLM metrics: {safe_text(m['error'])}")
        else:
            def pct(x):
                return "n/a" if x is None else f"{100 * x:.2f} %"
            lines.append(f"vLLM prefix-cache hit rate {pct(m['hit_rate'])} cumulative, "
                         f"{pct(m['hit_rate_during'])} while attached")
    for err in doc["errors"][-5:]:
        lines.append(f"  {safe_text(err)}")
    print("\n".join(lines))
