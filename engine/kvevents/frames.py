"""The msgpack stream file: vLLM's ZMQ messages as its publisher sends them (topic, 8-byte
big-endian sequence number, msgpack KVEventBatch), each frame written as a 4-byte
big-endian length and its bytes. --export-events-format msgpack writes it, attach --record
writes what it received, `prefix-tui events FILE` reads both."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

FRAME_LENGTH = struct.Struct(">I")
FRAMES_PER_MESSAGE = 3


def encode_message(frames: list[bytes] | tuple[bytes, ...]) -> bytes:
    pack = FRAME_LENGTH.pack
    return b"".join(pack(len(f)) + f for f in frames)


def write_message(fh: BinaryIO, frames: list[bytes] | tuple[bytes, ...]) -> None:
    fh.write(encode_message(frames))


class FrameError(ValueError):
    """The file is not length-prefixed frames (truncated, or not this format)."""


def read_messages(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """(byte offset, the message's frames) for each message; FrameError where it breaks."""
    pos, n = 0, len(data)
    size = FRAME_LENGTH.size
    while pos < n:
        start = pos
        frames: list[bytes] = []
        for _ in range(FRAMES_PER_MESSAGE):
            if pos + size > n:
                raise FrameError(f"byte {start}: truncated message (a frame length cut off)")
            (length,) = FRAME_LENGTH.unpack_from(data, pos)
            pos += size
            if pos + length > n:
                raise FrameError(f"byte {start}: truncated message (a frame of {length} "
                                 f"bytes, {n - pos} left)")
            frames.append(data[pos:pos + length])
            pos += length
        yield start, frames
