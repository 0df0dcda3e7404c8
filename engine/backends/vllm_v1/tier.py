"""The CPU offloading tier of one serve replay: vLLM's connector and CPU manager, read
through internals, and the stand-in worker that answers the connector's jobs
(engine.backends.vllm_v1.offload)."""

from __future__ import annotations

from typing import Any

from engine.backends.vllm_v1.imports import TESTED_VLLM_VERSION
from engine.backends.vllm_v1.internals import TierInternals, check_tier, ensure
from engine.backends.vllm_v1.offload import (
    StandInWorker,
    check_tier as check_tier_size,
    cpu_bytes_per_block,
    expected_cpu_blocks,
    kv_bytes_per_block,
    offloading_size_gib,
)
from engine.tier_records import TierPart, TierSummary
from engine.settings import TierSettings

# vLLM's metric names (OffloadingConnectorStats keys, CPUOffloadingMetrics).
LOAD_BYTES = "vllm:kv_offload_load_bytes"
STORE_BYTES = "vllm:kv_offload_store_bytes"
CPU_USAGE = "vllm:kv_offload_cpu_cache_usage_perc"
CPU_MEDIUM = "CPU"


class CpuTier:
    def __init__(self, scheduler: Any, tier: TierSettings, kv_cache_config: Any,
                 version: str) -> None:
        self.settings = tier
        self._sched = scheduler
        ensure(check_tier(scheduler), "CPU offloading tier", version, TESTED_VLLM_VERSION)
        self.manager = TierInternals.cpu_manager(scheduler)
        self.num_blocks = TierInternals.state(self.manager).num_blocks
        check_tier_size(self.num_blocks, expected_cpu_blocks(tier, kv_cache_config), version)
        self.size_gib = offloading_size_gib(tier, kv_cache_config) or 0.0
        self.bytes_per_block = cpu_bytes_per_block(kv_cache_config)
        self.worker = StandInWorker(tier.latency, kv_bytes_per_block(kv_cache_config))
        self.bytes_loaded = self.bytes_stored = 0
        self.peak_usage = 0.0
        self.peak_stored = 0
        self.cpu_stored_hashes = self.cpu_removed_hashes = 0
        self.load_jobs = self.store_jobs = 0
        self.blocks_loaded = self.blocks_stored = 0

    # -- per iteration ----------------------------------------------------------------------
    def worker_output(self, scheduler_output: Any) -> Any:
        out = self.worker.execute(scheduler_output.kv_connector_metadata)
        last = self.worker.last
        self.load_jobs += last.loads_started
        self.store_jobs += last.stores_started
        self.blocks_loaded += last.blocks_loaded
        self.blocks_stored += last.blocks_stored
        return out

    @staticmethod
    def async_load_blocks(scheduler_output: Any) -> dict[str, tuple[tuple[int, ...], ...]]:
        """GPU blocks each load job of this schedule() fills, per request (one KV cache
        group): newly allocated, though an async load's request is not scheduled yet."""
        meta = scheduler_output.kv_connector_metadata
        out: dict[str, tuple[tuple[int, ...], ...]] = {}
        for job in (meta.load_jobs.values() if meta is not None else ()):
            out[job.req_id] = (tuple(int(b) for b in job.dst_spec.block_ids),)
        return out

    def gpu_events(self, raw: list) -> list:
        """The GPU pool's KV events; counts the CPU tier's (medium "CPU") on the way."""
        gpu = []
        for ev in raw:
            if getattr(ev, "medium", None) == CPU_MEDIUM:
                n = len(ev.block_hashes) if hasattr(ev, "block_hashes") else 0
                if hasattr(ev, "token_ids"):
                    self.cpu_stored_hashes += n
                else:
                    self.cpu_removed_hashes += n
            else:
                gpu.append(ev)
        return gpu

    def observe_stats(self, payload: Any) -> None:
        """vLLM's kv_connector_stats of one update: OffloadingConnectorStats.to_dict(),
        ``{"data": {metric: {label values: value}}}``."""
        data = payload.get("data") if isinstance(payload, dict) else None
        if not data:
            return
        self.bytes_loaded += int(sum(data.get(LOAD_BYTES, {}).values()))
        self.bytes_stored += int(sum(data.get(STORE_BYTES, {}).values()))
        usage = data.get(CPU_USAGE)
        if usage:
            self.peak_usage = max(self.peak_usage, *map(float, usage.values()))

    def part(self, detail: bool) -> TierPart:
        st = TierInternals.state(self.manager)
        self.peak_stored = max(self.peak_stored, st.stored)
        last = self.worker.last
        return TierPart(
            num_blocks=st.num_blocks, stored=st.stored, evictable=st.evictable,
            write_pending=st.write_pending,
            loads_started=last.loads_started, stores_started=last.stores_started,
            loads_finished=last.loads_finished, stores_finished=last.stores_finished,
            blocks_loaded=last.blocks_loaded, blocks_stored=last.blocks_stored,
            in_flight=self.worker.in_flight,
            cells=TierInternals.chunk_codes(self.manager) if detail else b"",
        )

    def summary(self) -> TierSummary:
        return TierSummary(
            num_blocks=self.num_blocks, size_gib=self.size_gib,
            bytes_per_block=self.bytes_per_block,
            eviction_policy=self.settings.eviction_policy, latency=self.settings.latency,
            jobs_started=len(self.worker.started), jobs_finished=len(self.worker.finished),
            load_jobs=self.load_jobs, store_jobs=self.store_jobs,
            blocks_loaded=self.blocks_loaded, blocks_stored=self.blocks_stored,
            bytes_loaded=self.bytes_loaded, bytes_stored=self.bytes_stored,
            cpu_stored_hashes=self.cpu_stored_hashes,
            cpu_removed_hashes=self.cpu_removed_hashes,
            peak_stored=self.peak_stored, peak_usage=self.peak_usage,
        )

