"""The V1@0.10 worker: runs under .venv-legacy's Python with vLLM 0.10.1.1, replays the
requests it is sent with engine.replay.sequential over V010Manager, and sends back each
record as the replay makes it (totals and notes included: the replay computes them).

Started by engine.backends.vllm_v0.client with the same boot and wire as the V0 worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

from engine.backends.vllm_v0 import wire
from engine.backends.vllm_v0.worker import run


class _Requests:
    """The requests on the pipe until END, as an iterator the replay consumes; ``drain``
    reads what a replay stopped by a vLLM error left unread."""

    def __init__(self, inp: IO[bytes]) -> None:
        self.inp = inp
        self.ended = False

    def __iter__(self) -> Iterator:
        while not self.ended:
            req = wire.receive(self.inp)
            if req is wire.END:
                self.ended = True
                return
            yield req

    def drain(self) -> None:
        for _req in self:
            pass


def serve(inp: IO[bytes], out: IO[bytes]) -> int:
    from engine.backends.vllm_v1_010.imports import import_vllm_010
    from engine.backends.vllm_v1_010.manager import V010Manager
    from engine.replay.sequential import SequentialReplay
    from engine.settings import EngineSettings

    version = import_vllm_010()
    try:  # the bridge checked on a live manager before any replay
        V010Manager(EngineSettings(block_size=4, num_blocks=8))
        problems: tuple[str, ...] = ()
    except Exception as exc:  # AdapterMismatch, or a vLLM whose API moved further
        problems = (f"{type(exc).__name__}: {exc}".splitlines()[0],)
    stable = os.environ.get("PREFIX_TUI_V0_ASLR") == "off"
    wire.send(out, wire.Ready(version, problems, stable))
    while True:
        try:
            start = wire.receive(inp)
        except EOFError:
            return 0
        requests = _Requests(inp)
        replay = SequentialReplay(V010Manager(start.settings), requests, detail=start.detail)
        for record in replay:
            wire.send(out, record)
        requests.drain()
        wire.send(out, wire.Done())


def main() -> int:
    return run(serve)
