"""Mooncake traces: hash ids in, synthetic token ids out.

A Mooncake line is ``{"timestamp": ms, "input_length": n, "output_length": m,
"hash_ids": [...]}`` where each hash id stands for one block of B tokens (B = 512 in the
published traces) together with everything before it. There is no text, so tokens are
synthesized: hash id h becomes the tokens ``h*B .. h*B + B-1``. That map is injective
(different ids never share a token, equal ids give equal tokens), so prefix sharing in the
token stream is exactly the sharing the trace recorded. A modulo would fold ids together and
invent hits. The concatenation is truncated to input_length (the last block may be partial).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.model import TraceRequest

FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
MAX_TOKEN_ID = 2**31  # exclusive; the same bound native traces obey
MAX_OUTPUT_LEN = 10_000_000


def synthesize_tokens(hash_ids: Sequence[int], input_length: int, block_size: int) -> tuple[int, ...]:
    """Tokens for a prompt of ``input_length`` tokens made of the given trace blocks."""
    tokens: list[int] = []
    for h in hash_ids:
        start = h * block_size
        tokens.extend(range(start, start + block_size))
    del tokens[input_length:]
    return tuple(tokens)


def parse_mooncake(
    obj: Mapping[str, Any],
    *,
    index: int,
    line: int,
    block_size: int,
    fail: Callable[[str], Exception],
    type_name: Callable[[Any], str],
) -> TraceRequest:
    """One Mooncake line (already a JSON object) as a TraceRequest; ``fail(msg)`` builds the error."""
    for key in obj:
        if key not in FIELDS:
            raise fail(f"unknown field {key!r} in a Mooncake trace (fields: {', '.join(FIELDS)})")
    for key in FIELDS:
        if key not in obj:
            raise fail(f"missing field {key!r} (Mooncake format)")

    ts = obj["timestamp"]
    if type(ts) not in (int, float):
        raise fail(f"timestamp must be a number of milliseconds (got {type_name(ts)})")
    if not math.isfinite(ts) or ts < 0:
        raise fail(f"timestamp must be finite and >= 0 (got {ts})")

    n = obj["input_length"]
    if type(n) is not int:
        raise fail(f"input_length must be an int (got {type_name(n)})")
    if n < 1:
        raise fail(f"input_length must be >= 1 (got {n})")

    m = obj["output_length"]
    if type(m) is not int:
        raise fail(f"output_length must be an int (got {type_name(m)})")
    if not 0 <= m <= MAX_OUTPUT_LEN:
        raise fail(f"output_length must be between 0 and {MAX_OUTPUT_LEN} (got {m})")

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

    return TraceRequest(
        index=index,
        line=line,
        request_id=str(line),
        arrival_time=ts / 1000.0,
        prompt_token_ids=synthesize_tokens(ids, n, block_size),
        output_len=m,
    )
