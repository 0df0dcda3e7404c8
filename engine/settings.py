"""What a replay is configured with: the block manager, serve mode's scheduler, the KV layout.

Plain data, standard library only, Python 3.10 syntax: a V0 worker running under an older
vLLM in its own interpreter imports this module too. Validation raises UserError (one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from engine.errors import UserError

HASH_ALGOS = ("sha256", "sha256_cbor", "xxhash", "xxhash_cbor")  # vLLM's PrefixCachingHashAlgo
DEFAULT_HASH_ALGO = "sha256"  # vLLM's CacheConfig default

# `vllm serve`'s batch defaults for a GPU it does not class as H100-sized
# (EngineArgs.get_batch_defaults, UsageContext.OPENAI_API_SERVER). vLLM picks larger ones
# on H100/H200/B200 hosts; a replay should not depend on the machine it runs on.
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
DEFAULT_ITERATION_TIME_S = 0.02


class AttentionKind(str, Enum):
    """The kind of one KV cache group (vLLM's KVCacheSpec subclasses)."""

    FULL = "full"
    SLIDING_WINDOW = "sliding_window"
    CHUNKED_LOCAL = "chunked_local"  # vLLM's ChunkedLocalAttentionSpec (Llama 4)


@dataclass(frozen=True)
class LayerAttention:
    """One attention layer as vLLM's model code builds it from a HF config (the kind and
    window its Attention layer gets); engine.hf_config reads these from config.json."""

    kind: AttentionKind = AttentionKind.FULL
    window: int | None = None  # tokens: the sliding window, or the attention chunk size


@dataclass(frozen=True)
class ModelLayers:
    """A model's attention layers, read from a local HF config.json (``--hf-config``).
    vLLM's own grouping functions turn these into KV cache groups (the adapter)."""

    source: str  # the config file, for messages and the report
    model_type: str
    layers: tuple[LayerAttention, ...]
    num_kv_heads: int
    head_size: int
    max_position_embeddings: int | None = None
    # The config fields the layer kinds were read from, named in the report.
    fields_used: tuple[str, ...] = ()
    # What vLLM decides from the config beyond the layers (one line each, shown as is).
    notes: tuple[str, ...] = ()
    # vLLM turns its hybrid KV cache manager off for chunked local attention unless
    # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1 (VllmConfig.__post_init__).
    hybrid_manager: bool = True


@dataclass(frozen=True)
class KVGroup:
    """One KV cache group: layers that share a block table (vLLM's KVCacheGroupSpec)."""

    kind: AttentionKind = AttentionKind.FULL
    sliding_window: int | None = None  # tokens, for SLIDING_WINDOW
    layer_names: tuple[str, ...] = ("layer.0",)


@dataclass(frozen=True)
class KVLayout:
    """The model's KV cache groups. Without ``model`` one full-attention group built by
    hand (the default, and V0's only layout); with ``model`` (``--hf-config``) vLLM's own
    grouping functions build the groups from the model's layers."""

    groups: tuple[KVGroup, ...] = (KVGroup(),)
    model: ModelLayers | None = None

    @property
    def from_model(self) -> bool:
        return self.model is not None

    def validate(self) -> None:
        if not self.groups:
            raise UserError("a KV layout needs at least one KV cache group")
        for i, g in enumerate(self.groups):
            if g.kind is AttentionKind.SLIDING_WINDOW and not (g.sliding_window or 0) > 0:
                raise UserError(f"KV cache group {i}: a sliding window needs a window > 0")


@dataclass(frozen=True)
class EngineSettings:
    """vLLM's block manager, named after vLLM's own flags."""

    block_size: int = 16
    num_blocks: int = 10000
    max_model_len: int | None = None  # None: bounded only by the pool
    enable_caching: bool = True
    hash_algo: str = DEFAULT_HASH_ALGO
    kv_events: bool = True
    layout: KVLayout = field(default_factory=KVLayout)
    null_block: bool = True  # vLLM V1 reserves block 0; V0 has no null block

    @property
    def effective_max_model_len(self) -> int:
        if self.max_model_len is not None:
            return self.max_model_len
        # What vLLM's start-up check lets through: every block but the null block.
        return self.block_size * (self.num_blocks - self.null_block)

    def validate(self) -> None:
        if self.block_size < 1:
            raise UserError(f"--block-size must be >= 1 (got {self.block_size})")
        if self.num_blocks < 2:
            # vLLM keeps block 0 as its null block; one more is the least that can hold a token.
            raise UserError(f"--num-gpu-blocks-override must be >= 2 (got {self.num_blocks})")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise UserError(f"--max-model-len must be >= 1 (got {self.max_model_len})")
        if self.hash_algo not in HASH_ALGOS:
            raise UserError(
                f"--prefix-caching-hash-algo must be one of {', '.join(HASH_ALGOS)} "
                f"(got {self.hash_algo!r})"
            )
        self.layout.validate()


V0_CALL_ORDERS = ("scheduler", "experiment")
DEFAULT_V0_WATERMARK = 0.01  # SelfAttnBlockSpaceManager's default, which V0's Scheduler keeps
DEFAULT_V0_HASH_SEED = 0


@dataclass(frozen=True)
class V0Settings:
    """vLLM V0 (0.10.1.1, in .venv-legacy): how the block manager is driven.

    ``call_order``: "scheduler" makes the calls V0's Scheduler makes for a prefill and its
    decode steps (get_num_cached_tokens, can_allocate, allocate, access_all_blocks_in_seq,
    get_common_computed_block_ids, mark_blocks_as_computed, append_slots, free);
    "experiment" the original experiment's allocate -> get_num_cached_tokens -> free.
    ``hash_seed``: PYTHONHASHSEED of the worker. V0 hashes blocks with Python's hash(),
    seeded by hash('None'), so a fixed seed makes every run give the same hashes.
    """

    call_order: str = "scheduler"
    watermark: float = DEFAULT_V0_WATERMARK
    hash_seed: int = DEFAULT_V0_HASH_SEED

    def validate(self) -> None:
        if self.call_order not in V0_CALL_ORDERS:
            raise UserError(f"--v0-call-order must be one of {', '.join(V0_CALL_ORDERS)} "
                            f"(got {self.call_order!r})")
        if not 0.0 <= self.watermark < 1.0:
            raise UserError(f"--v0-watermark must be in [0, 1) (got {self.watermark})")
        if not 0 <= self.hash_seed <= 4294967295:
            raise UserError(f"--v0-hash-seed must be in 0..4294967295 (got {self.hash_seed})")


OFFLOADING_BACKENDS = ("native",)  # vLLM's kv_offloading_backend values prefix-tui replays
CPU_EVICTION_POLICIES = ("lru", "arc")  # vLLM's CPU offloading CachePolicy names
MAX_OFFLOAD_LATENCY = 100  # iterations: a stand-in job is reported finished within this


@dataclass(frozen=True)
class TierSettings:
    """vLLM's native CPU KV offloading tier (serve mode). Off unless a size is given.

    ``num_cpu_blocks`` is an exact CPU block count, turned into vLLM's
    ``kv_offloading_size`` by the adapter (vLLM sizes the tier in GiB and rounds each
    block up to the memory page). ``latency``: scheduler iterations after which the
    stand-in worker reports a load or store job finished (0: in the update that follows
    the iteration that started it)."""

    kv_offloading_size: float | None = None  # GiB, vLLM's --kv-offloading-size
    num_cpu_blocks: int | None = None
    backend: str = "native"
    eviction_policy: str = "lru"
    latency: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.kv_offloading_size) or bool(self.num_cpu_blocks)

    def validate(self) -> None:
        if self.kv_offloading_size is not None and self.num_cpu_blocks is not None:
            raise UserError("give --kv-offloading-size or --num-cpu-blocks, not both")
        if self.kv_offloading_size is not None and not self.kv_offloading_size >= 0:
            raise UserError(
                f"--kv-offloading-size must be >= 0 GiB (got {self.kv_offloading_size})")
        if self.num_cpu_blocks is not None and self.num_cpu_blocks < 0:
            raise UserError(f"--num-cpu-blocks must be >= 0 (got {self.num_cpu_blocks})")
        if self.backend not in OFFLOADING_BACKENDS:
            raise UserError(f"--kv-offloading-backend must be one of "
                            f"{', '.join(OFFLOADING_BACKENDS)} (got {self.backend!r})")
        if self.eviction_policy not in CPU_EVICTION_POLICIES:
            raise UserError(f"--cpu-eviction-policy must be one of "
                            f"{', '.join(CPU_EVICTION_POLICIES)} (got {self.eviction_policy!r})")
        if not 0 <= self.latency <= MAX_OFFLOAD_LATENCY:
            raise UserError(f"--offload-latency must be in 0..{MAX_OFFLOAD_LATENCY} "
                            f"(got {self.latency})")


