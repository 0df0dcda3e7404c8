"""Serve mode's CPU offloading flags (vLLM's native KV offloading tier): vLLM's own names
where it has them (--kv-offloading-size, --kv-offloading-backend), prefix-tui's for the
rest. Plain argparse, no vLLM import."""

from __future__ import annotations

import argparse

from engine.settings import CPU_EVICTION_POLICIES, MAX_OFFLOAD_LATENCY, OFFLOADING_BACKENDS, TierSettings

TIER_FLAGS = {  # dest -> the flag as typed (serve-only: warned about elsewhere)
    "kv_offloading_size": "--kv-offloading-size",
    "num_cpu_blocks": "--num-cpu-blocks",
    "kv_offloading_backend": "--kv-offloading-backend",
    "cpu_eviction_policy": "--cpu-eviction-policy",
    "offload_latency": "--offload-latency",
}


def add_tier_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--kv-offloading-size", type=float, default=None, metavar="GIB",
        help="serve: vLLM's CPU offloading tier of this many GiB (0: none); vLLM gives it "
             "GiB*2^30 // (KV bytes a block, rounded up to the memory page) blocks",
    )
    group.add_argument(
        "--num-cpu-blocks", type=int, default=None, metavar="N",
        help="serve: a CPU offloading tier of exactly N blocks (0: none), turned into "
             "vLLM's --kv-offloading-size by that rule",
    )
    group.add_argument(
        "--kv-offloading-backend", choices=OFFLOADING_BACKENDS, default=None,
        help="serve: vLLM's offloading backend (native: its OffloadingConnector)",
    )
    group.add_argument(
        "--cpu-eviction-policy", choices=CPU_EVICTION_POLICIES, default=None,
        help="serve: the CPU tier's eviction policy, vLLM's (default lru)",
    )
    group.add_argument(
        "--offload-latency", type=int, default=None, metavar="K",
        help=f"serve: iterations before a load or store job is reported finished "
             f"(0..{MAX_OFFLOAD_LATENCY}; default 0: in the update that follows)",
    )


def tier_from_args(args: argparse.Namespace) -> TierSettings:
    tier = TierSettings(
        kv_offloading_size=getattr(args, "kv_offloading_size", None),
        num_cpu_blocks=getattr(args, "num_cpu_blocks", None),
        backend=getattr(args, "kv_offloading_backend", None) or "native",
        eviction_policy=getattr(args, "cpu_eviction_policy", None) or "lru",
        latency=getattr(args, "offload_latency", None) or 0,
    )
    tier.validate()
    return tier
