"""The backend registry: (engine, mode) -> a lazy factory -> a Backend that makes replays.

Sequential V1 and serve V1 are two entries; V0 (a worker process under an older vLLM) and a
live KV-event source will be more. Nothing above this module switches on a mode string:
the CLI looks an entry up once; the TUI, the report and the sweep use what it builds
through engine.replay.protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.replay.protocol import Pacing, View
from engine.settings import EngineSettings, ServeSettings

if TYPE_CHECKING:
    from engine.replay.protocol import Backend


@dataclass(frozen=True)
class BuildOptions:
    """Everything a factory needs; serve settings only matter to scheduler backends."""

    settings: EngineSettings
    serve: ServeSettings | None = None
    verbose: bool = False


@dataclass(frozen=True)
class BackendEntry:
    engine: str  # the vLLM generation: "v1"
    mode: str  # "sequential" | "serve" (the CLI's --mode)
    summary: str
    view: View
    pacing: Pacing
    uses_scheduler: bool  # serve-mode flags apply
    factory: Callable[[BuildOptions], Backend]  # slow: imports vLLM, builds its pool

    @property
    def name(self) -> str:
        return f"{self.engine} {self.mode}"

    def build(self, options: BuildOptions) -> Backend:
        return self.factory(options)

    def starting_text(self) -> str:
        """What the UI says while the factory runs."""
        what = "scheduler" if self.uses_scheduler else "KV-cache manager"
        return f"vLLM's {what}"


def _v1_sequential(options: BuildOptions) -> Backend:
    from engine.backends.v1 import V1SequentialBackend

    return V1SequentialBackend(options.settings, options.verbose)


def _v1_serve(options: BuildOptions) -> Backend:
    from engine.backends.v1 import V1ServeBackend

    return V1ServeBackend(options.settings, options.serve or ServeSettings(), options.verbose)


REGISTRY: dict[tuple[str, str], BackendEntry] = {
    ("v1", "sequential"): BackendEntry(
        "v1", "sequential", "one request at a time on vLLM's KVCacheManager",
        View.SEQUENTIAL, Pacing.PER_REQUEST, False, _v1_sequential,
    ),
    ("v1", "serve"): BackendEntry(
        "v1", "serve", "vLLM's real Scheduler: concurrency, chunked prefill, preemption",
        View.SERVE, Pacing.PER_ITERATION, True, _v1_serve,
    ),
}
ENGINES = tuple(dict.fromkeys(e for e, _m in REGISTRY))
MODES = tuple(dict.fromkeys(m for _e, m in REGISTRY))


def lookup(engine: str = "v1", mode: str = "sequential") -> BackendEntry:
    entry = REGISTRY.get((engine, mode))
    if entry is None:
        have = ", ".join(f"{e} {m}" for e, m in REGISTRY)
        raise UserError(f"no backend for engine {engine!r} in mode {mode!r} (have: {have})")
    return entry
