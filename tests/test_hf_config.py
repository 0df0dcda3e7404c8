"""--hf-config: a model's layers from a local config.json, as vLLM 0.33 builds them; bad
files are one line naming the file and the field. No vLLM here (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.hf_config import layers_from_config, read_hf_config
from engine.settings import AttentionKind
from tests.conftest import ROOT

CONFIGS = ROOT / "traces" / "configs"
S, F = AttentionKind.SLIDING_WINDOW, AttentionKind.FULL


def kinds(model) -> list[tuple[AttentionKind, int | None]]:
    return [(la.kind, la.window) for la in model.layers]


def test_bundled_full_attention_config():
    m = read_hf_config(CONFIGS / "full-attention-llama.json")
    assert kinds(m) == [(F, None)] * 16
    assert (m.num_kv_heads, m.head_size) == (8, 64)


def test_bundled_gpt_oss_like_config_alternates_from_a_sliding_layer_0():
    m = read_hf_config(CONFIGS / "sliding-1to1-gpt-oss.json")
    assert kinds(m) == [(S, 128), (F, None)] * 12


def test_bundled_gemma3_like_config_is_five_sliding_to_one_full():
    m = read_hf_config(CONFIGS / "sliding-5to1-gemma3.json")
    assert kinds(m) == ([(S, 1024)] * 5 + [(F, None)]) * 2
    assert "sliding_window_pattern" in m.fields_used


def test_gpt_oss_follows_vllm_even_layers_not_layer_types():
    # vllm/model_executor/models/gpt_oss.py: sliding iff layer_idx % 2 == 0.
    cfg = {"model_type": "gpt_oss", "num_hidden_layers": 4, "num_attention_heads": 2,
           "head_dim": 8, "sliding_window": 16, "layer_types": ["full_attention"] * 4}
    assert kinds(layers_from_config("c.json", cfg)) == [(S, 16), (F, None)] * 2


def test_no_layer_types_with_a_window_slides_every_layer():
    # Mistral 7B v0.1: vLLM's model-wide sliding_window (CacheConfig.sliding_window).
    cfg = {"model_type": "mistral", "num_hidden_layers": 3, "num_attention_heads": 4,
           "hidden_size": 64, "sliding_window": 4096}
    m = layers_from_config("c.json", cfg)
    assert kinds(m) == [(S, 4096)] * 3 and m.notes


def test_qwen_window_needs_use_sliding_window_and_vllm_refuses_a_mix():
    base = {"model_type": "qwen2", "num_hidden_layers": 4, "num_attention_heads": 2,
            "head_dim": 8, "sliding_window": 32, "max_window_layers": 2}
    assert kinds(layers_from_config("c.json", base)) == [(F, None)] * 4
    with pytest.raises(UserError, match=r"c\.json: field max_window_layers: vLLM 0\.33 refuses"):
        layers_from_config("c.json", {**base, "use_sliding_window": True})
    every = {**base, "use_sliding_window": True, "max_window_layers": 0}
    assert kinds(layers_from_config("c.json", every)) == [(S, 32)] * 4


def test_llama4_rope_layers_use_chunked_local_attention():
    cfg = {"model_type": "llama4_text", "num_hidden_layers": 4, "num_attention_heads": 2,
           "head_dim": 8, "attention_chunk_size": 64}
    m = layers_from_config("c.json", cfg)
    assert kinds(m) == [(AttentionKind.CHUNKED_LOCAL, 64)] * 3 + [(F, None)]
    assert m.hybrid_manager is False  # vLLM turns its hybrid manager off for these


@pytest.mark.parametrize("model_type,fields", [
    ("gemma3_text", {"sliding_window_pattern": 3}),
    ("gemma3_text", {}),
    ("gemma2", {}),
    ("cohere2", {}),
    ("qwen2", {"use_sliding_window": True, "max_window_layers": 0}),
])
def test_derived_layer_types_match_transformers_config_classes(model_type, fields):
    """vLLM reads layer_types as transformers' config class derives it from the file."""
    from transformers import AutoConfig

    cfg = {"model_type": model_type, "num_hidden_layers": 12, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "hidden_size": 64,
           "sliding_window": 256, **fields}
    theirs = AutoConfig.for_model(**cfg)
    window = theirs.sliding_window
    expected = [(S, window) if t == "sliding_attention" else (F, None)
                for t in theirs.layer_types]
    assert kinds(layers_from_config("c.json", cfg)) == expected


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.json"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 2,
        "head_dim": 8}


@pytest.mark.parametrize("text,message", [
    ("{not json", r"config\.json:1: not valid JSON"),
    ("[1, 2]", r"config\.json: a HF config\.json is one JSON object"),
    (json.dumps({**GOOD, "num_hidden_layers": "2"}),
     r"config\.json: field num_hidden_layers: must be an integer"),
    (json.dumps({**GOOD, "sliding_window": -4}), r"field sliding_window: must be >= 0"),
    (json.dumps({**GOOD, "layer_types": ["full_attention"]}),
     r"field layer_types: has 1 entries for 2 layers"),
    (json.dumps({**GOOD, "layer_types": ["full_attention", "banana"]}),
     r"field layer_types: layer 1: unknown layer type 'banana'"),
    (json.dumps({**GOOD, "layer_types": ["full_attention", "linear_attention"]}),
     r"field layer_types: layer 1 is 'linear_attention': .*not supported yet"),
    (json.dumps({**GOOD, "model_type": "jamba"}), r"field model_type: .*not supported yet"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "model_type"}),
     r"field model_type: missing"),
    (json.dumps({**GOOD, "text_config": 3}), r"field text_config: must be an object"),
    (json.dumps({**GOOD, "layer_types": ["sliding_attention", "full_attention"]}),
     r"field sliding_window: layer 0 is sliding_attention but the config gives no window"),
])
def test_malformed_config_is_one_line_naming_file_and_field(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as info:
        read_hf_config(write(tmp_path, text))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_missing_file_and_a_folder_holding_config_json(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_hf_config(tmp_path / "nope.json")
    write(tmp_path, json.dumps(GOOD))
    assert len(read_hf_config(tmp_path).layers) == 2


def test_auto_map_is_ignored_never_imported(tmp_path):
    cfg = {**GOOD, "auto_map": {"AutoConfig": "evil.EvilConfig"}}
    m = read_hf_config(write(tmp_path, json.dumps(cfg)))
    assert any("auto_map ignored" in n for n in m.notes)


def test_multimodal_config_reads_its_text_config(tmp_path):
    cfg = {"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "num_hidden_layers": 6, "num_attention_heads": 2,
        "head_dim": 8, "sliding_window": 64}}
    m = read_hf_config(write(tmp_path, json.dumps(cfg)))
    assert kinds(m) == [(S, 64)] * 5 + [(F, None)]
    assert "text_config.num_hidden_layers" in m.fields_used
