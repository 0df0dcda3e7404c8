"""The V0 backend as the main process sees it: a worker process under .venv-legacy's Python
(vLLM 0.10.1.1) runs the whole replay loop and streams one StepRecord per request back.

The boundary is coarse on purpose: a request goes down the pipe, its record comes back; the
thousands of block-manager calls a request makes stay inside the worker. This module never
imports vLLM. Totals and the step sentence are computed here, by engine.metrics and
engine.replay.common, exactly as for V1.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

from engine import metrics
from engine.backends.vllm_v0 import wire
from engine.errors import UserError
from engine.model import KVGroupInfo, ServeSummary, StepRecord, Totals, TraceRequest
from engine.replay.common import describe, synth_output_tokens
from engine.settings import EngineSettings, V0Settings

ROOT = Path(__file__).resolve().parents[3]
LEGACY_VENV = ROOT / ".venv-legacy"
PYTHON_ENV = "PREFIX_TUI_LEGACY_PYTHON"  # another interpreter with vLLM 0.10.1.1
TESTED_VLLM_VERSION = "0.10.1.1"
BUILD_HINT = ("build it with `make legacy` (1 to 7 minutes, 2.4 GB: vLLM 0.10.1.1 on a CPU "
              "torch)")
V0_WORKER = "engine.backends.vllm_v0.worker"  # the module a worker process runs
V0_HASH_ALGO = "python_hash"  # what V0 hashes blocks with (Python's hash(), seeded)

# Imports the worker without engine/backends/__init__.py (the registry and the replay
# protocol): the worker's process loads only engine.model/settings/errors of the project.
# First, it re-executes itself once with address-space randomization off (Linux
# personality ADDR_NO_RANDOMIZE, what `setarch -R` does): V0 hashes a block as
# hash((first, prev, *tokens, extra_hash)) and extra_hash is None without LoRA; on Python
# 3.11 hash(None) is None's address, which ASLR moves on every start, so with it on the
# same replay gives other hashes in every process. Where the kernel refuses (a seccomp
# profile), the worker runs on and reports it (Ready.stable_hashes).
BOOT = """\
import ctypes, os, sys, types
NO_ASLR = 0x0040000
if os.environ.get("PREFIX_TUI_V0_ASLR") is None and sys.platform == "linux":
    os.environ["PREFIX_TUI_V0_ASLR"] = "off"
    libc = ctypes.CDLL(None, use_errno=True)
    now = libc.personality(0xFFFFFFFF)
    if now != -1 and not now & NO_ASLR and libc.personality(now | NO_ASLR) != -1:
        os.execv(sys.executable, sys.orig_argv)
    os.environ["PREFIX_TUI_V0_ASLR"] = "off" if now != -1 and now & NO_ASLR else "on"
