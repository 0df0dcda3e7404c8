"""The interactive inspector: its entry point, and the Feed that drives the engine.

The Feed is the engine side of the app. Its methods are the bodies of the app's thread
workers; they never touch a widget. They append to two lists the UI only reads
(``requests``, ``records``: append-only, so a slice taken on the UI thread is always
consistent) and post messages from tui.messages. The UI steers them through two
attributes: ``want()`` (how many records it needs) and ``close()`` (cancel everything).

    read_trace   TraceReader -> requests      (runs ahead of the replay by READ_AHEAD)
    start_engine import vLLM, build V1Backend (~6 s; the UI is up and browsable meanwhile)
    run_replay   SequentialReplay -> records  (runs ahead of the cursor by RUN_AHEAD)

Serve mode (``mode="serve"``) builds vLLM's Scheduler (engine.vllm_v1_sched.SchedBackend)
and replays with engine.serve.ServeReplay: one record per scheduler iteration, so a record
is no longer a request. The replay is then paced by records (it pauses between two
iterations once RUN_AHEAD records lie beyond the cursor), and the reader by the requests
the replay has taken.
"""

from __future__ import annotations

import argparse
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.errors import UserError
from engine.records import StepRecord
from engine.trace_types import TraceRequest
from engine.vllm_v1 import EngineSettings
from tui.messages import (
    EngineFailed,
    EngineReady,
    EngineStatus,
    ReplayProgress,
    TraceFailed,
    TraceProgress,
)

POST_EVERY_S = 0.05  # progress messages at most 20 times a second (newer ones replace older)


class Feed:
    RUN_AHEAD = 512  # records made beyond the cursor, so stepping never waits for vLLM
    # Requests read beyond the replay's demand: enough to browse ahead, few enough that a
    # 1 GB trace opens at once and its token ids do not all sit in memory.
    READ_AHEAD = 2_000

    def __init__(
        self,
        post: Callable[[Any], object],
        trace_path: str | None,
        settings: EngineSettings,
        *,
        tokenizer_name: str | None = None,
        trace_block_size: int = 512,
        verbose: bool = False,
        requests: Iterable[TraceRequest] | None = None,
        mode: str = "sequential",
        serve: Any = None,
    ) -> None:
        if mode not in ("sequential", "serve"):
            raise ValueError(f"unknown replay mode {mode!r}")
        self.post = post
        self.mode = mode
        self.serve = serve  # engine.vllm_v1_sched.ServeSettings (serve mode; None: vLLM's)
        self.trace_path = trace_path
        self.settings = settings
        self.tokenizer_name = tokenizer_name
        self.trace_block_size = trace_block_size
        self.verbose = verbose
        self._given = requests
        self.requests: list[TraceRequest] = []
        self.records: list[StepRecord] = []
        self.read_done = False
        self.read_error: str | None = None
        self.replay_done = False
        self.text_trace = False  # prompts came as text: the inspector decodes tokens
        self.backend: Any = None
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._want = self.RUN_AHEAD
        self._replay_waiting = False
        self._reader_waiting = False
        self._posted = -1
        self._consumed = 0  # requests handed to the replay

    # -- attributes down (UI thread) ----------------------------------------------------------
    def want(self, upto: int) -> None:
        """Make sure records [0, upto) get made (never lowers the demand)."""
        with self._wake:
            if upto > self._want:
                self._want = upto
                self._wake.notify_all()

    @property
    def wanted(self) -> int:
        return self._want

    @property
    def reader_paused(self) -> bool:
        """The reader is waiting for the replay to catch up (not loading anything)."""
        return self._reader_waiting

    def close(self) -> None:
        self.cancel.set()
        with self._wake:
            self._wake.notify_all()

    # -- worker: read the trace ---------------------------------------------------------------
    def read_trace(self) -> None:
        reader = None
        if self._given is not None:
            source: Iterable[TraceRequest] = self._given
        else:
            from engine.trace import TraceReader

            reader = TraceReader(
                self.trace_path,
                tokenizer_name=self.tokenizer_name,
                trace_block_size=self.trace_block_size,
                cancel=self.cancel,
            )
            source = reader
        last = 0.0
        try:
            for req in source:
                with self._wake:
                    while (
                        not self.cancel.is_set()
                        and len(self.requests) >= self._read_demand() + self.READ_AHEAD
                    ):
                        if not self._reader_waiting:
                            self._reader_waiting = True
                            self._post_read(reader, done=False)  # the UI shows it paused
                        self._wake.wait()
                    self._reader_waiting = False
                    if self.cancel.is_set():
                        return
                    if req.text is not None:
                        self.text_trace = True
                    self.requests.append(req)
                    if self._replay_waiting:
                        self._wake.notify_all()
                now = time.monotonic()
                if now - last >= POST_EVERY_S:
                    last = now
                    self._post_read(reader, done=False)
        except UserError as err:  # TraceError (file:line: message), or a tokenizer failing
            self.read_error = str(err)
            self.post(TraceFailed(self.read_error))
        finally:
            with self._wake:
                self.read_done = True
                self._wake.notify_all()
            self._post_read(reader, done=True)

    def _read_demand(self) -> int:
        """Requests the replay needs now (the reader runs READ_AHEAD beyond). Under the
        lock."""
        if self.mode == "serve":
            return self._consumed  # records are iterations: they say nothing of requests
        return max(self._want, len(self.records))

    def _post_read(self, reader: Any, done: bool) -> None:
        count = len(self.requests)
        if reader is None:
            self.post(TraceProgress(count, count, count, done))
        else:
            self.post(TraceProgress(count, reader.bytes_read, reader.total_bytes, done))

    # -- worker: build the engine ---------------------------------------------------------------
    def start_engine(self) -> None:
        from engine.vllm_v1 import V1Backend, import_vllm

        try:
            self.post(EngineStatus("importing vLLM"))
            version = _in_daemon_thread(lambda: import_vllm(self.verbose), self.cancel)
            if self.cancel.is_set():
                return
            if self.mode == "serve":
                from engine.vllm_v1_sched import SchedBackend

                self.post(EngineStatus(
                    f"building vLLM's scheduler, pool of {self.settings.num_blocks:,} blocks"
                ))
                self.backend = SchedBackend(self.settings, self.serve, verbose=self.verbose)
                self.post(EngineReady(version, self.backend.describe()))
                return
            self.post(EngineStatus(f"building vLLM's pool of {self.settings.num_blocks:,} blocks"))
            self.backend = V1Backend(self.settings, self.verbose)
        except Exception as exc:  # ImportError, AdapterMismatch, torch failures: all one line
            first = (str(exc).strip().splitlines() or [""])[0]
            self.post(EngineFailed(f"{type(exc).__name__}: {first}", traceback.format_exc()))
            return
        self.post(EngineReady(version))

    # -- worker: replay ---------------------------------------------------------------------------
    def run_replay(self) -> None:
        serve = self.mode == "serve"
        if serve:
            from engine.serve import ServeReplay

            replay: Iterable[StepRecord] = ServeReplay(
                self.backend, self._pending_requests(), detail=True, cancel=self.cancel
            )
        else:
            from engine.replay import SequentialReplay

            replay = SequentialReplay(
                self.backend, self._pending_requests(), detail=True, cancel=self.cancel
            )
        last = 0.0
        try:
            for record in replay:
                self.records.append(record)
                if serve:
                    self._pace()
                # Hand the GIL to the UI thread between records: a replay running flat out
                # (End, top-speed play) must not make the screen wait for its time slice.
                time.sleep(0)
                now = time.monotonic()
                if now - last >= POST_EVERY_S:
                    last = now
                    self._post_records()
        finally:
            self.replay_done = True
            self.post(ReplayProgress(len(self.records), done=True))

    def _post_records(self) -> None:
        count = len(self.records)
        if count != self._posted:
            self._posted = count
            self.post(ReplayProgress(count))

    def _pace(self) -> None:
        """Serve mode: wait between two iterations while the records made reach the UI's
        demand (sequential mode is paced by the requests it is handed instead)."""
        with self._wake:
            while not self.cancel.is_set() and len(self.records) >= self._want:
                self._post_records()
                self._replay_waiting = True
                self._wake.wait()
            self._replay_waiting = False

    def _pending_requests(self) -> Iterator[TraceRequest]:
        """The trace's requests for the replay, paced by the UI's demand (sequential: one
        request per record; serve mode paces records in _pace)."""
        i = 0
        serve = self.mode == "serve"
        while True:
            with self._wake:
                while True:
                    if self.cancel.is_set():
                        return
                    if i < len(self.requests) and (serve or i < self._want):
                        break
                    if i >= len(self.requests) and self.read_done:
                        return
                    # About to sleep: let the UI see every record made so far first.
                    self._post_records()
                    self._replay_waiting = True
                    self._wake.wait()
                self._replay_waiting = False
                req = self.requests[i]
                self._consumed = i + 1
                if self._reader_waiting:
                    self._wake.notify_all()
            yield req
            i += 1


