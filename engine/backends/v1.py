"""The two vLLM V1 backends: the adapter's manager or scheduler, with the replay over it."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from engine.backends.vllm_v1.kvstream import EventTap, ExportingReplay
from engine.backends.vllm_v1.manager import PoolReader, V1Manager
from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.errors import UserError
from engine.model import KVGroupInfo, SchedulerInfo, TraceRequest
from engine.replay.replicas import RoutedSequentialReplay, RoutedServeReplay
from engine.replay.routing import make_router
from engine.replay.sequential import SequentialReplay
from engine.replay.serve import ServeReplay
from engine.kvevents.options import EventsOut
from engine.settings import EngineSettings, ServeSettings


def _with_events(replay, reader: PoolReader, events: EventsOut | None, version: str,
                 settings: dict, cancel: threading.Event | None):
    """The replay, its vLLM events also exported / published when asked (kvstream)."""
    if events is None or not events.active:
        return replay
    reader.tap = EventTap()
    return ExportingReplay(replay, reader.tap, events, version, settings, cancel)


def _settings_meta(settings: EngineSettings, mode: str) -> dict:
    return {"engine": "v1", "mode": mode, "block_size": settings.block_size,
            "num_gpu_blocks": settings.num_blocks,
            "enable_prefix_caching": settings.enable_caching,
            "prefix_caching_hash_algo": settings.hash_algo}


class V1SequentialBackend:
    info: SchedulerInfo | None = None

    def __init__(self, settings: EngineSettings, verbose: bool = False,
                 events: EventsOut | None = None) -> None:
        self.events = events
        self.manager = V1Manager(settings, verbose)
        self.settings = self.manager.settings  # max_model_len as vLLM resolved it
        self.groups: tuple[KVGroupInfo, ...] = self.manager.groups
        self.version = self.manager.version
        self.null_block_id: int | None = self.manager.null_block_id

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> SequentialReplay:
        replay = SequentialReplay(self.manager, requests, detail=detail, cancel=cancel)
        return _with_events(replay, self.manager, self.events, self.version,
                            _settings_meta(self.settings, "sequential"), cancel)


class V1ServeBackend:
    def __init__(self, settings: EngineSettings, serve: ServeSettings,
                 verbose: bool = False, events: EventsOut | None = None) -> None:
        self.events = events
        self.scheduler = V1Scheduler(settings, serve, verbose)
        self.settings = self.scheduler.settings
        self.groups: tuple[KVGroupInfo, ...] = self.scheduler.groups
        self.version = self.scheduler.version
        self.null_block_id: int | None = self.scheduler.null_block_id
        self.info: SchedulerInfo | None = self.scheduler.info()

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> ServeReplay:
        replay = ServeReplay(self.scheduler, requests, detail=detail, cancel=cancel)
        return _with_events(replay, self.scheduler, self.events, self.version,
                            _settings_meta(self.settings, "serve"), cancel)


class V1RoutedBackend:
    """--instances N --router NAME: N of the backends above behind a router
    (engine.replay.replicas). Replays are one-shot: each builds its replicas' vLLM
    objects once, here."""

    def __init__(self, settings: EngineSettings, serve: ServeSettings | None, instances: int,
                 router: str, verbose: bool = False, own_steps: bool = False) -> None:
        if instances < 1:
            raise UserError(f"--instances must be >= 1 (got {instances})")
        make_router(router)  # an unknown name fails before vLLM builds anything
        self.router_name = router
        self.serve = serve
        self.own_steps = own_steps  # the inspector: each replica's records numbered apart
        if serve is None:
            self.replicas: list = [V1Manager(settings, verbose) for _ in range(instances)]
        else:
            self.replicas = [V1Scheduler(settings, serve, verbose) for _ in range(instances)]
        first = self.replicas[0]
        self.settings = first.settings  # max_model_len as vLLM resolved it
        self.groups: tuple[KVGroupInfo, ...] = first.groups
        self.version = first.version
        self.null_block_id: int | None = first.null_block_id
        self.info: SchedulerInfo | None = first.info() if serve is not None else None

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None):
        router = make_router(self.router_name)
        if self.serve is None:
            return RoutedSequentialReplay(
                [SequentialReplay(m, (), detail=detail, cancel=cancel) for m in self.replicas],
                router, requests, cancel, self.own_steps)
        return RoutedServeReplay(
            [ServeReplay(s, (), detail=detail, cancel=cancel) for s in self.replicas],
            router, requests, cancel, self.own_steps)