root, target = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import engine
backends = types.ModuleType("engine.backends")
backends.__path__ = [root + "/engine/backends"]
sys.modules["engine.backends"] = backends
import importlib
sys.exit(importlib.import_module(target).main())
"""


class V0WorkerError(UserError):
    """The worker could not start or broke (not a vLLM error at a step)."""


def legacy_python(flag: str = "--engine v0") -> Path:
    """The legacy interpreter, or one line saying how to build it (naming ``flag``)."""
    override = os.environ.get(PYTHON_ENV)
    python = Path(override) if override else LEGACY_VENV / "bin" / "python"
    if not python.exists():
        where = f"{PYTHON_ENV}={override}" if override else str(LEGACY_VENV)
        raise UserError(f"{flag} needs vLLM {TESTED_VLLM_VERSION} in {where}, which is "
                        f"not there: {BUILD_HINT}")
    return python


class V0Worker:
    """One worker process: spawned, waited for until vLLM is imported, then replays one
    after another (each on a fresh block manager)."""

    def __init__(self, v0: V0Settings, verbose: bool, target: str = V0_WORKER) -> None:
        self.key = (target, v0.hash_seed, verbose)
        python = legacy_python()
        env = dict(os.environ, PYTHONHASHSEED=str(v0.hash_seed))
        if not verbose:
            env.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        # stderr goes to a file (vLLM's and torch's lines; a crash's traceback), shown
        # with --verbose as it comes, else only its tail when the worker breaks.
        self._err = None if verbose else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(python), "-c", BOOT, str(ROOT), target], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.inp: IO[bytes] = self.proc.stdin
        self.out: IO[bytes] = self.proc.stdout
        ready = self.receive()
        if not isinstance(ready, wire.Ready):
            self.close()
            raise V0WorkerError(f"the V0 worker said {type(ready).__name__} before Ready")
        self.version = ready.vllm_version
        self.stable_hashes = ready.stable_hashes
        if ready.problems:
            self.close()
            raise UserError(
                f"vLLM {self.version} in .venv-legacy is not the V0 block manager prefix-tui "
                f"reads (tested with {TESTED_VLLM_VERSION}): {'; '.join(ready.problems)}")

    def receive(self) -> object:
        try:
            message = wire.receive(self.out)
        except EOFError:
            raise V0WorkerError(self._died()) from None
        if isinstance(message, wire.Failed):
            raise V0WorkerError(f"the V0 worker failed: {message.message}")
        return message

    def send(self, message: object) -> None:
        wire.send(self.inp, message)

    def _died(self) -> str:
        code = self.proc.wait()
        tail = ""
        if self._err is not None:
            self._err.seek(0)
            lines = [ln for ln in self._err.read().decode(errors="replace").splitlines()
                     if ln.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        return f"the V0 worker exited with code {code}{tail}"

    def close(self) -> None:
        for stream in (self.inp, self.out):
            try:
                stream.close()
            except OSError:
                pass  # a pipe the worker already closed
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait()
        if self._err is not None:
            self._err.close()


# Idle workers by (hash seed, verbose): a later backend in this process (compare, tests)
# reuses one instead of importing vLLM again. A worker exits when this process closes its
# stdin, so none outlives it.
_IDLE: dict[tuple[str, int, bool], list[V0Worker]] = {}


def take_worker(v0: V0Settings, verbose: bool, target: str = V0_WORKER) -> V0Worker:
    idle = _IDLE.get((target, v0.hash_seed, verbose))
    return idle.pop() if idle else V0Worker(v0, verbose, target)


def give_back(worker: V0Worker) -> None:
    _IDLE.setdefault(worker.key, []).append(worker)


def close_idle_workers() -> None:
    for workers in _IDLE.values():
        while workers:
            workers.pop().close()


class V0SequentialBackend:
    """The Backend protocol over a V0 worker (engine.replay.protocol)."""

    info = None
    null_block_id: int | None = None  # V0 has no null block
    groups: tuple[KVGroupInfo, ...]  # V0: one table
    target = V0_WORKER

    def __init__(self, settings: EngineSettings, v0: V0Settings, verbose: bool = False) -> None:
        settings.validate()
        v0.validate()
        if settings.layout.from_model:
            raise UserError("--hf-config: vLLM V0's block manager has one full-attention "
                            "table; use --engine v1 for a model's KV cache groups")
        self.groups = (KVGroupInfo(0, "full", None, settings.block_size, 1),)
        # V0: no null block (every block holds tokens), blocks hashed with Python's hash().
        self.settings = replace(settings, null_block=False, hash_algo=V0_HASH_ALGO)
        self.v0 = v0
        self.verbose = verbose
        # A worker now: vLLM's import (seconds) is the slow part of building a backend.
        worker = take_worker(v0, verbose, self.target)
        self.version = worker.version
        # False where the kernel kept ASLR on: V0's hashes then differ from run to run
        # (every figure stays the same; README "Deterministic").
        self.stable_hashes = worker.stable_hashes
        give_back(worker)

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> V0Replay:
        """A replay on a fresh V0 block manager (the worker builds one per replay)."""
        return V0Replay(self, requests, detail=detail, cancel=cancel)


class V0Replay:
    def __init__(self, backend: V0SequentialBackend, requests: Iterable[TraceRequest], *,
                 detail: bool, cancel: threading.Event | None) -> None:
        self.backend = backend
        self.requests = requests
        self.detail = detail
        self.cancel = cancel
        self.stopped_by_error = False
        self.totals = Totals()
        self._feed_error: BaseException | None = None
        self._stop = threading.Event()  # set on a vLLM error: send END, skip the rest

    def summary(self) -> ServeSummary | None:
        return None

    def _feed(self, worker: V0Worker) -> None:
        """Writer thread: the trace's requests down the pipe, as the iterator yields them
        (the inspector paces it), then END. A bad trace line is raised by the reader."""
        try:
            for req in self.requests:
                if self._stop.is_set() or (self.cancel is not None and self.cancel.is_set()):
                    break
                if req.output_token_ids is None:
                    req = replace(req, output_token_ids=synth_output_tokens(req))
                worker.send(req)
            worker.send(wire.END)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the worker stopped (a vLLM error, or the replay was closed): no reader
        except BaseException as exc:  # a TraceError or a tokenizer failure: re-raised below
            self._feed_error = exc
            try:
                worker.send(wire.END)
            except (BrokenPipeError, ValueError, OSError):
                pass  # the worker is already gone

    def __iter__(self) -> Iterator[StepRecord]:
        backend = self.backend
        worker = take_worker(backend.v0, backend.verbose, backend.target)
        caching = backend.settings.enable_caching
        clean = False
        try:
            worker.send(wire.Start(backend.settings, backend.v0, self.detail))
            feeder = threading.Thread(target=self._feed, args=(worker,), daemon=True,
                                      name="v0-feed")
            feeder.start()
            while not isinstance(message := worker.receive(), wire.Done):
                if self.stopped_by_error:
                    continue  # the worker sent nothing after the error record but Done
                record = self._complete(message, caching)
                if record.error is not None:
                    self.stopped_by_error = True
                    self._stop.set()
                yield record
            feeder.join()
            clean = True
            if self._feed_error is not None:
                raise self._feed_error
        finally:
            # Left mid-stream (Ctrl-C, the inspector closing): the pipe holds an unknown
            # amount of the replay, so this worker is closed; the next replay starts one.
            if clean:
                give_back(worker)
            else:
                worker.close()

    def _complete(self, record: StepRecord, caching: bool) -> StepRecord:
        """The record's totals and sentence, computed here as for every backend."""
        result = record.admitted[0]
        v0 = record.v0
        counts = metrics.token_hit_counts(self.totals, result, caching)
        self.totals = metrics.add_request(
            self.totals, result, **counts,
            v0_hit_rate=v0.hit_rate if v0 is not None else None)
        return replace(record, totals=self.totals, note=describe(result))
