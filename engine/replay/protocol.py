"""What the backend registry hands out, and what the TUI, the report and the sweep use.

A Backend is a built vLLM (slow to make: it imports vLLM and builds the pool); it makes one
Replay over a stream of trace requests. Nothing above the registry knows which vLLM
generation or which replay loop is behind it: only these attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Protocol

from engine.model import KVGroupInfo, SchedulerInfo, ServeSummary, StepRecord, TraceRequest
from engine.settings import EngineSettings


class Pacing(Enum):
    """How records relate to requests, which is how a consumer paces a replay."""

    PER_REQUEST = "per_request"  # one record per trace request, in order
    PER_ITERATION = "per_iteration"  # one record per scheduler iteration, by the clock


class View(Enum):
    """Which inspector screen shows a backend's records."""

    SEQUENTIAL = "sequential"
    SERVE = "serve"


class Replay(Protocol):
    stopped_by_error: bool

    def __iter__(self) -> Iterator[StepRecord]: ...

    def summary(self) -> ServeSummary | None:
        """Run figures beyond the records' Totals (serve mode); valid at any point."""
        ...


class Backend(Protocol):
    version: str  # the vLLM release behind it
    settings: EngineSettings
    null_block_id: int | None  # vLLM V1's block 0; None where the manager has none
    info: SchedulerInfo | None  # the scheduler vLLM built (scheduler backends)
    groups: tuple[KVGroupInfo, ...]  # the KV cache groups vLLM built, in its order

    def replay(
        self,
        requests: Iterable[TraceRequest],
        *,
        detail: bool,
        cancel: threading.Event | None = None,
    ) -> Replay: ...
