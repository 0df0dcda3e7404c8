"""Records of vLLM's CPU offloading tier (serve mode): what one iteration and a whole run
did. Plain data, standard library only (like engine.model, which names them)."""

from __future__ import annotations

from dataclasses import dataclass

# TierPart.cells: one byte per CPU block (vLLM's CPUOffloadingManager chunk states).
CPU_FREE, CPU_EVICTABLE, CPU_WRITE_PENDING, CPU_LOADING = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class TierPart:
    """vLLM's CPU offloading tier at the end of one serve iteration: its manager's counts
    and what the connector's jobs did this iteration."""

    num_blocks: int  # CPU blocks (vLLM's chunks)
    stored: int  # blocks holding KV (evictable + write-pending + loading)
    evictable: int  # ref count 0: may be evicted for a new store
    write_pending: int  # a store job still in flight
    loads_started: int = 0
    stores_started: int = 0
    loads_finished: int = 0
    stores_finished: int = 0
    blocks_loaded: int = 0  # GPU blocks the finished load jobs filled
    blocks_stored: int = 0
    in_flight: int = 0  # jobs started and not yet reported finished
    cells: bytes = b""  # with detail: each CPU block's state (CPU_*)

    @property
    def loading(self) -> int:
        return self.stored - self.evictable - self.write_pending


@dataclass(frozen=True, slots=True)
class TierSummary:
    """vLLM's CPU offloading tier over a serve run. Counts from vLLM's connector stats,
    its CPU manager and its KV events; the policy and latency as configured."""

    num_blocks: int
    size_gib: float  # vLLM's kv_offloading_size
    bytes_per_block: int  # what one CPU block costs vLLM (page-rounded)
    eviction_policy: str
    latency: int  # stand-in iterations per job
    jobs_started: int = 0
    jobs_finished: int = 0
    load_jobs: int = 0
    store_jobs: int = 0
    blocks_loaded: int = 0
    blocks_stored: int = 0
    bytes_loaded: int = 0  # vLLM's kv_offload_load_bytes counter
    bytes_stored: int = 0  # vLLM's kv_offload_store_bytes counter
    cpu_stored_hashes: int = 0  # BlockStored events with medium CPU
    cpu_removed_hashes: int = 0  # BlockRemoved events with medium CPU (tier evictions)
    peak_stored: int = 0  # most CPU blocks holding KV at the end of an iteration
    peak_usage: float = 0.0  # vLLM's kv_offload_cpu_cache_usage_perc gauge, highest seen
