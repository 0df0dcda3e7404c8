"""What the V0 client and its worker say to each other over the worker's stdin and stdout.

Both ends are prefix-tui's own processes on one machine, both Python 3.11, so messages are
pickled engine.model / engine.settings records, one pickle after another on the pipe (the
pickle stream delimits itself). Standard library and engine.model / engine.settings only:
the worker imports this under vLLM 0.10.1.1.

    client -> worker   Start, then TraceRequest ..., then END
    worker -> client   Ready (once vLLM is imported), then per request one StepRecord,
                       then Done (or Failed when the worker itself broke)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import IO, Any

from engine.settings import EngineSettings, V0Settings

PROTOCOL = 5
END = None  # after the last request


@dataclass(frozen=True)
class Ready:
    vllm_version: str
    problems: tuple[str, ...] = ()  # what check_block_manager found; empty: all present
    stable_hashes: bool = True  # hash(None) is the same in every worker (ASLR is off)


@dataclass(frozen=True)
class Start:
    settings: EngineSettings
    v0: V0Settings
    detail: bool


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Failed:
    """The worker could not go on (not a vLLM error at a step: those are records)."""

    message: str
    traceback: str


def send(stream: IO[bytes], message: Any) -> None:
    pickle.dump(message, stream, protocol=PROTOCOL)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """The next message; EOFError when the other end closed the pipe."""
    return pickle.load(stream)
