"""``--hf-config PATH``: a model's attention layers, read from a local Hugging Face
config.json the way vLLM 0.33 builds them.

The file is data, never code: it is parsed as JSON, ``auto_map`` is ignored (no class
named by a config is imported), nothing is fetched. A bad file is one line naming the file
and the field.

How each layer's attention is decided follows vLLM's model code and the transformers
config classes it reads (the defaults below are those classes' defaults):

- ``layer_types`` (transformers' per-layer list) when the config has it; otherwise the
  config class's own derivation: Gemma 3 from ``sliding_window_pattern`` (default 6:
  every 6th layer full), Cohere 2 the same (default 4), Gemma 2 and gpt-oss alternate
  (layer 0 sliding), Qwen 2/3 ``sliding_window`` only with ``use_sliding_window``, for
  layers from ``max_window_layers`` (default 28) on.
- A sliding layer gets ``sliding_window`` tokens. vLLM's Attention falls back to the
  model-wide window (``CacheConfig.sliding_window``) for a layer whose model code passes
  none, and EngineArgs sets that only when there is no ``layer_types`` or every layer is
  sliding: so a config without ``layer_types`` but with ``sliding_window`` (Mistral 7B
  v0.1) is sliding in every layer.
- gpt-oss (vllm/model_executor/models/gpt_oss.py): even layers sliding, whatever
  ``layer_types`` says. Qwen 2/3 (qwen2.py): vLLM refuses a mix of sliding and full layers.
- Llama 4 (llama4.py): layers with RoPE (``no_rope_layers[i] != 0``; default every 4th
  layer is NoPE) use chunked local attention of ``attention_chunk_size`` tokens.
- Mamba and linear-attention layers: not supported yet (one line says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.settings import AttentionKind, LayerAttention, ModelLayers

FULL_TYPES = {"full_attention", "attention", "global_attention"}
SLIDING_TYPES = {"sliding_attention"}
CHUNKED_TYPES = {"chunked_attention"}
# Layer kinds vLLM runs with a Mamba or linear-attention manager (MambaSpec and kin).
STATE_TYPES = {"linear_attention", "mamba", "mamba2", "conv", "hybrid", "ssm"}
# Hybrid families whose config names layer kinds by other fields (vLLM's ModelConfig).
STATE_FIELDS = ("layers_block_type", "attn_type_list", "hybrid_override_pattern")
# Families whose layers' KV shapes differ by layer kind (vLLM 0.33's MiMo-V2: sliding
# layers take swa_num_key_value_heads / swa_head_dim / swa_v_head_dim, chosen by
# hybrid_layer_pattern): vLLM would give their groups different block sizes (README).
MIXED_PAGE_FIELDS = ("hybrid_layer_pattern", "swa_num_key_value_heads", "swa_head_dim",
                     "swa_v_head_dim")
STATE_MODEL_TYPES = {
    "mamba", "mamba2", "jamba", "bamba", "falcon_h1", "nemotron_h", "zamba2",
    "granitemoehybrid", "minimax_m1", "minimax_text_01", "plamo2", "lfm2",
}

# model_type -> how the layer_types list is derived when the config omits it
# (transformers' config classes, which vLLM loads the config with).
_PATTERN_DEFAULT = {"gemma3": 6, "gemma3_text": 6, "cohere2": 4}
_ALTERNATING = {"gemma2", "gpt_oss"}
_QWEN = {"qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}


class _Fields:
    """Typed reads of one JSON object, failing with the file and the field."""

    def __init__(self, path: str, obj: dict[str, Any], prefix: str = "") -> None:
        self.path, self.obj, self.prefix = path, obj, prefix
        self.used: list[str] = []

    def fail(self, name: str, what: str) -> UserError:
        return UserError(f"{self.path}: field {self.prefix}{name}: {what}")

    def has(self, name: str) -> bool:
        return self.obj.get(name) is not None

    def int(self, name: str, default: int | None = None, *, minimum: int = 1) -> int | None:
        value = self.obj.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer (got {json.dumps(value)[:40]})")
        if value < minimum:
            raise self.fail(name, f"must be >= {minimum} (got {value})")
        self.used.append(self.prefix + name)
        return value

    def bool(self, name: str, default: bool) -> bool:
        value = self.obj.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false (got {json.dumps(value)[:40]})")
        self.used.append(self.prefix + name)
        return value

    def str_list(self, name: str, length: int) -> list[str] | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        if len(value) != length:
            raise self.fail(name, f"has {len(value)} entries for {length} layers "
                            "(num_hidden_layers)")
        self.used.append(self.prefix + name)
        return value

    def int_list(self, name: str, length: int) -> list[int] | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(name, "must be a list of integers")
        if len(value) != length:
            raise self.fail(name, f"has {len(value)} entries for {length} layers "
                            "(num_hidden_layers)")
        self.used.append(self.prefix + name)
        return value


def read_hf_config(path: str | Path) -> ModelLayers:
    """The model's attention layers from a local config.json (UserError on bad input)."""
    p = Path(path)
    where = str(path)
    try:
        if p.is_dir():
            p = p / "config.json"
            where = str(p)
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{where}: no such file (--hf-config wants a local config.json)"
                        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read it ({exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: a HF config.json is one JSON object")
    return layers_from_config(where, obj)


def layers_from_config(where: str, obj: dict[str, Any]) -> ModelLayers:
    top = _Fields(where, obj)
    # Multimodal configs keep the language model under text_config (vLLM reads
    # hf_config.get_text_config()).
    text = obj.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise top.fail("text_config", "must be an object")
    f = _Fields(where, text, "text_config.") if isinstance(text, dict) else top
    model_type = f.obj.get("model_type", obj.get("model_type"))
    if not isinstance(model_type, str) or not model_type:
        raise f.fail("model_type", "missing or not a string (vLLM picks the model's code by it)")
    notes: list[str] = []
    if "auto_map" in obj:
        notes.append("auto_map ignored: prefix-tui never runs code named by a config")
    for name in STATE_FIELDS:
        if f.has(name) or top.has(name):
            raise f.fail(name, "Mamba / linear-attention layers are not supported yet "
                         "(prefix-tui does not replay vLLM's MambaManager)")
    for name in MIXED_PAGE_FIELDS:
        if f.has(name):
            raise f.fail(name, "layers whose KV heads or head size differ by kind (mixed "
                         "page sizes: vLLM gives their groups different block sizes) are "
                         "not supported yet")
    if model_type in STATE_MODEL_TYPES:
        raise f.fail("model_type", f"{model_type!r} has Mamba / linear-attention layers: "
                     "not supported yet (prefix-tui does not replay vLLM's MambaManager)")
    n = f.int("num_hidden_layers")
    if n is None:
        raise f.fail("num_hidden_layers", "missing")
    heads = f.int("num_attention_heads")
    kv_heads = f.int("num_key_value_heads", heads)
    if kv_heads is None:
        raise f.fail("num_key_value_heads", "missing (and no num_attention_heads)")
    head_size = f.int("head_dim")
    if head_size is None:
        hidden = f.int("hidden_size")
        if hidden is None or heads is None:
            raise f.fail("head_dim", "missing (and no hidden_size / num_attention_heads)")
        head_size = hidden // heads
        if head_size < 1:
            raise f.fail("hidden_size", f"smaller than num_attention_heads ({heads})")
    window = f.int("sliding_window", minimum=0) or None  # vLLM reads 0 as "no window"
    if model_type in _QWEN and not f.bool("use_sliding_window", False):
        window = None
    kinds = _layer_types(f, model_type, n, window)
    layers = _layers(f, model_type, kinds, window, notes)
    max_pos = f.int("max_position_embeddings")
    hybrid = True
    if any(la.kind is AttentionKind.CHUNKED_LOCAL for la in layers):
        hybrid = False  # decided from the environment by the adapter, as vLLM does
    return ModelLayers(
        source=where, model_type=model_type, layers=tuple(layers), num_kv_heads=kv_heads,
        head_size=head_size, max_position_embeddings=max_pos,
        fields_used=tuple(dict.fromkeys(f.used + top.used)), notes=tuple(notes),
        hybrid_manager=hybrid,
    )


def _layer_types(f: _Fields, model_type: str, n: int, window: int | None) -> list[str] | None:
    """The config's layer_types, or the one its transformers config class derives."""
    given = f.str_list("layer_types", n)
    if given is not None:
        for i, t in enumerate(given):
            if t in STATE_TYPES:
                raise f.fail("layer_types", f"layer {i} is {t!r}: Mamba / linear-attention "
                             "layers are not supported yet (prefix-tui does not replay "
                             "vLLM's MambaManager)")
            if t not in FULL_TYPES | SLIDING_TYPES | CHUNKED_TYPES:
                raise f.fail("layer_types", f"layer {i}: unknown layer type {t!r}")
        return given
    if model_type in _PATTERN_DEFAULT:
        pattern = f.int("sliding_window_pattern", _PATTERN_DEFAULT[model_type])
        return ["sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(n)]
    if model_type in _ALTERNATING:
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    if model_type in _QWEN:
        first = f.int("max_window_layers", 28, minimum=0)
        return ["sliding_attention" if window is not None and i >= first else "full_attention"
                for i in range(n)]
    return None


def _layers(f: _Fields, model_type: str, kinds: list[str] | None, window: int | None,
            notes: list[str]) -> list[LayerAttention]:
    n = int(f.obj["num_hidden_layers"])
    # EngineArgs: the model-wide window only when no layer_types or all sliding.
    model_window = window if kinds is None or all(k in SLIDING_TYPES for k in kinds) else None
    if model_type.startswith("llama4"):
        chunk = f.int("attention_chunk_size", 8192)
        interval = f.int("no_rope_layer_interval", 4)
        rope = f.int_list("no_rope_layers", n, ) or [
            int((i + 1) % interval != 0) for i in range(n)]
        return [LayerAttention(AttentionKind.CHUNKED_LOCAL, chunk) if rope[i] and chunk
                else LayerAttention() for i in range(n)]
    if model_type in _QWEN and kinds is not None and len(set(kinds)) > 1:
        raise f.fail("max_window_layers", "vLLM 0.33 refuses Qwen configs with sliding "
                     "window on some layers but not all (qwen2.py)")
    out: list[LayerAttention] = []
    for i in range(n):
        if model_type == "gpt_oss":
            per_layer = window if i % 2 == 0 else None  # gpt_oss.py ignores layer_types
        elif model_type in _QWEN:
            per_layer = None  # qwen2.py passes no per-layer window
        else:
            sliding = kinds is not None and kinds[i] in SLIDING_TYPES
            per_layer = window if sliding else None
            if sliding and window is None:
                raise f.fail("sliding_window", f"layer {i} is sliding_attention but the "
                             "config gives no window")
        w = per_layer if per_layer is not None else model_window
        out.append(LayerAttention(AttentionKind.SLIDING_WINDOW, w) if w else LayerAttention())
    if kinds is None and model_window:
        notes.append(f"no layer_types: every layer slides ({model_window} tokens), as vLLM's "
                     "model-wide sliding_window")
    return out


def describe_layers(model: ModelLayers) -> str:
    """"24 layers: 12 sliding window (128), 12 full": for the report and errors."""
    counts: dict[str, int] = {}
    for la in model.layers:
        if la.kind is AttentionKind.SLIDING_WINDOW:
            key = f"sliding window ({la.window})"
        elif la.kind is AttentionKind.CHUNKED_LOCAL:
            key = f"chunked local ({la.window})"
        else:
            key = "full"
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"{len(model.layers)} layers: {parts}"