@dataclass(frozen=True)
class ServeSettings:
    """vLLM's scheduler knobs (None: as vLLM) and the simulated clock."""

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool | None = None  # None: vLLM's default (on)
    async_scheduling: bool | None = None  # None: as vLLM resolves it (AsyncScheduler)
    iteration_time_s: float = DEFAULT_ITERATION_TIME_S  # simulated time per model step
    # A conversation's next turn is sent when its previous one finished, plus the trace's
    # gap between them (or think_time_s): engine/replay/arrivals.py.
    closed_loop: bool = False
    think_time_s: float | None = None
    tier: TierSettings = field(default_factory=TierSettings)  # vLLM's CPU offloading

    def validate(self) -> None:
        self.tier.validate()
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        if self.think_time_s is not None and not (self.think_time_s >= 0 and self.closed_loop):
            raise UserError("--think-time needs --closed-loop and a value >= 0 "
                            f"(got {self.think_time_s})")
        if not self.iteration_time_s > 0:
            raise UserError(
                f"the simulated iteration time must be > 0 (got {self.iteration_time_s})"
            )


def serve_max_model_len(settings: EngineSettings) -> int:
    """vLLM refuses to start when one max-length sequence cannot fit in the pool (block 0
    is the null block), so serve mode caps the default there."""
    if settings.max_model_len is not None:
        return settings.max_model_len
    return settings.block_size * (settings.num_blocks - 1)
