"""What a replay does with vLLM's KV events beyond its records: --export-events FILE and
--serve-events ENDPOINT. Plain settings, checked before vLLM loads; the adapter
(engine.backends.vllm_v1.kvstream) encodes and publishes with vLLM's own classes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from engine.errors import UserError
from engine.export import check_writable


class EventsFormat(str, Enum):
    """How an exported stream is written (README: "KV events")."""

    JSONL = "jsonl"  # one msgspec-JSON KVEventBatch a line
    MSGPACK = "msgpack"  # vLLM's ZMQ frames (topic, 8-byte seq, msgpack batch), length-prefixed


META_SUFFIX = ".meta.json"


def meta_path(path: str | Path) -> Path:
    """The sidecar that names the hash type, vLLM's version and the replay's settings."""
    p = Path(path)
    return p.with_name(p.name + META_SUFFIX)


@dataclass(frozen=True)
class EventsOut:
    """Where a replay's KV events go besides its records (both optional)."""

    export_path: str | None = None
    export_format: EventsFormat = EventsFormat.JSONL
    serve_endpoint: str | None = None  # vLLM's ZmqEventPublisher endpoint (PUB)
    serve_replay_endpoint: str | None = None  # its ROUTER replay endpoint
    serve_linger_s: float = 0.0  # keep publishing sockets open after the replay ends
    topic: str = ""
    # None: VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES as the user set it (vLLM's default: ints).
    int_hashes: bool | None = None

    @property
    def active(self) -> bool:
        return self.export_path is not None or self.serve_endpoint is not None


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("KV events (vLLM's format)")
    g.add_argument(
        "--export-events", metavar="FILE", default=None,
        help="write the replay's KV events, one vLLM KVEventBatch per step (with "
             "FILE.meta.json: hash type, vLLM version, settings); --force overwrites",
    )
    g.add_argument(
        "--export-events-format", choices=[f.value for f in EventsFormat], default="jsonl",
        help="jsonl: msgspec JSON lines (default); msgpack: vLLM's ZMQ publisher frames, "
             "each frame a 4-byte big-endian length and its bytes",
    )
    g.add_argument(
        "--serve-events", metavar="ENDPOINT", default=None,
        help="publish the events through vLLM's ZmqEventPublisher while replaying "
             "(tcp://*:5557 binds; tcp://HOST:PORT connects, as vLLM does)",
    )
    g.add_argument(
        "--serve-events-replay", metavar="ENDPOINT", default=None,
        help="the publisher's replay endpoint (a ROUTER; always binds)",
    )
    g.add_argument(
        "--serve-events-linger", type=float, default=None, metavar="SECONDS",
        help="headless: keep publishing sockets open this long after the replay "
             "(for late replay requests; default 1)",
    )


def check_endpoint(flag: str, endpoint: str) -> None:
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise UserError(f"{flag} {endpoint}: not a ZMQ endpoint (tcp://HOST:PORT, ipc://PATH)")
    if endpoint.startswith("tcp://"):
        host, sep, port = endpoint[len("tcp://"):].rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise UserError(f"{flag} {endpoint}: expected tcp://HOST:PORT")


def events_out_from_args(args: argparse.Namespace, inputs: tuple[str, ...] = ()
                         ) -> EventsOut | None:
    """The event flags, checked before anything slow: an existing export (or its sidecar)
    is refused without --force, the trace is never overwritten, endpoints must parse."""
    path = getattr(args, "export_events", None)
    serve = getattr(args, "serve_events", None)
    replay = getattr(args, "serve_events_replay", None)
    linger = getattr(args, "serve_events_linger", None)
    if path is None and serve is None:
        if replay is not None or linger is not None:
            raise UserError("--serve-events-replay / --serve-events-linger go with --serve-events")
        return None
    force = bool(getattr(args, "force", False))
    json_path = getattr(args, "json", None)
    if path is not None and json_path is not None and Path(path).resolve() == Path(
            json_path).resolve():
        raise UserError(f"{path}: given to both --json and --export-events")
    if path is not None:
        check_writable(path, force, inputs)
        check_writable(meta_path(path), force, inputs)
    if serve is not None:
        check_endpoint("--serve-events", serve)
    if replay is not None:
        if serve is None:
            raise UserError("--serve-events-replay goes with --serve-events")
        check_endpoint("--serve-events-replay", replay)
    if linger is not None and not 0 <= linger <= 86400:
        raise UserError(f"--serve-events-linger {linger}: expected 0 to 86400 seconds")
    return EventsOut(
        export_path=path,
        export_format=EventsFormat(getattr(args, "export_events_format", "jsonl") or "jsonl"),
        serve_endpoint=serve,
        serve_replay_endpoint=replay,
        serve_linger_s=1.0 if linger is None else linger,
    )
