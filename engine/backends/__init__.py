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
from engine.kvevents.options import EventsOut
from engine.replay.protocol import Pacing, View
from engine.settings import EngineSettings, ServeSettings, V0Settings

if TYPE_CHECKING:
    from engine.kvevents.model import DecodedBatch
    from engine.replay.protocol import Backend


@dataclass(frozen=True)
class BuildOptions:
    """Everything a factory needs; serve settings only matter to scheduler backends."""

    settings: EngineSettings
    serve: ServeSettings | None = None
    verbose: bool = False
    v0: V0Settings | None = None  # V0 backends: the call order and hash seed
    events: EventsOut | None = None  # --export-events / --serve-events (V1 backends)
    # --instances N --router NAME: N replicas behind a router (None: one plain instance)
    instances: int | None = None
    router: str = "round-robin"
    # The inspector's --replica K (its starting replica): every replica's records, each
    # numbered as its replica's own steps, with its own totals (engine.replay.replicas).
    replica: int | None = None


@dataclass(frozen=True)
class BackendEntry:
    engine: str  # the vLLM generation: "v1"
    mode: str  # "sequential" | "serve" (the CLI's --mode)
    summary: str
    view: View
    pacing: Pacing
    uses_scheduler: bool  # serve-mode flags apply
    factory: Callable[[BuildOptions], Backend]  # slow: imports vLLM, builds its pool
    # Fast checks before anything slow (V0: is .venv-legacy there?); raises UserError.
    precheck: Callable[[], object] | None = None
    kv_events: bool = True  # vLLM emits KV events (--export-events, --serve-events)
    null_block: bool = True  # vLLM V1 keeps block 0 as its null block; V0 has none

    @property
    def null_block_id(self) -> int | None:
        """The pool's null block as the UI draws it (V1's is block 0), None on V0."""
        return 0 if self.null_block else None

    @property
    def name(self) -> str:
        return f"{self.engine} {self.mode}"

    def build(self, options: BuildOptions) -> Backend:
        return self.factory(options)

    def starting_text(self) -> str:
        """What the UI says while the factory runs."""
        what = "scheduler" if self.uses_scheduler else "KV-cache manager"
        return f"vLLM's {what}"


def _v1_routed(options: BuildOptions, serve: ServeSettings | None) -> Backend:
    from engine.backends.v1 import V1RoutedBackend

    assert options.instances is not None
    return V1RoutedBackend(options.settings, serve, options.instances, options.router,
                           options.verbose, options.replica is not None)


def _v1_sequential(options: BuildOptions) -> Backend:
    from engine.backends.v1 import V1SequentialBackend

    if options.instances is not None:
        return _v1_routed(options, None)
    return V1SequentialBackend(options.settings, options.verbose, options.events)


def _v1_serve(options: BuildOptions) -> Backend:
    from engine.backends.v1 import V1ServeBackend

    if options.instances is not None:
        return _v1_routed(options, options.serve or ServeSettings())
    return V1ServeBackend(options.settings, options.serve or ServeSettings(), options.verbose,
                          options.events)


def _v0_sequential(options: BuildOptions) -> Backend:
    from engine.backends.vllm_v0.client import V0SequentialBackend

    if options.instances is not None:
        raise UserError("--instances: V1 only (V0 replays one block manager)")

    return V0SequentialBackend(options.settings, options.v0 or V0Settings(), options.verbose)


def _v1_010_sequential(options: BuildOptions) -> Backend:
    from engine.backends.vllm_v1_010.client import V1At010Backend

    return V1At010Backend(options.settings, options.verbose)


def _v1_010_precheck() -> object:
    from engine.backends.vllm_v0.client import legacy_python

    return legacy_python("--engine v1@0.10")


def _v0_precheck() -> object:
    from engine.backends.vllm_v0.client import legacy_python

    return legacy_python()


REGISTRY: dict[tuple[str, str], BackendEntry] = {
    ("v1", "sequential"): BackendEntry(
        "v1", "sequential", "one request at a time on vLLM's KVCacheManager",
        View.SEQUENTIAL, Pacing.PER_REQUEST, False, _v1_sequential,
    ),
    ("v1", "serve"): BackendEntry(
        "v1", "serve", "vLLM's real Scheduler: concurrency, chunked prefill, preemption",
        View.SERVE, Pacing.PER_ITERATION, True, _v1_serve,
    ),
    ("v0", "sequential"): BackendEntry(
        "v0", "sequential", "one request at a time on vLLM 0.10.1.1's V0 block manager "
        "(a worker under .venv-legacy)",
        View.SEQUENTIAL, Pacing.PER_REQUEST, False, _v0_sequential, _v0_precheck,
        kv_events=False,
        null_block=False,
    ),
    ("v1@0.10", "sequential"): BackendEntry(
        "v1@0.10", "sequential", "the V1 adapter on vLLM 0.10.1.1's V1 KVCacheManager "
        "(a worker under .venv-legacy; the bridged API differences: "
        "engine/backends/vllm_v1_010/manager.py)",
        View.SEQUENTIAL, Pacing.PER_REQUEST, False, _v1_010_sequential, _v1_010_precheck,
        kv_events=False,  # its events stay in the worker: no --export-events
    ),
}
ENGINES = tuple(dict.fromkeys(e for e, _m in REGISTRY))
MODES = tuple(dict.fromkeys(m for _e, m in REGISTRY))


def event_decoder(json: bool = False) -> Callable[[bytes], DecodedBatch]:
    """The adapter's KV event decoder, vLLM's own classes behind it (slow: imports vLLM):
    a vLLM ZMQ payload (msgpack), or a --export-events line (``json``), to a DecodedBatch."""
    from engine.backends.vllm_v1.kvdecode import BatchDecoder

    return BatchDecoder(json=json).decode


def lookup(engine: str = "v1", mode: str = "sequential") -> BackendEntry:
    entry = REGISTRY.get((engine, mode))
    if entry is None:
        have = ", ".join(f"{e} {m}" for e, m in REGISTRY)
        raise UserError(f"no backend for engine {engine!r} in mode {mode!r} (have: {have})")
    return entry
