"""Checks shared by every trace format: JSON types in the words messages use, token ids,
text that tokenizers accept, vLLM's cache_salt rule, a number of seconds."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Fail = Callable[[str], Exception]

MAX_TOKEN_ID = 2**31  # exclusive
MAX_OUTPUT_LEN = 10_000_000
# vLLM's OpenAI server rejects other salts (entrypoints/generate/base/protocol.py's
# validate_cache_salt; tests/test_vllm_adapter.py checks this rule agrees with it).
CACHE_SALT_MAX_LEN = 128
CACHE_SALT_FORBIDDEN = frozenset("@/\\\x00")
TEXT_LIMIT = 2000  # display text is cut here: it is for a glance, the tokens are the truth


def type_name(value: Any) -> str:
    """The JSON type of a parsed value, in the words messages use."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def cut_text(text: str | None) -> str | None:
    if text is not None and len(text) > TEXT_LIMIT:
        return text[: TEXT_LIMIT - 1] + "…"
    return text


def check_encodable(field: str, s: str, fail: Fail) -> None:
    # json.loads accepts lone "\ud800" escapes; tokenizers would raise on them.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise fail(f"{field} contains an unpaired surrogate escape at character {exc.start}") from None


def token_ids(ids: Any, field: str, fail: Fail) -> tuple[int, ...]:
    if type(ids) is not list:
        raise fail(f"{field} must be a list of ints (got {type_name(ids)})")
    for i, v in enumerate(ids):
        if type(v) is not int:
            raise fail(f"{field} must be a list of ints (item {i} is {type_name(v)})")
        if not 0 <= v < MAX_TOKEN_ID:
            raise fail(f"{field}[{i}] = {v} is out of range (token ids must be >= 0 and < 2**31)")
    return tuple(ids)


def seconds(value: Any, field: str, fail: Fail, unit: str = "seconds") -> float:
    if type(value) not in (int, float):
        raise fail(f"{field} must be a number of {unit} (got {type_name(value)})")
    try:
        t = float(value)  # an int JSON allows (up to 4,300 digits) can pass a float's range
    except OverflowError:
        raise fail(f"{field} is too large ({len(str(abs(value)))} digits)") from None
    if not math.isfinite(t) or t < 0:
        raise fail(f"{field} must be finite and >= 0 (got {value})")
    return t


def count(value: Any, field: str, fail: Fail, low: int = 0, high: int = MAX_OUTPUT_LEN) -> int:
    if type(value) is not int:
        raise fail(f"{field} must be an int (got {type_name(value)})")
    if not low <= value <= high:
        raise fail(f"{field} must be between {low} and {high} (got {value})")
    return value


def check_cache_salt(salt: Any, fail: Fail) -> None:
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
    check_encodable("cache_salt", salt, fail)


def id_string(value: Any, field: str, fail: Fail) -> str:
    """A string or an int id, as a non-empty string."""
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise fail(f"{field} must be a string or an int (got {type_name(value)})")
    if not value:
        raise fail(f"{field} must not be empty")
    return value
