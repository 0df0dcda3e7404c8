"""``--engine v1@0.10`` as the main process sees it: the V1 adapter's sequential replay runs
in a .venv-legacy worker under vLLM 0.10.1.1 (engine.backends.vllm_v1_010.worker), spawned
and fed exactly as the V0 worker is (engine.backends.vllm_v0.client). This module never
imports vLLM. Records arrive complete: the worker's replay computes totals and notes with
engine.metrics, as the V1 replay does in the main process."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from engine.backends.vllm_v0.client import V0Replay, V0SequentialBackend, give_back, take_worker
from engine.errors import UserError
from engine.model import KVGroupInfo, StepRecord, TraceRequest
from engine.settings import EngineSettings, V0Settings

V1_010_WORKER = "engine.backends.vllm_v1_010.worker"
TESTED_VLLM_VERSION = "0.10.1.1"
# 0.10.1.1 hashes with sha256 (the default here too), sha256_cbor_64bit or builtin;
# 0.33's sha256_cbor and xxhash do not exist there.
BRIDGED_HASH_ALGOS = ("sha256",)


def check_hash_algo(settings: EngineSettings) -> None:
    if settings.hash_algo not in BRIDGED_HASH_ALGOS:
        raise UserError(
            f"--engine v1@0.10: --prefix-caching-hash-algo {settings.hash_algo} does not "
            f"exist in vLLM {TESTED_VLLM_VERSION} (it has sha256, sha256_cbor_64bit, "
            "builtin); prefix-tui bridges sha256, the default")


class V1At010Backend(V0SequentialBackend):
    """The Backend protocol over a V1@0.10 worker."""

    null_block_id: int | None = 0  # 0.10.1.1's V1 keeps block 0 as its null block too
    target = V1_010_WORKER

    def __init__(self, settings: EngineSettings, verbose: bool = False) -> None:
        settings.validate()
        check_hash_algo(settings)
        if settings.layout.from_model:
            raise UserError("--engine v1@0.10: --hf-config is not bridged (it uses vLLM "
                            "0.33's own KV cache planning); use --engine v1")
        self.settings = settings
        self.groups = tuple(  # the hand-built layout's groups, as engine.backends.v1's
            KVGroupInfo(i, g.kind.value, g.sliding_window, settings.block_size,
                        len(g.layer_names), g.layer_names[0] if g.layer_names else "")
            for i, g in enumerate(settings.layout.groups))
        # PYTHONHASHSEED 0: 0.10.1.1 seeds the first block's parent hash (NONE_HASH) from
        # it, and draws it from os.urandom when it is unset.
        self.v0 = V0Settings()
        self.verbose = verbose
        worker = take_worker(self.v0, verbose, self.target)
        self.version = worker.version
        self.stable_hashes = True  # sha256 of pickled ints: no hash() involved
        give_back(worker)

    def replay(self, requests: Iterable[TraceRequest], *, detail: bool,
               cancel: threading.Event | None = None) -> V1At010Replay:
        return V1At010Replay(self, requests, detail=detail, cancel=cancel)


class V1At010Replay(V0Replay):
    def _complete(self, record: StepRecord, caching: bool) -> StepRecord:
        self.totals = record.totals
        return record  # the worker's replay made it whole
