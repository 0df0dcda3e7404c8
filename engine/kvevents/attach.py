"""A subscriber to a vLLM server's KV event stream (vllm/distributed/kv_events.py,
ZmqEventPublisher): SUB for the live stream, DEALER for the replay endpoint.

The stream, as vLLM 0.33 sends it: three frames a message (topic, an 8-byte big-endian
sequence number, a msgpack KVEventBatch). The replay endpoint is a ROUTER: a request is
``["", start_seq]`` (8 bytes, big-endian); it answers one message per buffered batch from
``start_seq`` on, then an end marker whose sequence number is 2**64 - 1. vLLM's example
subscriber asks with a REQ socket, which takes only the first reply; a DEALER takes all.

Sequence numbers are checked: a jump is a gap (missed batches), recovered through the
replay endpoint when there is one, applied in order before the batch that revealed it.
vLLM-free: payloads are decoded by a function handed in (the adapter's BatchDecoder).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from engine.errors import UserError
from engine.kvevents.model import DecodedBatch
from engine.kvevents.state import CacheState

END_SEQ = 2**64 - 1  # the replay endpoint's end marker (vLLM sends -1 as signed 8 bytes)


@dataclass(frozen=True)
class AttachSettings:
    endpoint: str
    replay_endpoint: str | None = None
    topic: str = ""
    bind: bool = False  # bind the SUB (for a publisher that connects: tcp://HOST:PORT)
    history: bool = True  # on joining, ask the replay endpoint for what came before
    replay_timeout_s: float = 5.0


class Subscriber:
    """Feeds a CacheState from the sockets; call ``poll`` in a loop."""

    def __init__(self, settings: AttachSettings, decode: Callable[[bytes], DecodedBatch],
                 state: CacheState, *, record: Callable[[list[bytes]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.decode = decode
        self.state = state
        self.record = record
        self.clock = clock
        self.next_seq: int | None = None
        self.last_message_at: float | None = None
        self.started_at = clock()
        self.restarts = 0
        self._ctx = zmq.Context.instance()
        self._sub: zmq.Socket | None = None
        self._dealer: zmq.Socket | None = None

    # -- sockets ---------------------------------------------------------------------------------
    def open(self) -> None:
        s = self.settings
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, s.topic.encode("utf-8"))
        try:
            if s.bind:
                sub.bind(s.endpoint)
            else:
                sub.connect(s.endpoint)
        except zmq.ZMQError as exc:
            sub.close()
            raise UserError(f"{s.endpoint}: {exc}") from None
        self._sub = sub
        self.started_at = self.clock()

    def _replay_socket(self) -> zmq.Socket:
        if self._dealer is None:
            d = self._ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            try:
                d.connect(self.settings.replay_endpoint)
            except zmq.ZMQError as exc:
                d.close()
                raise UserError(f"--replay-endpoint {self.settings.replay_endpoint}: {exc}"
                                ) from None
            self._dealer = d
        return self._dealer

    def close(self) -> None:
        for sock in (self._sub, self._dealer):
            if sock is not None:
                sock.close(linger=0)
        self._sub = self._dealer = None

    # -- the live stream -------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> int:
        """Handle the messages that arrive within ``timeout_s``: returns at the first quiet
        moment after one, or once ``timeout_s`` has passed while they keep coming (so a
        caller under a flood still gets to draw and to stop). Returns the messages handled."""
        assert self._sub is not None, "open() first"
        handled = 0
        deadline = self.clock() + timeout_s
        wait_ms = int(timeout_s * 1000)
        while self._sub.poll(wait_ms):
            self._handle(self._sub.recv_multipart())
            handled += 1
            if self.clock() >= deadline:
                break
            wait_ms = 0
        return handled

    def _handle(self, frames: list[bytes]) -> None:
        now = self.clock()
        self.last_message_at = now
        if len(frames) != 3 or len(frames[1]) != 8:
            self.state.malformed_frame(
                f"a message of {len(frames)} frame(s) "
                f"{[len(f) for f in frames[:4]]} bytes: vLLM sends topic, 8-byte seq, payload")
            return
        seq = int.from_bytes(frames[1], "big")
        expected = self.next_seq
        if expected is None:
            if seq > 0 and self.settings.replay_endpoint and self.settings.history:
                self._recover(0, seq, "history")
        elif seq < expected:
            if seq == 0:  # the publisher restarted: its sequence starts again
                self.restarts += 1
                self.state.errors.append(f"sequence went back from {expected - 1} to 0: "
                                         "the publisher restarted")
            else:
                self.state.problems.duplicates += 1
                return
        elif seq > expected:
            recovered = (self._recover(expected, seq, "replayed")
                         if self.settings.replay_endpoint else 0)
            self.state.gap(expected, seq, recovered)
        if self.record is not None:
            self.record(frames)
        self.state.apply(self.decode(frames[2]), seq=seq, now=now, source="live")
        self.next_seq = seq + 1

    # -- the replay endpoint -----------------------------------------------------------------------
    def _recover(self, first: int, end: int, source: str) -> int:
        """Ask for batches [first, end) and apply those that come back, in order."""
        dealer = self._replay_socket()
        dealer.send_multipart([b"", first.to_bytes(8, "big")])
        deadline = self.clock() + self.settings.replay_timeout_s
        applied = 0
        while True:
            left = deadline - self.clock()
            if left <= 0 or not dealer.poll(int(left * 1000)):
                self.state.errors.append(
                    f"replay endpoint {self.settings.replay_endpoint}: no end marker within "
                    f"{self.settings.replay_timeout_s:g} s ({applied} of {end - first} "
                    "batches recovered)")
                # Replies still on their way must not be read as the next request's.
                self._dealer.close(linger=0)
                self._dealer = None
                return applied
            reply = dealer.recv_multipart()
            if len(reply) != 4 or reply[0] != b"" or len(reply[2]) != 8:
                self.state.malformed_frame(f"replay reply of {len(reply)} frame(s)")
                continue
            seq = int.from_bytes(reply[2], "big")
            if seq == END_SEQ:
                break
            if first <= seq < end:
                if self.record is not None:
                    self.record(reply[1:])
                self.state.apply(self.decode(reply[3]), seq=seq, now=self.clock(),
                                 source=source)
                applied += 1
        if source == "history" and applied < end - first:
            self.state.errors.append(
                f"batches {first}..{end - applied - 1} came before the publisher's replay "
                "buffer: what they cached is unknown")
        return applied

    # -- how it is going ---------------------------------------------------------------------------
    def silent_for(self) -> float:
        """Seconds since the last message (or since opening, before any)."""
        since = self.last_message_at if self.last_message_at is not None else self.started_at
        return self.clock() - since
