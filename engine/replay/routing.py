"""--instances N --router NAME: which replica each request goes to.

A router sees each replica through ``Replica``: its load, and how long a prefix of a
request vLLM's own hash map on that replica holds (the request's block hashes come from
vLLM's block hasher, as Dynamo's KV router and llm-d's precise prefix-cache scorer use the
engine's own hashes). prefix-tui decides only the routing (the routers are prefix-tui's
policies: vLLM has none); every replica is a real vLLM KVCacheManager (sequential mode) or
Scheduler (serve mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

from engine.errors import UserError
from engine.model import TraceRequest


class Replica(Protocol):
    def cached_prefix(self, hashes: Sequence[bytes]) -> int:
        """Blocks of ``hashes``, from the first, that this replica's vLLM has cached."""
        ...

    def load(self) -> tuple[int, ...]:
        """Smaller is less loaded. Sequential: prompt tokens routed to it so far; serve:
        requests it holds, then prompt tokens routed to it so far."""
        ...

    def weight(self, req: TraceRequest) -> int:
        """What routing ``req`` here adds to ``load()[0]`` (sequential: its prompt tokens;
        serve: one request)."""
        ...


Hasher = Callable[[TraceRequest], Sequence[bytes]]  # vLLM's block hashes of a prompt


class Router(Protocol):
    name: str

    def pick(self, req: TraceRequest, replicas: Sequence[Replica], hashes: Hasher) -> int: ...


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, req: TraceRequest, replicas: Sequence[Replica], hashes: Hasher) -> int:
        k = self._next % len(replicas)
        self._next += 1
        return k


class Session:
    """Session affinity: every turn of a conversation (``conversation_id``) goes where its
    first turn went; first turns, and requests without a conversation, round-robin."""

    name = "session"

    def __init__(self) -> None:
        self._rr = RoundRobin()
        self._home: dict[str, int] = {}

    def pick(self, req: TraceRequest, replicas: Sequence[Replica], hashes: Hasher) -> int:
        conv = req.conversation_id
        if conv is None:
            return self._rr.pick(req, replicas, hashes)
        k = self._home.get(conv)
        if k is None:
            k = self._home[conv] = self._rr.pick(req, replicas, hashes)
        return k


class PrefixAware:
    """The replica holding the longest cached prefix of the request; ties (a cold prompt
    ties everywhere at 0) go to the least loaded, then the lowest index."""

    name = "prefix-aware"

    def pick(self, req: TraceRequest, replicas: Sequence[Replica], hashes: Hasher) -> int:
        hs = hashes(req)
        best = min(range(len(replicas)),
                   key=lambda i: (-replicas[i].cached_prefix(hs), replicas[i].load(), i))
        return best


class PrefixBounded:
    """prefix-aware among the replicas a request may go to without any replica's load
    passing LOAD_BOUND times the mean (consistent hashing with bounded loads, Mirrokni,
    Thorup and Zadimoghaddam 2018; HAProxy's hash-balance-factor): prefix-aware alone
    sends every request that shares a cached prefix (a system prompt) to the one replica
    holding it, so one replica serves the whole trace. The least loaded replica is always
    allowed (a request heavier than the bound's slack must still go somewhere). A policy
    of prefix-tui's, named so in the README: vLLM has no router."""

    name = "prefix-bounded"
    LOAD_BOUND = 1.25

    def pick(self, req: TraceRequest, replicas: Sequence[Replica], hashes: Hasher) -> int:
        loads = [r.load() for r in replicas]  # read once: serve loads ask the Scheduler
        w = replicas[0].weight(req)
        cap = math.ceil(self.LOAD_BOUND * (sum(x[0] for x in loads) + w) / len(replicas))
        least = min(range(len(replicas)), key=lambda i: (loads[i], i))
        allowed = [i for i in range(len(replicas)) if loads[i][0] + w <= cap or i == least]
        hs = hashes(req)
        return min(allowed, key=lambda i: (-replicas[i].cached_prefix(hs), loads[i], i))


ROUTERS: dict[str, Callable[[], Router]] = {
    RoundRobin.name: RoundRobin,
    Session.name: Session,
    PrefixAware.name: PrefixAware,
    PrefixBounded.name: PrefixBounded,
}


def make_router(name: str) -> Router:
    factory = ROUTERS.get(name)
    if factory is None:
        raise UserError(f"--router: unknown router {name!r} (have: {', '.join(ROUTERS)})")
    return factory()


_WHY_IDLE = {
    PrefixAware.name: "prefix-aware sends each request to the replica holding its longest "
    "cached prefix, so requests that share one (a system prompt) all go where it was first "
    "cached; --router prefix-bounded caps each replica's load",
    PrefixBounded.name: "prefix-bounded keeps a request where its prefix is cached while that "
    "replica's load (sequential: prompt tokens routed; serve: requests held) stays within "
    f"{PrefixBounded.LOAD_BOUND}x the mean, and no replica went past it",
    Session.name: "session affinity: the trace has fewer conversations than replicas",
    RoundRobin.name: "the trace has fewer requests than replicas",
}


def idle_replicas_note(requests: Sequence[int], router: str, done: bool = True) -> str | None:
    """One line naming the replicas the router sent no request, and why that happens with
    this router; None when every replica got one (or nothing was routed yet)."""
    idle = [str(k) for k, n in enumerate(requests) if n == 0]
    if not idle or not any(requests):
        return None
    who = (f"replica {idle[0]}" if len(idle) == 1
           else f"replicas {', '.join(idle[:-1])} and {idle[-1]}")
    got = "received no request" if done else "received no request so far"
    why = _WHY_IDLE.get(router)
    return f"{who} {got}" + (f": {why}" if why else "")
