"""A replay's KV events out, in vLLM's own format: --export-events and --serve-events.

Events are tapped where the adapter drains them from vLLM (V1Manager.take_events / the
scheduler's _drain_events, the same drain the records' conversion reads), so the export
holds vLLM's own BlockStored / BlockRemoved / AllBlocksCleared objects, token ids, LoRA
and extra keys included: nothing is rebuilt from records. After each record the tapped
events become one ``KVEventBatch`` (vLLM's scheduler likewise publishes one batch per
engine step, and none for a step without events), timestamped with the record's clock.

Hashes: prefix-tui runs vLLM with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0 (records match
events to blocks by their full bytes); what leaves prefix-tui follows the user's own
setting, vLLM's default (1: ints) when unset, converted with vLLM's rule and named in the
sidecar FILE.meta.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from engine.backends.vllm_v1.imports import INT_HASHES_ENV, TESTED_VLLM_VERSION, V
from engine.errors import UserError
from engine.kvevents.frames import write_message
from engine.kvevents.options import EventsFormat, EventsOut, meta_path
from engine.model import StepRecord

_LOW64 = (1 << 64) - 1
DATA_PARALLEL_RANK = 0  # what vLLM's ZmqEventPublisher stamps on a rank-0 engine's batches


def _kv():
    """vllm.distributed.kv_events and msgspec (imported with vLLM by then)."""
    import msgspec
    from vllm.distributed import kv_events

    return kv_events, msgspec


def int_hashes_wanted(explicit: bool | None) -> tuple[bool, str]:
    """Whether exported hashes are ints, and why (for the sidecar)."""
    if explicit is not None:
        return explicit, "set by the caller"
    raw = V.user_int_hashes_env
    if raw is None:
        return True, f"{INT_HASHES_ENV} unset: vLLM's default (1)"
    try:
        # vLLM's own parse: bool(int(os.getenv(NAME, "1"))).
        return bool(int(raw)), f"{INT_HASHES_ENV}={raw} in the environment"
    except ValueError:
        raise UserError(f"{INT_HASHES_ENV}={raw!r}: vLLM expects 0 or 1") from None


def external_hash(h: bytes | int, int_hashes: bool) -> bytes | int:
    """vLLM's maybe_convert_block_hash (vllm/v1/core/kv_cache_utils.py) for a hash vLLM
    emitted as bytes: the low 64 bits of the digest, big-endian, when ints are wanted.
    tests/test_kv_export.py checks it against vLLM's function."""
    if int_hashes and isinstance(h, bytes):
        return int.from_bytes(h, "big") & _LOW64
    return h


def to_external(events: list, int_hashes: bool) -> list:
    """vLLM's events with hashes as the export wants them, converted in place: the tap
    holds the only reference once the step's record is made (records and serve mode's
    eviction ledger read the events before), and a Mooncake step has thousands of them
    (vLLM emits one BlockRemoved per evicted block), so no copies."""
    if not int_hashes:
        return events
    kv, _msgspec = _kv()
    stored, removed = kv.BlockStored, kv.BlockRemoved
    from_bytes, low64 = int.from_bytes, _LOW64
    for ev in events:
        kind = type(ev)
        if kind is removed or kind is stored:
            # external_hash inlined.
            ev.block_hashes = [from_bytes(h, "big") & low64 if type(h) is bytes else h
                               for h in ev.block_hashes]
            if kind is stored and ev.parent_block_hash is not None:
                ev.parent_block_hash = external_hash(ev.parent_block_hash, True)
        elif isinstance(ev, (stored, removed)):  # a subclass: not expected, handled alike
            ev.block_hashes = [external_hash(h, True) for h in ev.block_hashes]
            if isinstance(ev, stored) and ev.parent_block_hash is not None:
                ev.parent_block_hash = external_hash(ev.parent_block_hash, True)
    return events


