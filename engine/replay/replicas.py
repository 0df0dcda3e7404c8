"""Replicas behind a router (--instances N --router NAME): N real vLLM engines, one trace.

Sequential mode: N KVCacheManagers, each with its own SequentialReplay. Each trace request
is routed, then replayed as one step on its replica (that replica frees its previous
request first, as a single instance does). With N = 1 and any router this is exactly the
single-instance replay.

Serve mode: N real Schedulers on one simulated timeline. Each replica keeps its own clock
(replicas run in parallel); the coordinator always runs the replica whose clock is
earliest, and routes a trace request when no busy replica's clock is before its arrival
time, so the router sees every replica's cache as of that time (a busy replica may be up
to one iteration past it: its iterations are not split). An idle replica's clock moves to
the arrival of the request it is sent.

Records keep the replica's own step (its pool, its events); their totals are the sum over
replicas, and each row names its replica (RequestResult.replica).

``own_steps`` (the inspector, ``--replica K``): every replica's records come out, each
numbered 0, 1, ... as its replica's own steps and carrying that replica's own totals, so
the inspector keeps a History per replica whose pool deltas rebuild that replica's pool
(every replica's miss reasons then name its own step numbers). Headless records are
numbered over all replicas and carry the totals summed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.model import ServeSummary, StepRecord, Totals, TraceRequest
from engine.replay.arrivals import Arrivals
from engine.replay.routing import Router

if TYPE_CHECKING:
    from engine.backends.vllm_v1.manager import PoolReader
    from engine.replay.sequential import SequentialReplay
    from engine.replay.serve import ServeReplay

_SUMMED = [f.name for f in fields(Totals) if f.name != "v0_hit_rate"]


def _sum(values: list) -> object:
    if isinstance(values[0], tuple):  # per KV cache group: summed group by group
        return tuple(map(sum, zip(*values)))
    if any(v is None for v in values):
        return next((v for v in values if v is not None), None)
    return sum(values)


def sum_totals(parts: Sequence[Totals]) -> Totals:
    """Every count summed (vLLM's last-1,000 window: each replica's window, summed)."""
    return Totals(**{n: _sum([getattr(t, n) for t in parts]) for n in _SUMMED})


def sum_summaries(parts: Sequence[ServeSummary]) -> ServeSummary:
    """Serve figures over replicas: counts summed, times and peaks as the largest."""
    first = parts[0]
    out = {}
    for f in fields(ServeSummary):
        vals = [getattr(p, f.name) for p in parts]
        if f.name in ("info", "closed_loop"):
            out[f.name] = vals[0]
        elif f.name == "simulated_time_s":
            out[f.name] = max(vals)
        elif f.name == "tier":
            out[f.name] = _sum_tiers(vals)
        else:
            out[f.name] = _sum(vals)
    return replace(first, **out)


_TIER_AS_CONFIGURED = ("bytes_per_block", "eviction_policy", "latency")


def _sum_tiers(parts: list) -> object:
    """Every replica has its own CPU tier: sizes and counts summed, peaks the largest, the
    policy and latency as configured (the same on every replica)."""
    if parts[0] is None:
        return None
    out = {}
    for f in fields(parts[0]):
        vals = [getattr(p, f.name) for p in parts]
        if f.name in _TIER_AS_CONFIGURED:
            out[f.name] = vals[0]
        elif f.name.startswith("peak_"):
            out[f.name] = max(vals)
        else:
            out[f.name] = sum(vals)
    return replace(parts[0], **out)


class _Replica:
    """A replica as a router sees it: vLLM's hash map on it, and its load."""

    def __init__(self, reader: PoolReader) -> None:
        self.reader = reader
        self.tokens = 0  # prompt tokens routed to it (sequential load)

    def cached_prefix(self, hashes: Sequence[bytes]) -> int:
        return self.reader.cached_prefix(hashes)

    def load(self) -> tuple[int, ...]:
        return (self.tokens,)

    def weight(self, req: TraceRequest) -> int:
        return req.num_prompt_tokens


class _ServeReplica(_Replica):
    def __init__(self, reader: PoolReader, replay: ServeReplay) -> None:
        super().__init__(reader)
        self.replay = replay

    def load(self) -> tuple[int, ...]:
        """Requests it holds (running, waiting, routed but not yet arrived), then prompt
        tokens routed to it so far (idle replicas are not all equal)."""
        b = self.replay.backend
        return (len(b.running_ids()) + len(b.waiting_ids()) + self.replay.arrivals.queued(),
                self.tokens)

    def weight(self, req: TraceRequest) -> int:
        return 1


def _tag(record: StepRecord, k: int, totals: Totals) -> StepRecord:
    return replace(
        record,
        totals=totals,
        replica=k,
        admitted=tuple(replace(r, replica=k) for r in record.admitted),
        note=f"replica {k}: {record.note}" if record.note else f"replica {k}",
        serve=(replace(record.serve, finished_results=tuple(
            replace(r, replica=k) for r in record.serve.finished_results))
            if record.serve is not None else None),
    )


