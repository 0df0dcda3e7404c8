"""Reading a recorded or exported KV event stream back (`prefix-tui events FILE`): JSON
lines (--export-events) or msgpack frames (--export-events-format msgpack, attach
--record), told apart by the sidecar or, without one, by the first byte."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.kvevents.frames import FrameError, read_messages
from engine.kvevents.model import DecodedBatch
from engine.kvevents.options import EventsFormat, meta_path

MAX_FILE_BYTES = 4 << 30  # read whole: a file this big is not a stream someone recorded here


@dataclass(frozen=True, slots=True)
class StoredBatch:
    where: str  # "FILE:LINE" or "FILE:byte N", for messages
    seq: int | None  # the frame's sequence number (msgpack); None for JSON lines
    payload: bytes | None  # None: the message itself is broken (see ``error``)
    error: str = ""


def stream_format(path: str | Path) -> tuple[EventsFormat, dict | None]:
    """The file's encoding and its sidecar (None when there is none)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    meta = None
    side = meta_path(p)
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{side}: not a prefix-tui sidecar ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != "vllm-kv-events":
            raise UserError(f"{side}: not a prefix-tui sidecar (no \"format\": "
                            "\"vllm-kv-events\")")
        try:
            return EventsFormat(meta.get("encoding")), meta
        except ValueError:
            raise UserError(f"{side}: unknown encoding {meta.get('encoding')!r}") from None
    with p.open("rb") as fh:
        head = fh.read(1)
    return (EventsFormat.JSONL if head in (b"[", b"") else EventsFormat.MSGPACK), None


def read_stream(path: str | Path, fmt: EventsFormat) -> Iterator[StoredBatch]:
    p = Path(path)
    if p.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"{p}: larger than {MAX_FILE_BYTES >> 30} GB")
    data = p.read_bytes()
    if fmt is EventsFormat.JSONL:
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                yield StoredBatch(f"{p}:{n}", None, line)
        return
    try:
        for offset, frames in read_messages(data):
            seq_frame = frames[1]
            if len(seq_frame) != 8:
                yield StoredBatch(f"{p}:byte {offset}", None, None,
                                  f"a {len(seq_frame)}-byte sequence number (vLLM's is 8)")
                continue
            yield StoredBatch(f"{p}:byte {offset}", int.from_bytes(seq_frame, "big"), frames[2])
    except FrameError as exc:
        yield StoredBatch(f"{p}", None, None, str(exc))


def decode_stream(path: str | Path, decoder_for: Callable[[bool], Callable[[bytes], DecodedBatch]]
                  ) -> Iterator[tuple[StoredBatch, DecodedBatch]]:
    """Each stored batch with its decoding (``decoder_for(json)``: the adapter's decoder)."""
    fmt, _meta = stream_format(path)
    decode = decoder_for(fmt is EventsFormat.JSONL)
    for stored in read_stream(path, fmt):
        if stored.payload is None:
            yield stored, DecodedBatch(None, (), malformed=True, error=stored.error)
        else:
            batch = decode(stored.payload)
            if batch.error:
                batch = DecodedBatch(batch.ts, batch.events, batch.malformed, batch.bad_events,
                                     batch.unknown_tags, batch.wrong_hash_types,
                                     f"{stored.where}: {batch.error}")
            yield stored, batch
