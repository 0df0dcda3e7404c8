"""Serve mode: when each trace request reaches vLLM's waiting queue.

Open loop (the default): at its ``arrival_time``, in file order; a timestamp earlier than
the one before it counts as the one before it.

Closed loop (``--closed-loop``): a conversation's turn k+1 is sent when turn k has
finished (or was rejected), plus a think time: the trace's own gap between the two turns'
timestamps, or ``--think-time S``. A chat client waits for the reply before it sends the
next message, so turn k+1 can hit turn k's reply in the prefix cache; with the open loop
it may arrive while turn k is still decoding. A conversation's first turn, and requests
without a ``conversation_id``, keep their trace times (as the open loop).

With the trace's gaps a turn is never sent before its own timestamp (by induction: turn k
is sent at or after its timestamp and finishes later still), so the trace is read lazily
by its timestamps, as in the open loop. With ``--think-time`` a turn may be due before its
timestamp: when a turn finishes and its successor has not been read yet, the trace is read
ahead until it is (other requests read on the way wait in their queues).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator

from engine.model import TraceRequest


class Arrivals:
    def __init__(self, requests: Iterable[TraceRequest], *, closed_loop: bool = False,
                 think_time_s: float | None = None) -> None:
        self._file: Iterator[TraceRequest] = iter(requests)
        self._peeked: TraceRequest | None = None
        self._eof = False
        self.closed_loop = closed_loop
        self.think_time_s = think_time_s
        self._open_time = 0.0  # the last open-loop send time (timestamps never go back)
        self._ready: list[tuple[float, int, TraceRequest]] = []  # (send time, index, req)
        self._last: dict[str, TraceRequest] = {}  # conversation -> its latest turn read
        self._finished: dict[str, float] = {}  # conversation -> when its turn in flight ended
        self._parked: dict[str, deque[TraceRequest]] = {}  # turns waiting for a reply
        self._gap: dict[int, float] = {}  # later turn's index -> the trace's gap before it
        self.delayed_turns = 0  # turns whose send time the closed loop set

    # -- reading the trace ---------------------------------------------------------------------
    def _peek(self) -> TraceRequest | None:
        if self._peeked is None and not self._eof:
            self._peeked = next(self._file, None)
            self._eof = self._peeked is None
        return self._peeked

    def _read(self) -> TraceRequest | None:
        req = self._peek()
        self._peeked = None
        if req is not None:
            self._route(req)
        return req

    def _route(self, req: TraceRequest) -> None:
        conv = req.conversation_id if self.closed_loop else None
        prev = self._last.get(conv) if conv is not None else None
        if prev is None:
            self._open_time = max(self._open_time, req.arrival_time)
            heapq.heappush(self._ready, (self._open_time, req.index, req))
        else:
            self._gap[req.index] = max(0.0, req.arrival_time - prev.arrival_time)
            if conv in self._finished and not self._parked.get(conv):
                self._release(req, self._finished.pop(conv))
            else:  # its previous turn has not finished: it waits for the reply
                self._parked.setdefault(conv, deque()).append(req)
        if conv is not None:
            self._last[conv] = req

    def _release(self, req: TraceRequest, finished_at: float) -> None:
        gap = self._gap.pop(req.index)
        think = self.think_time_s if self.think_time_s is not None else gap
        heapq.heappush(self._ready, (finished_at + think, req.index, req))
        self.delayed_turns += 1

    # -- what the replay asks ------------------------------------------------------------------
    def due(self, clock: float) -> list[tuple[TraceRequest, float]]:
        """Requests sent at or before ``clock``, in send order, with their send times."""
        while (req := self._peek()) is not None and req.arrival_time <= clock:
            self._read()
        out = []
        while self._ready and self._ready[0][0] <= clock:
            t, _i, req = heapq.heappop(self._ready)
            out.append((req, t))
        return out

    def next_time(self) -> float | None:
        """When the next request could be sent (None: every request has been sent, or
        waits for a turn still in vLLM)."""
        times = [self._ready[0][0]] if self._ready else []
        if (req := self._peek()) is not None:
            times.append(max(self._open_time, req.arrival_time))
        return min(times) if times else None

    def done(self, req: TraceRequest, clock: float) -> None:
        """``req`` finished (or was rejected) at ``clock``: its conversation's next turn
        can be sent."""
        conv = req.conversation_id if self.closed_loop else None
        if conv is None:
            return
        parked = self._parked.get(conv)
        if parked:
            self._release(parked.popleft(), clock)
            return
        self._finished[conv] = clock
        if self.think_time_s is not None:  # its successor may be due before its timestamp
            while self._last.get(conv) is req and self._read() is not None:
                pass
