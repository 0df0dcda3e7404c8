"""vLLM's VllmConfig for a scheduler replay, built offline: no network, no GPU, no weights.

``ModelConfig`` needs a model: a tiny HF ``config.json`` (model_type ``llama``,
architecture ``PrefixTuiReplayModel``) is written to a private temp dir, with
``skip_tokenizer_init=True``. The architecture is registered with
``vllm.ModelRegistry.register_model`` (vLLM's out-of-tree model API) as a stub ``nn.Module``
whose methods all raise: it is never built, it only lets vLLM classify the model as a
text-generation model in-process. A built-in architecture would work too, but vLLM
inspects those in a subprocess that imports the model code (~11 s per fresh cache dir).
``DeviceConfig(device="cpu")``: without a GPU, vLLM's platform is "unspecified" and
``device="auto"`` fails. ``cache_config.num_gpu_blocks`` is set to the pool size, as the
engine core does after profiling.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from typing import Any

from engine.backends.vllm_v1.imports import V, import_vllm
from engine.errors import UserError
from engine.settings import (
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    EngineSettings,
    ServeSettings,
)

REPLAY_ARCH = "PrefixTuiReplayModel"


class _SchedSymbols:
    loaded = False
    CacheConfig: Any
    DeviceConfig: Any
    KVEventsConfig: Any
    ModelConfig: Any
    SchedulerConfig: Any
    VllmConfig: Any
    resolve_kv_cache_block_sizes: Any
    EMPTY_MODEL_RUNNER_OUTPUT: Any
    ModelRunnerOutput: Any
    StructuredOutputManager: Any
    Collector: Any


S = _SchedSymbols()
_model_dir: str | None = None


def import_scheduler(verbose: bool = False) -> _SchedSymbols:
    """vLLM's config and scheduler names, and the replay model registered (once)."""
    if S.loaded:
        return S
    import_vllm(verbose)
    from torch import nn
    from vllm import ModelRegistry
    from vllm.config import (
        CacheConfig,
        DeviceConfig,
        KVEventsConfig,
        ModelConfig,
        SchedulerConfig,
        VllmConfig,
    )
    from vllm.v1.core.kv_cache_utils import resolve_kv_cache_block_sizes
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
    from vllm.v1.structured_output import StructuredOutputManager

    class PrefixTuiReplayModel(nn.Module):
        """Stands in for a model in vLLM's registry; never built or run."""

        def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
            raise RuntimeError("prefix-tui replays the scheduler only; the model never runs")

        def embed_input_ids(self, input_ids):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

        def forward(self, input_ids, positions):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

        def compute_logits(self, hidden_states):  # noqa: ANN001, ANN201
            raise RuntimeError("never run")

    PrefixTuiReplayModel.__name__ = REPLAY_ARCH
    if REPLAY_ARCH not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(REPLAY_ARCH, PrefixTuiReplayModel)

    class _Collector(V.EventPublisher):
        """Keeps the scheduler's KV event batches in memory until taken.

        ``KVEventsConfig.publisher`` only accepts "null" (drops events) or "zmq" (opens a
        socket); the scheduler hands its events to this, vLLM's own publisher ABC."""

        def __init__(self) -> None:
            super().__init__(0)
            self.events: list = []

        def publish(self, events) -> None:  # noqa: ANN001
            self.events.extend(events.events)

        def shutdown(self) -> None:
            self.events.clear()

    S.CacheConfig, S.DeviceConfig, S.KVEventsConfig = CacheConfig, DeviceConfig, KVEventsConfig
    S.ModelConfig, S.SchedulerConfig, S.VllmConfig = ModelConfig, SchedulerConfig, VllmConfig
    S.resolve_kv_cache_block_sizes = resolve_kv_cache_block_sizes
    S.EMPTY_MODEL_RUNNER_OUTPUT = EMPTY_MODEL_RUNNER_OUTPUT
    S.ModelRunnerOutput = ModelRunnerOutput
    S.StructuredOutputManager = StructuredOutputManager
    S.Collector = _Collector
    S.loaded = True
    return S


def _replay_model_dir(max_model_len: int) -> str:
    """A directory with a tiny HF config.json: all vLLM's ModelConfig needs offline."""
    global _model_dir
    if _model_dir is None:
        _model_dir = tempfile.mkdtemp(prefix="prefix-tui-model-")
        atexit.register(shutil.rmtree, _model_dir, True)
    config = {
        "architectures": [REPLAY_ARCH],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "num_hidden_layers": 1,
        "vocab_size": 32000,
        "max_position_embeddings": max_model_len,
        "torch_dtype": "float16",
    }
    with open(f"{_model_dir}/config.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    return _model_dir


def build_vllm_config(settings: EngineSettings, serve: ServeSettings,
                      kv_cache_config: Any = None) -> Any:
    """vLLM's VllmConfig for a replay. With a CPU tier (``serve.tier``) vLLM's own
    OffloadingConnector is configured (engine.backends.vllm_v1.offload); it needs the
    ``kv_cache_config`` the scheduler gets, to size the tier."""
    s = import_scheduler()
    tier_cache, transfer = {}, None
    if serve.tier.enabled:
        from engine.backends.vllm_v1.offload import config_kwargs

        tier_cache, transfer = config_kwargs(serve.tier, kv_cache_config)
    max_model_len = settings.effective_max_model_len
    chunked = serve.enable_chunked_prefill
    seqs = serve.max_num_seqs if serve.max_num_seqs is not None else DEFAULT_MAX_NUM_SEQS
    batched = serve.max_num_batched_tokens
    # Defaults filled in as EngineArgs._set_default_max_num_seqs_and_batched_tokens_args does.
    if batched is None:
        batched = DEFAULT_MAX_NUM_BATCHED_TOKENS
        if chunked is False:  # without chunking a whole prompt must fit in one batch
            batched = max(batched, max_model_len)
        batched = min(seqs * max_model_len, batched)
    if serve.max_num_seqs is None:
        seqs = min(seqs, batched)
    sched_kwargs: dict[str, Any] = dict(
        max_model_len=max_model_len,
        is_encoder_decoder=False,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        async_scheduling=serve.async_scheduling,
    )
    if chunked is not None:
        sched_kwargs["enable_chunked_prefill"] = chunked
    try:
        model_config = s.ModelConfig(
            model=_replay_model_dir(max_model_len),
            skip_tokenizer_init=True,
            max_model_len=max_model_len,
            dtype="float16",
            seed=0,
        )
        cache_config = s.CacheConfig(
            block_size=settings.block_size,
            enable_prefix_caching=settings.enable_caching,
            prefix_caching_hash_algo=settings.hash_algo,
            num_gpu_blocks_override=settings.num_blocks,
            **tier_cache,
        )
        config = s.VllmConfig(
            model_config=model_config,
            cache_config=cache_config,
            scheduler_config=s.SchedulerConfig(**sched_kwargs),
            device_config=s.DeviceConfig(device="cpu"),
            kv_events_config=s.KVEventsConfig(
                enable_kv_cache_events=settings.kv_events, publisher="null"
            ),
            **({"kv_transfer_config": transfer} if transfer is not None else {}),
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UserError(f"vLLM rejected the serve settings: {_first_line(exc)}") from None
    # The engine core sets this after profiling GPU memory; the pool size is given here.
    config.cache_config.num_gpu_blocks = settings.num_blocks
    return config


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:3]) if lines else type(exc).__name__
