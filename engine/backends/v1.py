"""The two vLLM V1 backends: the adapter's manager or scheduler, with the replay over it."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from engine.backends.vllm_v1.manager import V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.model import SchedulerInfo, TraceRequest
from engine.replay.sequential import SequentialReplay
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings


class V1SequentialBackend:
    info: SchedulerInfo | None = None

    def __init__(self, settings: EngineSettings, verbose: bool = False) -> None:
        self.manager = V1Manager(settings, verbose)
        self.settings = settings
        self.version = self.manager.version
        self.null_block_id: int | None = self.manager.null_block_id

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> SequentialReplay:
        return SequentialReplay(self.manager, requests, detail=detail, cancel=cancel)


class V1ServeBackend:
    def __init__(self, settings: EngineSettings, serve: ServeSettings,
                 verbose: bool = False) -> None:
        self.scheduler = V1Scheduler(settings, serve, verbose)
        self.settings = settings
        self.version = self.scheduler.version
        self.null_block_id: int | None = self.scheduler.null_block_id
        self.info: SchedulerInfo | None = self.scheduler.info()

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> ServeReplay:
        return ServeReplay(self.scheduler, requests, detail=detail, cancel=cancel)
