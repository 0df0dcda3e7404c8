"""Mooncake traces (FAST'25 conversation, tool&agent and synthetic traces, and the arXiv
trace): hash ids in, synthetic token ids out.

A Mooncake line is ``{"timestamp": ms, "input_length": n, "output_length": m,
"hash_ids": [...]}`` where each hash id stands for one block of B tokens (B = 512 in the
published traces) together with everything before it. There is no text, so tokens are
synthesized: hash id h becomes the tokens ``h*B .. h*B + B-1``. That map is injective
(different ids never share a token, equal ids give equal tokens), so prefix sharing in the
token stream is exactly the sharing the trace recorded. A modulo would fold ids together and
invent hits. The concatenation is truncated to input_length (the last block may be partial).

A production format: fields beyond these are ignored (the reader lists them), not errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.model import TraceRequest
from engine.trace.context import ParseContext
from engine.trace.fields import MAX_TOKEN_ID, Fail, count, seconds, type_name

FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
DEFAULT_BLOCK_SIZE = 512
NATIVE_PROMPTS = ("prompt_token_ids", "prompt", "messages")


def synthesize_tokens(hash_ids: Sequence[int], input_length: int, block_size: int) -> tuple[int, ...]:
    """Tokens for a prompt of ``input_length`` tokens made of the given trace blocks."""
    tokens: list[int] = []
    for h in hash_ids:
        start = h * block_size
        tokens.extend(range(start, start + block_size))
    del tokens[input_length:]
    return tuple(tokens)


def require(obj: dict[str, Any], fields: Sequence[str], title: str, fail: Fail) -> None:
    for key in fields:
        if key not in obj:
            native = next((k for k in NATIVE_PROMPTS if k in obj), None)
            hint = (f"; {native!r} is a native field: {title} and native lines cannot mix"
                    if native else "")
            raise fail(f"missing field {key!r} ({title} format{hint})")


def hashed_prompt(obj: dict[str, Any], block_size: int, fail: Fail) -> tuple[int, ...]:
    """``input_length`` tokens from ``hash_ids``, checked: one id per trace block."""
    n = obj["input_length"]
    if type(n) is not int:
        raise fail(f"input_length must be an int (got {type_name(n)})")
    if n < 1:
        raise fail(f"input_length must be >= 1 (got {n})")
    ids = obj["hash_ids"]
    if type(ids) is not list:
        raise fail(f"hash_ids must be a list of ints (got {type_name(ids)})")
    max_id = (MAX_TOKEN_ID - block_size) // block_size
    for i, h in enumerate(ids):
        if type(h) is not int:
            raise fail(f"hash_ids must be a list of ints (item {i} is {type_name(h)})")
        if h < 0:
            raise fail(f"hash_ids[{i}] must be >= 0 (got {h})")
        if h > max_id:
            raise fail(
                f"hash_ids[{i}] = {h} is too large: with trace block size {block_size} "
                f"its tokens would pass 2**31 (max id {max_id})"
            )
    need = -(-n // block_size)
    if len(ids) != need:
        raise fail(
            f"hash_ids has {len(ids)} ids but input_length {n} needs "
            f"ceil({n}/{block_size}) = {need} (trace block size {block_size})"
        )
    return synthesize_tokens(ids, n, block_size)


class MooncakeParser:
    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx

    def parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        def fail(msg: str) -> Exception:
            return self.ctx.fail(lineno, msg)

        require(obj, FIELDS, "Mooncake", fail)
        ts = seconds(obj["timestamp"], "timestamp", fail, unit="milliseconds")
        prompt = hashed_prompt(obj, self.ctx.block_size, fail)
        m = count(obj["output_length"], "output_length", fail)
        return TraceRequest(
            index=index,
            line=lineno,
            request_id=str(lineno),
            arrival_time=ts / 1000.0,
            prompt_token_ids=prompt,
            output_len=m,
        )
