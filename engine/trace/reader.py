"""Lazy, line-by-line reading of trace files into TraceRequests.

Two JSONL formats, told apart by the first non-blank line: an object with ``hash_ids`` is
Mooncake (see engine.trace.mooncake), anything else is the native format:

    {"request_id": "a", "arrival_time": 0.5, "prompt_token_ids": [1, 2, 3], "output_len": 8}
    {"prompt": "Hello", "output": "Hi!"}
    {"messages": [{"role": "user", "content": "Hi"}], "conversation_id": "c1", "turn": 0}

Exactly one of prompt_token_ids / prompt / messages; at most one of output_token_ids /
output / output_len; optional request_id, arrival_time, conversation_id, turn. Text is
tokenized with engine.trace.tokenize (messages with its chat template). Any problem is a
TraceError ``path:line: message``; the file is never loaded whole.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.trace import mooncake
from engine.errors import TraceError
from engine.trace.tokenize import Tokenizer, load_tokenizer, messages_text, render_messages, render_reply
from engine.model import TraceRequest

PROMPT_FIELDS = ("prompt_token_ids", "prompt", "messages")
OUTPUT_FIELDS = ("output_token_ids", "output", "output_len")
NATIVE_FIELDS = frozenset(
    PROMPT_FIELDS + OUTPUT_FIELDS
    + ("request_id", "arrival_time", "conversation_id", "turn", "cache_salt", "lora_name")
)
MAX_TOKEN_ID = 2**31  # exclusive
# vLLM's OpenAI server rejects other salts (entrypoints/generate/base/protocol.py's
# validate_cache_salt; tests/test_vllm_adapter.py checks this rule agrees with it).
CACHE_SALT_MAX_LEN = 128
CACHE_SALT_FORBIDDEN = frozenset("@/\\\x00")
MAX_OUTPUT_LEN = 10_000_000
TEXT_LIMIT = 2000  # display text is cut here: it is for a glance, the tokens are the truth
_BOM = b"\xef\xbb\xbf"


def type_name(value: Any) -> str:
    """The JSON type of a parsed value, in the words messages use."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    pass


