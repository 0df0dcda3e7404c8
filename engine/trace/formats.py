"""The trace formats prefix-tui reads, in the order auto-detection tries them.

A format is told from the first request line: Qwen-Bailian has ``hash_ids`` and
``chat_id``; Mooncake ``hash_ids``; an OpenAI request log ``body`` (a wrapped request) or
``model``; anything else is native. ``--trace-format NAME`` skips the guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import UserError
from engine.model import TraceRequest
from engine.trace import bailian, mooncake, native
from engine.trace.bailian import BailianParser
from engine.trace.context import ParseContext
from engine.trace.mooncake import MooncakeParser
from engine.trace.native import NativeParser
from engine.trace.openai_log import OpenAILogParser

AUTO = "auto"


class LineParser(Protocol):
    def parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest: ...


@dataclass(frozen=True)
class TraceFormat:
    name: str  # as --trace-format takes it
    title: str  # as messages and the README name it
    detect: Callable[[dict[str, Any]], bool]
    parser: Callable[[ParseContext], LineParser]
    # Fields it reads; in a tolerant (production) format others are ignored, and counted.
    fields: frozenset[str] | None = None
    default_block_size: int | None = None  # for hash-id formats: tokens per hash id
    strict: bool = False  # unknown fields are errors (only native: typos must not pass)


FORMATS: dict[str, TraceFormat] = {f.name: f for f in (
    TraceFormat("bailian", "Qwen-Bailian", lambda o: "hash_ids" in o and "chat_id" in o, BailianParser,
                frozenset(bailian.REQUIRED + bailian.OPTIONAL), bailian.DEFAULT_BLOCK_SIZE),
    TraceFormat("mooncake", "Mooncake", lambda o: "hash_ids" in o, MooncakeParser,
                frozenset(mooncake.FIELDS), mooncake.DEFAULT_BLOCK_SIZE),
    TraceFormat("openai", "OpenAI request log", lambda o: "body" in o or "model" in o, OpenAILogParser),
    TraceFormat("native", "native", lambda o: True, NativeParser, native.FIELDS, strict=True),
)}
NAMES = (AUTO, *FORMATS)


def lookup(name: str) -> TraceFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise UserError(f"--trace-format: unknown format {name!r} (have: {', '.join(NAMES)})") from None


def detect(obj: dict[str, Any]) -> TraceFormat:
    return next(f for f in FORMATS.values() if f.detect(obj))
