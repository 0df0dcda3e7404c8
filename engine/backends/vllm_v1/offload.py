"""vLLM's native CPU KV offloading in serve mode: its own OffloadingConnector, scheduler side.

vLLM builds the tier itself: ``CacheConfig(kv_offloading_size=GiB,
kv_offloading_backend="native")`` becomes an ``OffloadingConnector`` (``kv_both``) in the
``VllmConfig``, and the Scheduler creates the connector's scheduler role and its
``CPUOffloadingManager`` (LRU or ARC, from ``kv_connector_extra_config["eviction_policy"]``
of a ``KVTransferConfig`` vLLM merges in). Nothing in vLLM is patched.

Only the worker is replaced (there is no GPU and no KV tensor): ``StandInWorker`` reads
each iteration's ``scheduler_output.kv_connector_metadata`` (load jobs, store jobs, jobs
to flush) as vLLM's ``OffloadingConnectorWorker`` would, and answers in that iteration's
``ModelRunnerOutput`` with a ``KVConnectorOutput``: ``kv_connector_worker_meta=
OffloadingWorkerMetadata(completed_jobs=...)`` and ``finished_recving`` for async loads.
A job is reported finished ``latency`` iterations after the one that started it (0: in
the same iteration's output, so the update that follows sees it); jobs to flush and
synchronous loads are finished at once, as the real worker waits on them. Every job is
reported exactly once (a second start or report raises), so no request waits forever.

The tier's size: vLLM gives the tier ``int(GiB * 2**30) // round_up(bytes per block *
blocks per chunk, page size)`` blocks (``CPUOffloadingSpec``). With prefix-tui's one-layer
KV spec a block is 64 bytes and the page rounding dominates, so ``--num-cpu-blocks N`` is
turned into the size that gives exactly N blocks, and the built tier is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION
from engine.backends.vllm_v1.internals import AdapterMismatch
from engine.errors import UserError
from engine.settings import TierSettings

GIB = 1 << 30


class _OffloadSymbols:
    loaded = False
    KVTransferConfig: Any
    KVConnectorOutput: Any
    OffloadingWorkerMetadata: Any
    TransferStats: Any
    ModelRunnerOutput: Any
    page_alignment: int


O = _OffloadSymbols()


def import_offload() -> _OffloadSymbols:
    if O.loaded:
        return O
    from vllm.config import KVTransferConfig
    from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import (
        OffloadingWorkerMetadata,
        TransferStats,
    )
    from vllm.v1.kv_offload.cpu.spec import CPUOffloadingSpec
    from vllm.v1.outputs import KVConnectorOutput, ModelRunnerOutput

    O.KVTransferConfig = KVTransferConfig
    O.KVConnectorOutput = KVConnectorOutput
    O.OffloadingWorkerMetadata = OffloadingWorkerMetadata
    O.TransferStats = TransferStats
    O.ModelRunnerOutput = ModelRunnerOutput
    O.page_alignment = CPUOffloadingSpec.BLOCK_SIZE_ALIGNMENT
    O.loaded = True
    return O


def kv_bytes_per_block(kv_cache_config: Any) -> int:
    """Bytes one GPU block holds over all groups and layers: vLLM's rule for the tier
    (``_group_kv_bytes_per_block``: page size times layers), from the public specs."""
    return sum(g.kv_cache_spec.page_size_bytes * len(g.layer_names)
               for g in kv_cache_config.kv_cache_groups)


def cpu_bytes_per_block(kv_cache_config: Any) -> int:
    """What one CPU block costs vLLM: the KV bytes rounded up to the memory page."""
    o = import_offload()
    raw = kv_bytes_per_block(kv_cache_config)
    return -(-raw // o.page_alignment) * o.page_alignment


def offloading_size_gib(tier: TierSettings, kv_cache_config: Any) -> float | None:
    """vLLM's kv_offloading_size for the tier (None: no tier). An exact block count N
    becomes N * cpu_bytes_per_block / 2**30 (exact in binary floating point)."""
    if not tier.enabled:
        return None
    if tier.num_cpu_blocks:
        return tier.num_cpu_blocks * cpu_bytes_per_block(kv_cache_config) / GIB
    return tier.kv_offloading_size


def expected_cpu_blocks(tier: TierSettings, kv_cache_config: Any) -> int:
    size = offloading_size_gib(tier, kv_cache_config) or 0.0
    return int(size * GIB) // cpu_bytes_per_block(kv_cache_config)


def config_kwargs(tier: TierSettings, kv_cache_config: Any) -> tuple[dict[str, Any], Any]:
    """(extra CacheConfig kwargs, KVTransferConfig or None) for VllmConfig."""
    size = offloading_size_gib(tier, kv_cache_config)
    if size is None:
        return {}, None
    if expected_cpu_blocks(tier, kv_cache_config) < 1:
        raise UserError(
            f"--kv-offloading-size {tier.kv_offloading_size} GiB holds no CPU block: vLLM "
            f"needs {cpu_bytes_per_block(kv_cache_config):,} bytes a block here"
        )
    o = import_offload()
    transfer = o.KVTransferConfig(
        kv_connector_extra_config={"eviction_policy": tier.eviction_policy},
    )
    return ({"kv_offloading_size": size, "kv_offloading_backend": tier.backend}, transfer)


# -- the stand-in worker -------------------------------------------------------------------
@dataclass(slots=True)
class _Job:
    req_id: str
    is_load: bool
    sync: bool
    blocks: int  # GPU blocks the job moves
    due: int  # the stand-in step whose output reports it


@dataclass(frozen=True, slots=True)
class WorkerStep:
    """What the stand-in did for one scheduler output (plain data)."""

    loads_started: int
    stores_started: int
    loads_finished: int
    stores_finished: int
    blocks_loaded: int
    blocks_stored: int
    flushed: int


class StandInWorker:
    """Answers the connector's jobs as vLLM's OffloadingConnectorWorker would, without
    moving any data. Transfer sizes reported to vLLM are blocks times vLLM's KV bytes per
    block of the replay's KV spec (its connector stats count them)."""

    def __init__(self, latency: int, bytes_per_block: int) -> None:
        self.latency = latency
        self.bytes_per_block = bytes_per_block
        self._step = 0
        self._pending: dict[int, _Job] = {}
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.last = WorkerStep(0, 0, 0, 0, 0, 0, 0)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _start(self, job_id: int, job: _Job) -> None:
        if job_id in self.started:
            raise RuntimeError(f"offloading job {job_id} started twice")
        self.started.add(job_id)
        self._pending[job_id] = job

    def execute(self, meta: Any) -> Any:
        """The KVConnectorOutput for one scheduler output's connector metadata (None:
        nothing to report)."""
        o = import_offload()
        self._step += 1
        now = self._step
        loads = stores = 0
        flushed = 0
        if meta is not None:
            flush = set(meta.jobs_to_flush or ())
            for job_id, tj in meta.store_jobs.items():
                due = now if job_id in flush else now + self.latency
                self._start(job_id, _Job(tj.req_id, False, False,
                                         len(tj.src_spec.block_ids), due))
                stores += 1
            for job_id, tj in meta.load_jobs.items():
                due = now if tj.sync else now + self.latency
                self._start(job_id, _Job(tj.req_id, True, bool(tj.sync),
                                         len(tj.dst_spec.block_ids), due))
                loads += 1
            for job_id in flush:  # the real worker waits for these before it runs
                job = self._pending.get(job_id)
                if job is not None:
                    job.due = now
                    flushed += 1
        done = [jid for jid, job in self._pending.items() if job.due <= now]
        stats = o.TransferStats()
        completed: dict[int, int] = {}
        recving: set[str] = set()
        lf = sf = bl = bs = 0
        for jid in sorted(done):
            job = self._pending.pop(jid)
            if jid in self.finished:
                raise RuntimeError(f"offloading job {jid} reported finished twice")
            self.finished.add(jid)
            completed[jid] = 1
            nbytes = job.blocks * self.bytes_per_block
            if job.is_load:
                stats.load.record(nbytes, 0.0)
                lf += 1
                bl += job.blocks
                if not job.sync:
                    recving.add(job.req_id)
            else:
                stats.store.record(nbytes, 0.0)
                sf += 1
                bs += job.blocks
        self.last = WorkerStep(loads, stores, lf, sf, bl, bs, flushed)
        if not completed:
            return None
        return o.KVConnectorOutput(
            finished_recving=recving or None,
            kv_connector_worker_meta=o.OffloadingWorkerMetadata(
                completed_jobs=completed, transfer_stats=stats),
        )

    def unfinished(self) -> set[int]:
        return self.started - self.finished


def check_tier(built_blocks: int, expected: int, version: str) -> None:
    """vLLM's tier has the block count the sizing rule promised."""
    if built_blocks != expected:
        raise AdapterMismatch(
            f"vLLM {version}'s CPU offloading tier has {built_blocks} blocks where "
            f"prefix-tui's sizing rule expects {expected} (tested with {TESTED_VLLM_VERSION})"
        )

