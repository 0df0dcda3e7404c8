"""The V0 worker: runs under .venv-legacy's Python with vLLM 0.10.1.1, replays the requests
it is sent against V0's block manager and sends back one StepRecord per request.

Started by the client (engine.backends.vllm_v0.client) with a bootstrap that keeps the
registry package (engine/backends/__init__.py) out: from the project this process imports
engine.model, engine.settings, engine.errors and this package's own worker modules, which
import nothing else of the project.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from types import SimpleNamespace

from engine.backends.vllm_v0 import wire


def import_vllm() -> SimpleNamespace:
    """vLLM 0.10.1.1's V0 names this worker uses (slow: imports torch)."""
    import vllm
    from vllm.core.block_manager import SelfAttnBlockSpaceManager
    from vllm.core.interfaces import AllocStatus
    from vllm.inputs import token_inputs
    from vllm.sequence import Logprob, Sequence, SequenceGroup, SequenceStatus
    from vllm.utils import Device

    return SimpleNamespace(
        version=vllm.__version__, SelfAttnBlockSpaceManager=SelfAttnBlockSpaceManager,
        AllocStatus=AllocStatus, token_inputs=token_inputs, Logprob=Logprob,
        Sequence=Sequence, SequenceGroup=SequenceGroup, SequenceStatus=SequenceStatus,
        Device=Device,
    )


def _probe(V: SimpleNamespace) -> list[str]:
    """check_block_manager on a tiny live manager, with caching on and off."""
    from engine.backends.vllm_v0.internals import check_block_manager

    problems: list[str] = []
    for caching in (True, False):
        manager = V.SelfAttnBlockSpaceManager(block_size=4, num_gpu_blocks=4,
                                              num_cpu_blocks=0, enable_caching=caching)
        problems += check_block_manager(manager, V.Device.GPU, caching)
    return problems


def serve(inp, out) -> int:
    """Ready, then replays one after another: Start, requests until END, Done. A vLLM error
    ends a replay's records; its remaining requests are read and dropped until END, so the
    next Start is where the client expects it."""
    from engine.backends.vllm_v0.sequential import V0Sequential

    V = import_vllm()
    stable = os.environ.get("PREFIX_TUI_V0_ASLR") == "off"  # set by the client's boot
    wire.send(out, wire.Ready(V.version, tuple(_probe(V)), stable))
    while True:
        try:
            start = wire.receive(inp)
        except EOFError:
            return 0  # the client is done with this worker
        replay = V0Sequential(V, start.settings, start.v0, start.detail)
        index, stopped = 0, False
        while (req := wire.receive(inp)) is not wire.END:
            if stopped:
                continue
            record = replay.step(index, req)
            wire.send(out, record)
            index += 1
            stopped = record.error is not None
        if not stopped:  # after a vLLM error V0's state is broken: leave it as it is
            replay.finish()
        wire.send(out, wire.Done())


def main() -> int:
    return run(serve)


def run(serve_fn) -> int:  # noqa: ANN001 - serve(inp, out) -> int, of this or another worker
    """A worker process's main: the pipe set up, ``serve_fn`` run, its failure reported."""
    # Ctrl-C reaches the whole process group: the client decides when this worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; vLLM's and torch's prints go to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:
        return serve_fn(inp, out)
    except (EOFError, BrokenPipeError):
        return 0  # the client went away mid-replay (cancelled, interrupted)
    except Exception as exc:
        try:
            wire.send(out, wire.Failed(f"{type(exc).__name__}: {exc}".splitlines()[0],
                                       traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
        return 1
