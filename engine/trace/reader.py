"""Lazy, line-by-line reading of trace files into TraceRequests.

The format (engine.trace.formats: native, Mooncake, Qwen-Bailian, OpenAI request log) is
told by the first non-blank line unless given; a gzip or zstd file is decompressed as it is
read (engine.trace.opener). Any problem is a TraceError ``path:line: message``; the file is
never loaded whole.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import TraceError
from engine.model import TraceRequest
from engine.trace import formats
from engine.trace.chat import SIMPLE, load_chat_template
from engine.trace.context import ParseContext
from engine.trace.fields import TEXT_LIMIT, check_cache_salt, type_name  # noqa: F401 - re-exported
from engine.trace.opener import OpenedTrace, open_trace
from engine.trace.tokenize import Tokenizer, load_tokenizer

_BOM = b"\xef\xbb\xbf"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    pass


def _array_hint(text: str) -> str:
    """A common wrong format: a JSON array of requests, or one split over lines."""
    if not text.lstrip().startswith("["):
        return ""
    return "; this looks like a JSON array: prefix-tui reads JSON Lines, one JSON object a line"


def _csv_hint(text: str) -> str:
    """Another: a CSV file (its header line is not JSON)."""
    if text.startswith(("{", "[", '"')) or text.count(",") < 2:
        return ""
    return "; this looks like CSV: prefix-tui reads JSON Lines, one JSON object a line"


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(f"duplicate field {k!r}")
            seen.add(k)
    return obj


@dataclass(frozen=True)
class TraceSource:
    """A trace file and how to read it (the CLI's trace flags): one value the report, the
    inspector and its feed pass along instead of arguments each."""

    path: str
    tokenizer_name: str | None = None
    trace_block_size: int | None = None  # None: the format's default (Mooncake 512, Qwen-Bailian 16)
    max_requests: int | None = None
    trace_format: str = formats.AUTO
    lora_names: tuple[str, ...] = ()
    chat_template: str | None = None  # None: simple

    def reader(self, cancel: threading.Event | None = None) -> TraceReader:
        return TraceReader(self.path, tokenizer_name=self.tokenizer_name,
                           trace_block_size=self.trace_block_size, cancel=cancel,
                           max_requests=self.max_requests, trace_format=self.trace_format,
                           lora_names=self.lora_names, chat_template=self.chat_template)


class TraceReader:
    """Iterate a trace file as TraceRequests, lazily; re-iterable (each pass rereads).

    Construction opens the file and reads up to its first non-blank line, to set ``format``
    (a name of engine.trace.formats) and the trace block size; a missing, unreadable or
    empty file fails here. ``bytes_read`` / ``total_bytes`` show progress (on disk: the
    compressed bytes of a compressed file); setting ``cancel`` stops the iteration at the
    next line. ``ignored_fields``: fields a production format does not use, each with the
    first line it was on (they are not typos there).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tokenizer_name: str | None = None,
        trace_block_size: int | None = None,
        cancel: threading.Event | None = None,
        max_requests: int | None = None,
        trace_format: str = formats.AUTO,
        lora_names: tuple[str, ...] | frozenset[str] = (),
        chat_template: str | None = None,
    ) -> None:
        """``max_requests``: read only the first N requests (None: all);
        ``trace_block_size``: tokens per hash id (None: the format's default);
        ``chat_template``: simple (None), tokenizer, or a .jinja file (engine.trace.chat)."""
        self.path = str(path)
        if trace_block_size is not None and (type(trace_block_size) is not int or trace_block_size < 1):
            raise TraceError(self.path, None, f"trace block size must be an int >= 1 (got {trace_block_size!r})")
        if max_requests is not None and (type(max_requests) is not int or max_requests < 1):
            raise TraceError(self.path, None, f"--max-requests must be an int >= 1 (got {max_requests!r})")
        forced = None if trace_format == formats.AUTO else formats.lookup(trace_format)
        self.max_requests = max_requests
        self.tokenizer_name = tokenizer_name
        self.cancel = cancel
        self.lora_names = frozenset(lora_names)
        self.bytes_read = 0
        self.ignored_fields: dict[str, int] = {}
        self._tokenizer: Tokenizer | None = None
        self.chat_template = chat_template or SIMPLE
        # A template file is read and compiled here: a bad one stops before any request.
        self._chat = load_chat_template(chat_template, self._tok, tokenizer_name)
        with open_trace(self.path) as f:
            self.total_bytes = f.total_bytes
            self.compression = f.compression
            fmt = self._detect(f, forced)
        self._format = fmt
        self.format = fmt.name
        self.trace_block_size = trace_block_size or fmt.default_block_size or 512

    def _lines(self, f: OpenedTrace) -> Iterator[tuple[int, str]]:
        """(line number, text) of each non-blank line, decoded and stripped."""
        for lineno, raw in f.lines():
            self.bytes_read = f.position()
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start]
                raise TraceError(
                    self.path, lineno, f"not valid UTF-8 (byte 0x{bad:02x} at column {exc.start + 1})"
                ) from None
            text = text.strip()
            if text:
                yield lineno, text

    def _parse(self, lineno: int, text: str, first: bool = False) -> dict[str, Any]:
        """One line as a JSON object; ``first``: the file's first request (where a JSON
        array of requests, or a CSV header, would show)."""
        hint = (_array_hint(text) or _csv_hint(text)) if first else ""
        if text.startswith("\ufeff"):
            raise TraceError(self.path, lineno, "byte-order mark (BOM) is allowed only at the start of the file")
        try:
            obj = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_reject_constant)
        except _DuplicateKey as exc:
            raise TraceError(self.path, lineno, str(exc)) from None
        except json.JSONDecodeError as exc:
            raise TraceError(self.path, lineno, f"invalid JSON: {exc.msg} (column {exc.colno})"
                             + hint) from None
        except RecursionError:
            raise TraceError(self.path, lineno, "invalid JSON: nested too deeply") from None
        except ValueError as exc:  # NaN/Infinity (our hook), or an int past Python's digit limit
            reason = "a number has too many digits" if "digits" in str(exc) else str(exc)
            raise TraceError(self.path, lineno, f"invalid JSON: {reason}") from None
        if not isinstance(obj, dict):
            raise TraceError(self.path, lineno, f"expected a JSON object, got {type_name(obj)}"
                             + (_array_hint(text) if first else ""))
        return obj

    def _detect(self, f: OpenedTrace, forced: formats.TraceFormat | None) -> formats.TraceFormat:
        for lineno, text in self._lines(f):
            obj = self._parse(lineno, text, first=True)
            return forced or formats.detect(obj)
        raise TraceError(self.path, None, "no requests (the file is empty)")

    def _context(self) -> ParseContext:
        return ParseContext(self.path, self.trace_block_size, self._tok, self.lora_names, self._chat)

    def __iter__(self) -> Iterator[TraceRequest]:
        self.bytes_read = 0
        index = 0
        fmt = self._format
        parser = fmt.parser(self._context())
        watch = fmt.fields if not fmt.strict else None
        with open_trace(self.path) as f:
            self.total_bytes = f.total_bytes
            for lineno, text in self._lines(f):
                if self.cancel is not None and self.cancel.is_set():
                    return
                if self.max_requests is not None and index >= self.max_requests:
                    return
                obj = self._parse(lineno, text, first=index == 0)
                if watch is not None:
                    for key in obj:
                        if key not in watch and key not in self.ignored_fields:
                            self.ignored_fields[key] = lineno
                yield parser.parse(obj, index, lineno)
                index += 1

    def _tok(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer


def read_trace(path: str | os.PathLike[str], **kw: Any) -> Iterator[TraceRequest]:
    """Requests of a trace, lazily (see TraceReader for the keyword arguments)."""
    return iter(TraceReader(path, **kw))