def _array_hint(text: str) -> str:
    """A common wrong format: a JSON array of requests, or one split over lines."""
    if not text.lstrip().startswith("["):
        return ""
    return "; this looks like a JSON array: prefix-tui reads JSON Lines, one JSON object a line"


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
    inspector and its feed pass along instead of four arguments each."""

    path: str
    tokenizer_name: str | None = None
    trace_block_size: int = 512
    max_requests: int | None = None

    def reader(self, cancel: threading.Event | None = None) -> TraceReader:
        return TraceReader(self.path, tokenizer_name=self.tokenizer_name,
                           trace_block_size=self.trace_block_size, cancel=cancel,
                           max_requests=self.max_requests)


class TraceReader:
    """Iterate a trace file as TraceRequests, lazily; re-iterable (each pass rereads).

    Construction opens the file and reads up to its first non-blank line, to set ``format``;
    a missing, unreadable or empty file fails here. ``bytes_read`` / ``total_bytes`` show
    progress while iterating; setting ``cancel`` stops the iteration at the next line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tokenizer_name: str | None = None,
        trace_block_size: int = 512,
        cancel: threading.Event | None = None,
        max_requests: int | None = None,
    ) -> None:
        """``max_requests``: read only the first N requests (None: all)."""
        self.path = str(path)
        if type(trace_block_size) is not int or trace_block_size < 1:
            raise TraceError(self.path, None, f"trace block size must be an int >= 1 (got {trace_block_size!r})")
        if max_requests is not None and (type(max_requests) is not int or max_requests < 1):
            raise TraceError(self.path, None, f"--max-requests must be an int >= 1 (got {max_requests!r})")
        self.max_requests = max_requests
        self.tokenizer_name = tokenizer_name
        self.trace_block_size = trace_block_size
        self.cancel = cancel
        self.bytes_read = 0
        self._tokenizer: Tokenizer | None = None
        with self._open() as f:
            self.total_bytes = os.fstat(f.fileno()).st_size
            self.format = self._detect(f)

    def _open(self):  # noqa: ANN202 - a binary file object
        p = Path(self.path)
        if p.is_dir():
            raise TraceError(self.path, None, "is a directory, not a trace file")
        try:
            return open(p, "rb")
        except FileNotFoundError:
            raise TraceError(self.path, None, "no such file") from None
        except PermissionError:
            raise TraceError(self.path, None, "permission denied") from None
        except OSError as exc:
            raise TraceError(self.path, None, f"cannot open: {exc.strerror or exc}") from None

    def _lines(self, f) -> Iterator[tuple[int, str]]:  # noqa: ANN001
        """(line number, text) of each non-blank line, decoded and stripped."""
        for lineno, raw in enumerate(f, start=1):
            self.bytes_read += len(raw)
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
        array of requests would show)."""
        hint = _array_hint(text) if first else ""
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
                             + hint)
        return obj

    def _detect(self, f) -> str:  # noqa: ANN001
        for lineno, text in self._lines(f):
            obj = self._parse(lineno, text, first=True)
            return "mooncake" if "hash_ids" in obj else "native"
        raise TraceError(self.path, None, "no requests (the file is empty)")

    def __iter__(self) -> Iterator[TraceRequest]:
        self.bytes_read = 0
        seen_ids: dict[str, int] = {}
        index = 0
        with self._open() as f:
            self.total_bytes = os.fstat(f.fileno()).st_size
            for lineno, text in self._lines(f):
                if self.cancel is not None and self.cancel.is_set():
                    return
                if self.max_requests is not None and index >= self.max_requests:
                    return
                obj = self._parse(lineno, text, first=index == 0)
                if self.format == "mooncake":
                    yield mooncake.parse_mooncake(
                        obj,
                        index=index,
                        line=lineno,
                        block_size=self.trace_block_size,
                        fail=lambda msg, n=lineno: TraceError(self.path, n, msg),
                        type_name=type_name,
                    )
                else:
                    req = self._native(obj, index, lineno)
                    # vLLM needs unique request ids; a clash would surface far from its cause.
                    first = seen_ids.setdefault(req.request_id, lineno)
                    if first != lineno:
                        raise TraceError(
                            self.path, lineno, f"duplicate request_id {req.request_id!r} (first on line {first})"
                        )
                    yield req
                index += 1

    # -- native format ---------------------------------------------------------------------

    def _tok(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def _native(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        def fail(msg: str) -> TraceError:
            return TraceError(self.path, lineno, msg)

        for key in obj:
            if key not in NATIVE_FIELDS:
                hint = " (a Mooncake field; Mooncake and native lines cannot mix)" if key in mooncake.FIELDS else ""
                raise fail(f"unknown field {key!r}{hint}")

        rid = obj.get("request_id", str(lineno))
        if type(rid) is int:
            rid = str(rid)
        elif type(rid) is not str:
            raise fail(f"request_id must be a string or an int (got {type_name(rid)})")
        elif not rid:
            raise fail("request_id must not be empty")

        t = obj.get("arrival_time", index)
        if type(t) not in (int, float):
            raise fail(f"arrival_time must be a number of seconds (got {type_name(t)})")
        if not math.isfinite(t) or t < 0:
            raise fail(f"arrival_time must be finite and >= 0 (got {t})")

        given = [k for k in PROMPT_FIELDS if k in obj]
        if not given:
            raise fail("missing prompt: give one of prompt_token_ids, prompt, messages")
        if len(given) > 1:
            raise fail(f"give exactly one of prompt_token_ids, prompt, messages (got {' and '.join(given)})")
        text: str | None = None
        if given[0] == "prompt_token_ids":
            prompt = self._token_ids(obj, "prompt_token_ids", fail)
            if not prompt:
                raise fail("prompt_token_ids must not be empty")
        elif given[0] == "prompt":
            p = obj["prompt"]
            if type(p) is not str:
                raise fail(f"prompt must be a string (got {type_name(p)})")
            if not p:
                raise fail("prompt must not be empty")
            self._check_encodable("prompt", p, fail)
            prompt = tuple(self._tok().encode(p))
            text = p
        else:
            msgs = self._messages(obj["messages"], fail)
            prompt = tuple(render_messages(self._tok(), msgs))
            text = messages_text(msgs)

        out_given = [k for k in OUTPUT_FIELDS if k in obj]
        if len(out_given) > 1:
            raise fail(f"give at most one of output_token_ids, output, output_len (got {' and '.join(out_given)})")
        out_ids: tuple[int, ...] | None = None
        out_len = 0
        if out_given == ["output_token_ids"]:
            out_ids = self._token_ids(obj, "output_token_ids", fail)
        elif out_given == ["output"]:
            o = obj["output"]
            if type(o) is not str:
                raise fail(f"output must be a string (got {type_name(o)})")
            self._check_encodable("output", o, fail)
            # An empty reply is no tokens (the template would still add " \n").
            out_ids = tuple(render_reply(self._tok(), o)) if o else ()
        elif out_given == ["output_len"]:
            out_len = obj["output_len"]
            if type(out_len) is not int:
                raise fail(f"output_len must be an int (got {type_name(out_len)})")
            if not 0 <= out_len <= MAX_OUTPUT_LEN:
                raise fail(f"output_len must be between 0 and {MAX_OUTPUT_LEN} (got {out_len})")
        if out_ids is not None:
            if len(out_ids) > MAX_OUTPUT_LEN:
                raise fail(f"output has {len(out_ids)} tokens, more than {MAX_OUTPUT_LEN}")
            out_len = len(out_ids)

        conv = obj.get("conversation_id")
        if conv is not None:
            if type(conv) is int:
                conv = str(conv)
            elif type(conv) is not str:
                raise fail(f"conversation_id must be a string or an int (got {type_name(conv)})")
        turn = obj.get("turn")
        if turn is not None:
            if type(turn) is not int:
                raise fail(f"turn must be an int (got {type_name(turn)})")
            if turn < 0:
                raise fail(f"turn must be >= 0 (got {turn})")

        salt = obj.get("cache_salt")
        if salt is not None:
            check_cache_salt(salt, fail)
        lora = obj.get("lora_name")
        if lora is not None:
            if type(lora) is not str:
                raise fail(f"lora_name must be a string (got {type_name(lora)})")
            if not lora:
                raise fail("lora_name must not be empty")
            self._check_encodable("lora_name", lora, fail)

        if text is not None and len(text) > TEXT_LIMIT:
            text = text[: TEXT_LIMIT - 1] + "…"
        return TraceRequest(
            index=index,
            line=lineno,
            request_id=rid,
            arrival_time=float(t),
            prompt_token_ids=prompt,
            output_token_ids=out_ids,
            output_len=out_len,
            conversation_id=conv,
            turn=turn,
            text=text,
            cache_salt=salt,
            lora_name=lora,
        )

    @staticmethod
    def _token_ids(obj: dict[str, Any], field: str, fail) -> tuple[int, ...]:  # noqa: ANN001
        ids = obj[field]
        if type(ids) is not list:
            raise fail(f"{field} must be a list of ints (got {type_name(ids)})")
        for i, v in enumerate(ids):
            if type(v) is not int:
                raise fail(f"{field} must be a list of ints (item {i} is {type_name(v)})")
            if not 0 <= v < MAX_TOKEN_ID:
                raise fail(f"{field}[{i}] = {v} is out of range (token ids must be >= 0 and < 2**31)")
        return tuple(ids)

    @staticmethod
    def _check_encodable(field: str, s: str, fail) -> None:  # noqa: ANN001
        # json.loads accepts lone "\ud800" escapes; tokenizers would raise on them.
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise fail(f"{field} contains an unpaired surrogate escape at character {exc.start}") from None

    def _messages(self, msgs: Any, fail) -> list[dict[str, str]]:  # noqa: ANN001
        if type(msgs) is not list:
            raise fail(f"messages must be a list of objects (got {type_name(msgs)})")
        if not msgs:
            raise fail("messages must not be empty")
        for i, m in enumerate(msgs):
            if type(m) is not dict:
                raise fail(f"messages[{i}] must be an object with role and content (got {type_name(m)})")
            for key in m:
                if key not in ("role", "content"):
                    raise fail(f"messages[{i}] has unknown field {key!r} (fields: role, content)")
            for key in ("role", "content"):
                if key not in m:
                    raise fail(f"messages[{i}] is missing {key!r}")
                if type(m[key]) is not str:
                    raise fail(f"messages[{i}].{key} must be a string (got {type_name(m[key])})")
                self._check_encodable(f"messages[{i}].{key}", m[key], fail)
            if not m["role"]:
                raise fail(f"messages[{i}].role must not be empty")
        return msgs


def check_cache_salt(salt: Any, fail) -> None:  # noqa: ANN001
    """vLLM's rule for ``cache_salt``: a non-empty string of at most 128 characters
    without '@', '/', a backslash or NUL."""
    if type(salt) is not str:
        raise fail(f"cache_salt must be a string (got {type_name(salt)})")
    if not salt:
        raise fail("cache_salt must not be empty (vLLM rejects an empty salt)")
    if len(salt) > CACHE_SALT_MAX_LEN:
        raise fail(f"cache_salt has {len(salt)} characters; vLLM accepts at most {CACHE_SALT_MAX_LEN}")
    bad = next((c for c in salt if c in CACHE_SALT_FORBIDDEN), None)
    if bad is not None:
        raise fail(f"cache_salt must not contain {bad!r} (vLLM rejects '@', '/', backslash and NUL)")
    TraceReader._check_encodable("cache_salt", salt, fail)


def read_trace(path: str | os.PathLike[str], **kw: Any) -> Iterator[TraceRequest]:
    """Requests of a trace, lazily (see TraceReader for the keyword arguments)."""
    return iter(TraceReader(path, **kw))