class RoutedSequentialReplay:
    def __init__(self, replays: Sequence[SequentialReplay], router: Router,
                 requests: Iterable[TraceRequest], cancel: threading.Event | None = None,
                 own_steps: bool = False) -> None:
        self.replays = list(replays)
        self.own_steps = own_steps
        self._steps = [0] * len(self.replays)  # each replica's own step count
        self.router = router
        self.requests = requests
        self.cancel = cancel
        self.stopped_by_error = False
        self.replicas = [_Replica(r.backend) for r in self.replays]

    def summary(self) -> ServeSummary | None:
        return None

    def replica_totals(self) -> list[Totals]:
        return [r.totals for r in self.replays]

    def _totals(self, k: int) -> Totals:
        return self.replays[k].totals if self.own_steps else sum_totals(self.replica_totals())

    def __iter__(self) -> Iterator[StepRecord]:
        hasher = self.replays[0].backend.prompt_hashes
        for index, req in enumerate(self.requests):
            if self.cancel is not None and self.cancel.is_set():
                return
            k = self.router.pick(req, self.replicas, hasher)
            self.replicas[k].tokens += req.num_prompt_tokens
            step = self._steps[k] if self.own_steps else index
            self._steps[k] += 1
            record = self.replays[k]._step(step, req)
            yield _tag(record, k, self._totals(k))
            if record.error is not None:
                self.stopped_by_error = True
                return
        for r in self.replays:
            r._release_prev()


class Feed(Arrivals):
    """A serve replica's arrivals: the requests the router sent it, in order (open loop)."""

    def __init__(self) -> None:
        super().__init__(())
        self._queue: deque[TraceRequest] = deque()

    def push(self, req: TraceRequest) -> None:
        self._queue.append(req)

    def queued(self) -> int:
        return len(self._queue) + (self._peeked is not None) + len(self._ready)

    def _peek(self) -> TraceRequest | None:
        # Never at its end for good: the router may send more.
        if self._peeked is None and self._queue:
            self._peeked = self._queue.popleft()
        return self._peeked


class RoutedServeReplay:
    def __init__(self, replays: Sequence[ServeReplay], router: Router,
                 requests: Iterable[TraceRequest], cancel: threading.Event | None = None,
                 own_steps: bool = False) -> None:
        self.replays = list(replays)
        self.own_steps = own_steps
        self._steps = [0] * len(self.replays)
        if any(r.arrivals.closed_loop for r in self.replays):
            raise UserError("--closed-loop with --instances > 1 is not supported: a "
                            "conversation's turns may be on different replicas")
        self.feeds = [Feed() for _ in self.replays]
        for r, f in zip(self.replays, self.feeds):
            r.arrivals = f
        self.router = router
        self.requests = requests
        self.cancel = cancel
        self.stopped_by_error = False
        self.replicas = [_ServeReplica(r.backend, r) for r in self.replays]

    def summary(self) -> ServeSummary:
        return sum_summaries([r.summary() for r in self.replays])

    def replica_totals(self) -> list[Totals]:
        return [r.totals for r in self.replays]

    def _totals(self, k: int) -> Totals:
        return self.replays[k].totals if self.own_steps else sum_totals(self.replica_totals())

    def _busy(self, k: int) -> bool:
        return self.replays[k].backend.has_work() or self.feeds[k].queued() > 0

    def __iter__(self) -> Iterator[StepRecord]:
        hasher = self.replays[0].backend.prompt_hashes
        trace = iter(self.requests)
        nxt = next(trace, None)
        index = 0
        while True:
            if self.cancel is not None and self.cancel.is_set():
                return
            busy = [k for k in range(len(self.replays)) if self._busy(k)]
            first = min(busy, key=lambda k: (self.replays[k].clock, k)) if busy else None
            if nxt is not None and (first is None
                                    or nxt.arrival_time <= self.replays[first].clock):
                k = self.router.pick(nxt, self.replicas, hasher)
                self.replicas[k].tokens += nxt.num_prompt_tokens
                rep = self.replays[k]
                if not self._busy(k):
                    rep.clock = max(rep.clock, nxt.arrival_time)
                self.feeds[k].push(nxt)
                nxt = next(trace, None)
                continue
            if first is None:
                return
            record = self.replays[first].tick(self._steps[first] if self.own_steps else index)
            if record is None:  # its arrivals are not due yet (cannot happen: see above)
                rep = self.replays[first]
                rep.clock = max(rep.clock, self.feeds[first].next_time() or rep.clock)
                continue
            self._steps[first] += 1
            yield _tag(record, first, self._totals(first))
            index += 1
            if record.error is not None:
                self.stopped_by_error = True
                return