def _in_daemon_thread(fn: Callable[[], Any], cancel: threading.Event) -> Any:
    """Run ``fn`` in a daemon thread and wait for it, giving up when ``cancel`` is set.

    Importing vLLM cannot be interrupted; on a daemon thread it does not hold up quitting
    (the executor thread of a Textual worker would be joined at exit).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the worker thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="prefix-tui-import", daemon=True)
    thread.start()
    while thread.is_alive() and not cancel.is_set():
        thread.join(0.1)
    if "error" in box:
        raise box["error"]
    return box.get("value")


# -- entry point ------------------------------------------------------------------------------
def run_inspector(args: argparse.Namespace) -> int:
    """``prefix-tui TRACE``: open the inspector. Bad settings or an unreadable trace raise
    UserError before the screen is taken over, so they end as one line on stderr."""
    from engine.session import settings_from_args
    from engine.trace import TraceReader
    from tui.app import InspectorApp

    settings = settings_from_args(args)
    mode = getattr(args, "mode", "sequential") or "sequential"
    serve = None
    if mode == "serve":
        from engine.serve import serve_settings_from_args  # no vLLM import: cheap

        serve = serve_settings_from_args(args)  # bad --max-num-seqs etc.: one line, exit 2
    # Opens the file and reads its first line: a missing or empty trace fails here.
    TraceReader(args.trace, tokenizer_name=args.tokenizer, trace_block_size=args.trace_block_size)
    app = InspectorApp(
        args.trace,
        settings,
        tokenizer_name=args.tokenizer,
        trace_block_size=args.trace_block_size,
        verbose=args.verbose,
        mode=mode,
        serve=serve,
    )
    app.run()
    return app.return_code or 0


def __getattr__(name: str) -> Any:
    # ``from tui.inspector import InspectorApp`` without importing Textual's app module at
    # import time of this one (tui.app imports Feed from here).
    if name == "InspectorApp":
        from tui.app import InspectorApp

        return InspectorApp
    raise AttributeError(name)
