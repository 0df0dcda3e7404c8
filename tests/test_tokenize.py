"""The default GPT-2 tokenizer, the HF fallback, and the chat template's prefix property."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.trace.tokenize import load_tokenizer, messages_text, render_messages, render_reply

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_default_is_gpt2(tok):
    assert tok.name == "gpt2"
    assert tok.vocab_size == 50257
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("") == []  # no special tokens added
    assert load_tokenizer() is tok  # cached


def test_decode_round_trip_and_out_of_vocab(tok):
    text = "héllo wörld 🙂\n  tabs\tand <|endoftext|>"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([15496, 123456, 995, 50257]) == "Hello<id:123456> world<id:50257>"
    assert tok.decode([]) == ""


def test_template_hand_worked(tok):
    msgs = [{"role": "user", "content": "Hi there"}]
    # "user" ":" " Hi" " there" "\n" "ass" "istant" ":"
    assert render_messages(tok, msgs) == [7220, 25, 15902, 612, 198, 562, 10167, 25]
    assert render_messages(tok, msgs, add_generation_prompt=False) == [7220, 25, 15902, 612, 198]
    assert render_reply(tok, "Hi") == [15902, 198]
    assert messages_text(msgs) == "user: Hi there\nassistant:"
    assert tok.decode(render_messages(tok, msgs)) == messages_text(msgs)


def test_prompt_plus_reply_is_prefix_of_next_turn(tok):
    # Contents chosen to tempt BPE into merging across boundaries (trailing spaces, newlines).
    users = ["Hi ", "what about\n\nthis?", "ok  "]
    replies = ["Hello!\n", " sure", "x"]
    history: list[dict] = [{"role": "system", "content": "Be brief."}]
    prompts, outputs = [], []
    for u, r in zip(users, replies):
        history = history + [{"role": "user", "content": u}]
        prompts.append(render_messages(tok, history))
        outputs.append(render_reply(tok, r))
        history = history + [{"role": "assistant", "content": r}]
    for k in range(len(users) - 1):
        done = prompts[k] + outputs[k]
        assert prompts[k + 1][: len(done)] == done
        assert len(prompts[k + 1]) > len(done)


def test_missing_hf_tokenizer_is_one_line_user_error():
    with pytest.raises(UserError) as ei:
        load_tokenizer("no-such-org/no-such-model")
    assert str(ei.value) == (
        "tokenizer 'no-such-org/no-such-model' is neither a local directory nor in the local "
        "Hugging Face cache (prefix-tui never downloads)"
    )


def test_local_hf_tokenizer_directory(tmp_path, tok):
    # Build a transformers-loadable directory from the same GPT-2 files.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from engine.trace.tokenize import _gpt2_files

    hf = Tokenizer(models.BPE.from_file(*_gpt2_files()))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    local = load_tokenizer(str(tmp_path))
    assert local.name == str(tmp_path)
    assert local.vocab_size == 50257
    assert local.encode("Hello world") == [15496, 995]
    assert local.decode([15496, 99999]) == "Hello<id:99999>"


def test_a_bpe_pair_directory_is_gpt2_style_bpe(tmp_path):
    # Hand-worked: bytes a, b and the merge "a b"; byte-level, so " " is "Ġ".
    (tmp_path / "encoder.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2, "Ġ": 3}))
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n")
    t = load_tokenizer(str(tmp_path))
    assert (t.vocab_size, t.encode("abab a"), t.decode([2, 3, 0, 9])) == (4, [2, 2, 3, 0], "ab a<id:9>")


def test_gpt2_release_files_load_as_the_default_does(tok):
    """OpenAI's GPT-2 encoder.json + vocab.bpe (what the default is built from)."""
    from tests.conftest import shared

    gpt2 = load_tokenizer(str(shared("tokenizers", "gpt2")))
    assert gpt2.vocab_size == tok.vocab_size == 50257
    text = "Hello world: prefix caching, again and again.\n"
    assert gpt2.encode(text) == tok.encode(text) and gpt2.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("files, expected", [
    ({"README": "x"}, "found README; expected a Hugging Face tokenizer directory"),
    ({"tokenizer.json": "{not json"}, "cannot load tokenizer from"),
    ({"encoder.json": "[1]", "vocab.bpe": "#version: 0.2\n"}, "cannot load the BPE pair"),
])
def test_every_tokenizer_failure_is_one_complete_line(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as ei:
        load_tokenizer(str(tmp_path))
    msg = str(ei.value)
    assert expected in msg and "\n" not in msg and not msg.rstrip().endswith(":")
    assert len(msg.split(": ", 2)[-1]) > 10  # says what went wrong, not just where


def test_engine_imports_nothing_heavy():
    code = (
        "import sys, engine.trace.tokenize, engine.trace.reader, engine.trace.mooncake, engine.trace.generate\n"
        "heavy = {'tokenizers', 'transformers', 'torch', 'vllm', 'textual', 'rich'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
