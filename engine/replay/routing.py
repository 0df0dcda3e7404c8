"""--instances N --router NAME: which replica each request goes to.

A router sees each replica through ``Replica``: its load, and how long a prefix of a
request vLLM's own hash map on that replica holds (the request's block hashes come from
vLLM's block hasher, as Dynamo's KV router and llm-d's precise prefix-cache scorer use the
engine's own hashes). prefix-tui decides only the routing; every replica is a real vLLM
KVCacheManager (sequential mode) or Scheduler (serve mode).
"""

from __future__ import annotations

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


ROUTERS: dict[str, Callable[[], Router]] = {
    RoundRobin.name: RoundRobin,
    Session.name: Session,
    PrefixAware.name: PrefixAware,
}


def make_router(name: str) -> Router:
    factory = ROUTERS.get(name)
    if factory is None:
        raise UserError(f"--router: unknown router {name!r} (have: {', '.join(ROUTERS)})")
    return factory()
