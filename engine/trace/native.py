"""The native JSONL format (strict: an unknown field is an error, typos must not pass).

    {"request_id": "a", "arrival_time": 0.5, "prompt_token_ids": [1, 2, 3], "output_len": 8}
    {"prompt": "Hello", "output": "Hi!"}
    {"messages": [{"role": "user", "content": "Hi"}], "conversation_id": "c1", "turn": 0}

Exactly one of prompt_token_ids / prompt / messages; at most one of output_token_ids /
output / output_len; optional request_id, arrival_time, conversation_id, turn, cache_salt,
lora_name.
"""

from __future__ import annotations

from typing import Any

from engine.model import TraceRequest
from engine.trace.context import ParseContext, foreign_field_hint
from engine.trace.fields import (
    MAX_OUTPUT_LEN,
    Fail,
    check_cache_salt,
    check_encodable,
    cut_text,
    id_string,
    seconds,
    token_ids,
    type_name,
)

PROMPT_FIELDS = ("prompt_token_ids", "prompt", "messages")
OUTPUT_FIELDS = ("output_token_ids", "output", "output_len")
FIELDS = frozenset(
    PROMPT_FIELDS + OUTPUT_FIELDS
    + ("request_id", "arrival_time", "conversation_id", "turn", "cache_salt", "lora_name")
)


def check_messages(msgs: Any, fail: Fail) -> list[dict[str, str]]:
    """``[{role, content}]`` with string values (native messages take no other fields)."""
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
            check_encodable(f"messages[{i}].{key}", m[key], fail)
        if not m["role"]:
            raise fail(f"messages[{i}].role must not be empty")
    return msgs


class NativeParser:
    """Lines of one pass over a native trace (request ids must be unique in it)."""

    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self._seen_ids: dict[str, int] = {}

    def parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        req = self._parse(obj, index, lineno)
        # vLLM needs unique request ids; a clash would surface far from its cause.
        first = self._seen_ids.setdefault(req.request_id, lineno)
        if first != lineno:
            raise self.ctx.fail(lineno, f"duplicate request_id {req.request_id!r} (first on line {first})")
        return req

    def _parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        ctx = self.ctx

        def fail(msg: str) -> Exception:
            return ctx.fail(lineno, msg)

        for key in obj:
            if key not in FIELDS:
                raise fail(f"unknown field {key!r}{foreign_field_hint(key, 'native', index == 0)}")

        rid = id_string(obj.get("request_id", str(lineno)), "request_id", fail)
        t = seconds(obj.get("arrival_time", index), "arrival_time", fail)

        given = [k for k in PROMPT_FIELDS if k in obj]
        if not given:
            raise fail("missing prompt: give one of prompt_token_ids, prompt, messages")
        if len(given) > 1:
            raise fail(f"give exactly one of prompt_token_ids, prompt, messages (got {' and '.join(given)})")
        text: str | None = None
        msgs: list[dict[str, str]] | None = None
        later, broken = False, None
        if given[0] == "prompt_token_ids":
            prompt = token_ids(obj["prompt_token_ids"], "prompt_token_ids", fail)
            if not prompt:
                raise fail("prompt_token_ids must not be empty")
        elif given[0] == "prompt":
            p = obj["prompt"]
            if type(p) is not str:
                raise fail(f"prompt must be a string (got {type_name(p)})")
            if not p:
                raise fail("prompt must not be empty")
            check_encodable("prompt", p, fail)
            prompt = tuple(ctx.tokenizer().encode(p))
            text = p
        else:
            msgs = check_messages(obj["messages"], fail)
            prompt, text = ctx.render(msgs, fail)
            later, broken = ctx.turn_break(msgs, prompt, fail)

        out_given = [k for k in OUTPUT_FIELDS if k in obj]
        if len(out_given) > 1:
            raise fail(f"give at most one of output_token_ids, output, output_len (got {' and '.join(out_given)})")
        out_ids: tuple[int, ...] | None = None
        out_len = 0
        if out_given == ["output_token_ids"]:
            out_ids = token_ids(obj["output_token_ids"], "output_token_ids", fail)
        elif out_given == ["output"]:
            o = obj["output"]
            if type(o) is not str:
                raise fail(f"output must be a string (got {type_name(o)})")
            check_encodable("output", o, fail)
            # An empty reply is no tokens (the template would still add " \n").
            out_ids = ctx.render_reply(msgs, prompt, o, fail) if o else ()
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
            check_encodable("lora_name", lora, fail)

        return TraceRequest(
            index=index,
            line=lineno,
            request_id=rid,
            arrival_time=t,
            prompt_token_ids=prompt,
            output_token_ids=out_ids,
            output_len=out_len,
            conversation_id=conv,
            turn=turn,
            text=cut_text(text),
            cache_salt=salt,
            lora_name=lora,
            template_checked=later,
            template_break=broken,
        )
