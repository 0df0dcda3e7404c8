"""The attach view's app and its two sources: a live subscriber (`prefix-tui attach`) and a
recorded or exported file (`prefix-tui events FILE`). Each source runs on the screen's
worker thread and owns its CacheState."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from textual.app import App

from engine.kvevents.attach import AttachSettings, Subscriber
from engine.kvevents.prometheus import PrefixCacheCounters, interval_rate, poll
from engine.kvevents.state import CacheState
from engine.kvevents.summary import LiveFigures, live_figures
from tui.screens.live import UPDATE_S, LiveScreen, MetricsView, Source

Post = Callable[[LiveFigures, MetricsView | None], None]
METRICS_EVERY_S = 2.0
TREE_EVERY_S = 2.0  # the prefix tree walks every cached hash: not at every update


class LiveApp(App[int]):
    TITLE = "prefix-tui"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, title: str, source: Source) -> None:
        super().__init__()
        self.main = LiveScreen(title, source)

    def get_default_screen(self) -> LiveScreen:
        return self.main


def attach_source(settings: AttachSettings, metrics_url: str | None = None) -> Source:
    def run(post: Post, stop: threading.Event) -> None:
        from engine.backends import event_decoder

        decode = event_decoder()
        state = CacheState()
        sub = Subscriber(settings, decode, state)
        sub.open()
        last_metrics: PrefixCacheCounters | None = None
        metrics: MetricsView | None = None
        next_metrics = 0.0
        tree_at = 0.0
        tree = ()
        try:
            while not stop.is_set():
                sub.poll(UPDATE_S)
                now = time.monotonic()
                if metrics_url is not None and now >= next_metrics:
                    next_metrics = now + METRICS_EVERY_S
                    counters = poll(metrics_url)
                    metrics = MetricsView(counters, interval_rate(last_metrics, counters))
                    if not counters.error:
                        last_metrics = counters
                if now >= tree_at:
                    tree_at = now + TREE_EVERY_S
                    tree = tuple(state.tree())
                post(live_figures(state, now=now, silent_for_s=sub.silent_for(), tree=tree),
                     metrics)
        finally:
            sub.close()

    return run


def file_source(path: str) -> Source:
    def run(post: Post, stop: threading.Event) -> None:
        from tui.events_cli import replay_file

        state = CacheState()
        replay_file(path, state)
        post(live_figures(state, now=time.monotonic(), silent_for_s=0.0, done=True), None)

    return run


def run_live(args: argparse.Namespace, settings: AttachSettings) -> int:
    where = f" (replay {settings.replay_endpoint})" if settings.replay_endpoint else ""
    app = LiveApp(f"attach {settings.endpoint}{where}",
                  attach_source(settings, getattr(args, "metrics_url", None)))
    app.run()
    return app.return_code or 0


def run_events_view(path: str) -> int:
    app = LiveApp(f"events {path}", file_source(path))
    app.run()
    return app.return_code or 0