class EventTap:
    """Raw vLLM events drained since the last record (filled by the adapter's drains)."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list = []

    def take(self) -> list:
        out, self.events = self.events, []
        return out


# -- sinks ------------------------------------------------------------------------------------
class _FileSink:
    """An export written to a temp file beside the target, renamed into place (with its
    sidecar) when the replay ends, however it ends: never a half-written FILE."""

    def __init__(self, path: str, fmt: EventsFormat) -> None:
        self.path = Path(path)
        self.format = fmt
        _kv_mod, msgspec = _kv()
        self._encode = (msgspec.json.Encoder() if fmt is EventsFormat.JSONL
                        else msgspec.msgpack.Encoder()).encode
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent or ".")
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 20)
        self.seq = 0

    def publish(self, batch: Any, topic: bytes) -> None:
        payload = self._encode(batch)
        if self.format is EventsFormat.JSONL:
            self._fh.write(payload + b"\n")
        else:
            write_message(self._fh, (topic, self.seq.to_bytes(8, "big"), payload))
        self.seq += 1

    def close(self, meta: dict) -> None:
        try:
            self._fh.close()
            mode = 0o666 & ~_umask()
            os.chmod(self._tmp, mode)
            _write_json_atomic(meta_path(self.path), meta, mode)
            os.replace(self._tmp, self.path)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise

    def abandon(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        Path(self._tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json_atomic(path: Path, obj: dict, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _ZmqSink:
    """vLLM's own ZmqEventPublisher: PUB (binds for *, ::, ipc, inproc; connects
    otherwise) and an optional ROUTER replay endpoint with its replay buffer."""

    DRAIN_TIMEOUT_S = 60.0

    def __init__(self, endpoint: str, replay_endpoint: str | None, topic: str,
                 linger_s: float) -> None:
        kv, _msgspec = _kv()
        import zmq

        try:
            self.publisher = kv.ZmqEventPublisher(
                DATA_PARALLEL_RANK, endpoint=endpoint, replay_endpoint=replay_endpoint,
                topic=topic,
            )
        except zmq.ZMQError as exc:
            raise UserError(f"--serve-events {endpoint}: {exc}") from None
        from engine.backends.vllm_v1.internals import check_publisher, ensure

        try:
            ensure(check_publisher(self.publisher), "ZmqEventPublisher", V.version,
                   TESTED_VLLM_VERSION)
        except UserError:
            self.publisher.shutdown()
            raise
        self.linger_s = linger_s

    def publish(self, batch: Any, topic: bytes) -> None:
        self.publisher.publish(batch)

    def close(self, meta: dict) -> None:
        from engine.backends.vllm_v1.internals import PublisherInternals

        # shutdown() gives its thread one second; a long replay can queue more than that.
        try:
            deadline = time.monotonic() + self.DRAIN_TIMEOUT_S
            while PublisherInternals.queued(self.publisher) and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.linger_s > 0:
                # Subscribers that saw a gap at the end ask the replay endpoint meanwhile.
                threading.Event().wait(self.linger_s)
        finally:
            self.publisher.shutdown()

    def abandon(self) -> None:
        self.publisher.shutdown()


# -- the replay wrapper -----------------------------------------------------------------------
class ExportingReplay:
    """A Replay whose records pass through unchanged, while each record's tapped vLLM
    events go out as one KVEventBatch to every sink."""

    def __init__(self, inner: Any, tap: EventTap, out: EventsOut, version: str,
                 settings: dict, cancel: threading.Event | None = None) -> None:
        self.inner = inner
        self.cancel = cancel
        self.tap = tap
        self.out = out
        self.int_hashes, self.hash_reason = int_hashes_wanted(out.int_hashes)
        self.topic = out.topic.encode("utf-8")
        self._settings = settings
        self._version = version
        self.sinks: list = []
        self.steps = 0
        self.batches = 0
        self.counts = {"stored": 0, "removed": 0, "cleared": 0}
        self._closed = False
        self._clock = 0.0
        try:
            if out.export_path is not None:
                self.sinks.append(_FileSink(out.export_path, out.export_format))
            if out.serve_endpoint is not None:
                self.sinks.append(_ZmqSink(out.serve_endpoint, out.serve_replay_endpoint,
                                           out.topic, out.serve_linger_s))
        except BaseException:
            for s in self.sinks:
                s.abandon()
            raise

    @property
    def stopped_by_error(self) -> bool:
        return self.inner.stopped_by_error

    def summary(self):
        return self.inner.summary()

    def __iter__(self) -> Iterator[StepRecord]:
        status = "interrupted"
        try:
            for record in self.inner:
                self._clock = record.clock
                self._flush(record.clock)
                self.steps += 1
                yield record
            if self.inner.stopped_by_error:
                status = "vllm_error"
            elif self.cancel is None or not self.cancel.is_set():
                status = "complete"  # a cancelled replay (quitting the inspector) ends early
        finally:
            # Events vLLM emitted after the last record (the final free) end the stream.
            self.close(status)

    def _flush(self, ts: float) -> None:
        raw = self.tap.take()
        if not raw:
            return  # vLLM's scheduler publishes no batch for a step without events
        kv, _msgspec = _kv()
        stored, removed = kv.BlockStored, kv.BlockRemoved
        n_stored = n_removed = n_cleared = 0
        for ev in raw:
            kind = type(ev)
            if kind is removed or (kind is not stored and isinstance(ev, removed)):
                n_removed += len(ev.block_hashes)
            elif kind is stored or isinstance(ev, stored):
                n_stored += len(ev.block_hashes)
            else:
                n_cleared += 1
        c = self.counts
        c["stored"] += n_stored
        c["removed"] += n_removed
        c["cleared"] += n_cleared
        batch = kv.KVEventBatch(ts=float(ts), events=to_external(raw, self.int_hashes),
                                data_parallel_rank=DATA_PARALLEL_RANK)
        for sink in self.sinks:
            sink.publish(batch, self.topic)
        self.batches += 1

    def close(self, status: str = "interrupted") -> None:
        if self._closed:
            return
        self._closed = True
        error: BaseException | None = None
        try:
            self._flush(self._clock)
        except BaseException as exc:  # still close every sink; re-raised below
            error = exc
        meta = self.meta(status)
        for sink in self.sinks:
            try:
                sink.close(meta)
            except BaseException as exc:
                error = error or exc
        if error is not None:
            if isinstance(error, OSError):
                raise UserError(f"--export-events: {error}") from None
            raise error

    def meta(self, status: str) -> dict:
        return {
            "format": "vllm-kv-events",
            "encoding": self.out.export_format.value,
            "schema": "vllm.distributed.kv_events.KVEventBatch",
            "framing": ("one msgspec-JSON KVEventBatch a line" if
                        self.out.export_format is EventsFormat.JSONL else
                        "per batch three frames as vLLM's ZmqEventPublisher sends them "
                        "(topic, 8-byte big-endian sequence number, msgpack KVEventBatch), "
                        "each a 4-byte big-endian length and the frame's bytes"),
            "vllm_version": self._version,
            "block_hashes": "int" if self.int_hashes else "bytes",
            INT_HASHES_ENV: 1 if self.int_hashes else 0,
            "block_hashes_source": self.hash_reason,
            "ts": "the replay's clock in seconds: trace arrival time (sequential), "
                  "simulated clock (serve)",
            "topic": self.out.topic,
            "data_parallel_rank": DATA_PARALLEL_RANK,
            "status": status,
            "steps": self.steps,
            "batches": self.batches,
            "events": dict(self.counts),
            "settings": self._settings,
        }
