"""The Feed: the engine side of the inspector, built from a backend registry entry.

The Feed is the engine side of the app. Its methods are the bodies of the app's thread
workers; they never touch a widget. They append to two lists the UI only reads
(``requests``, ``records``: append-only, so a slice taken on the UI thread is always
consistent) and post messages from tui.messages. The UI steers them through two
attributes: ``want()`` (how many records it needs) and ``close()`` (cancel everything).

    read_trace   TraceReader -> requests      (runs ahead of the replay by READ_AHEAD)
    start_engine the entry's factory: import vLLM, build its pool (~6 s; the UI is up and
                 browsable meanwhile)
    run_replay   backend.replay(...) -> records (runs ahead of the cursor by RUN_AHEAD)

The Feed never asks which backend it drives, only how its records are paced
(engine.replay.protocol.Pacing): one record per request (the replay is paced by the
requests it is handed), or one per scheduler iteration (the replay pauses between two
iterations once RUN_AHEAD records lie beyond the cursor, and the reader is paced by the
requests the replay has taken).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.backends import BackendEntry, BuildOptions
from engine.errors import UserError
from engine.model import StepRecord, TraceRequest
from engine.replay.protocol import Backend, Pacing
from engine.trace.reader import TraceSource
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
        source: TraceSource | None,
        entry: BackendEntry,
        options: BuildOptions,
        *,
        requests: Iterable[TraceRequest] | None = None,
    ) -> None:
        self.post = post
        self.source = source
        self.entry = entry
        self.options = options
        self.per_request = entry.pacing is Pacing.PER_REQUEST
        self.settings = options.settings
        self._given = requests
        self.requests: list[TraceRequest] = []
        self.records: list[StepRecord] = []
        self.read_done = False
        self.read_error: str | None = None
        self.replay_done = False
        self.text_trace = False  # prompts came as text: the inspector decodes tokens
        self.backend: Backend | None = None
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
    def consumed(self) -> int:
        """Requests handed to the replay so far."""
        return self._consumed

    @property
    def replay_paused(self) -> bool:
        """The replay waits for the cursor (RUN_AHEAD records lie beyond it)."""
        return self._replay_waiting

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
            assert self.source is not None, "the Feed needs a trace source or requests"
            reader = self.source.reader(cancel=self.cancel)
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
                    if self._replay_waiting or len(self.requests) == 1:
                        self._wake.notify_all()  # the first one also wakes start_engine
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
        if not self.per_request:
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
        from engine.backends.vllm_v1.imports import import_vllm

        try:
            self.post(EngineStatus("importing vLLM"))
            _in_daemon_thread(lambda: import_vllm(self.options.verbose), self.cancel)
            if self.cancel.is_set():
                return
            self.post(EngineStatus(
                f"building {self.entry.starting_text()}, pool of "
                f"{self.settings.num_blocks:,} blocks"
            ))
            backend = self.entry.build(self.options)
            if not self._first_request_read():
                return  # closed meanwhile (quit), or nothing to replay (a bad first line)
            self.backend = backend
        except Exception as exc:  # ImportError, AdapterMismatch, torch failures: all one line
            first = (str(exc).strip().splitlines() or [""])[0]
            self.post(EngineFailed(f"{type(exc).__name__}: {first}", traceback.format_exc()))
            return
        self.post(EngineReady(self.backend.version, self.backend.info, self.backend.groups))

    def _first_request_read(self) -> bool:
        """Wait until the trace gave its first request or ended. Why: on a warm machine
        vLLM can be built before the reader meets a bad first line, and EngineReady would
        then start a replay of nothing (and the app would show a vLLM it says it never
        started)."""
        with self._wake:
            while not self.cancel.is_set() and not self.requests and not self.read_done:
                self._wake.wait()
            return not self.cancel.is_set() and (bool(self.requests) or self.read_error is None)

    # -- worker: replay ---------------------------------------------------------------------------
    def run_replay(self) -> None:
        assert self.backend is not None, "run_replay runs after EngineReady"
        replay = self.backend.replay(self._pending_requests(), detail=True, cancel=self.cancel)
        paced_here = not self.per_request
        last = 0.0
        try:
            for record in replay:
                self.records.append(record)
                if paced_here:
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
        """Per-iteration records: wait between two iterations while the records made reach
        the UI's demand (per-request records are paced by the requests handed out)."""
        with self._wake:
            while not self.cancel.is_set() and len(self.records) >= self._want:
                self._post_records()
                self._replay_waiting = True
                self._wake.wait()
            self._replay_waiting = False

    def _pending_requests(self) -> Iterator[TraceRequest]:
        """The trace's requests for the replay, paced by the UI's demand (one request per
        record; per-iteration replays pace records in _pace)."""
        i = 0
        by_iteration = not self.per_request
        while True:
            with self._wake:
                while True:
                    if self.cancel.is_set():
                        return
                    if i < len(self.requests) and (by_iteration or i < self._want):
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
