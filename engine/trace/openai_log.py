"""OpenAI-style request logs: one request body a line, as a serving engineer already has
them (a proxy's log, an OpenAI batch input file).

    {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}
    {"model": "m", "prompt": "Once upon a time", "max_tokens": 16, "cache_salt": "team-a"}
    {"timestamp": 12.5, "custom_id": "r7", "body": {"model": "m", "messages": [...]}}

Chat (``messages``; a content may be a string or a list of text parts) or completions
(``prompt``: a string or token ids). Output length: the reply in a ``response`` beside
the body (``choices[0].message.content`` / ``choices[0].text``, or ``usage.
completion_tokens``), else ``max_completion_tokens`` / ``max_tokens``, else 0. ``model``
becomes the request's LoRA adapter when it is one of ``--lora-names``. ``timestamp`` (seconds,
or an ISO 8601 time) counts from the first request's; without one, requests arrive one a
second in file order. ``tools`` and messages' other fields (tool_calls, ...) go to a Jinja
chat template, which may render them. A production format: other fields (temperature,
stream, ...) are ignored.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from engine.model import TraceRequest
from engine.trace.context import ParseContext
from engine.trace.fields import (
    MAX_OUTPUT_LEN,
    Fail,
    check_cache_salt,
    check_encodable,
    count,
    cut_text,
    id_string,
    token_ids,
    type_name,
)

ID_FIELDS = ("custom_id", "request_id", "id")


def _timestamp(value: Any, fail: Fail) -> float:
    if type(value) in (int, float):
        try:
            t = float(value)
        except OverflowError:  # an int past a float's range
            raise fail(f"timestamp is too large ({len(str(abs(value)))} digits)") from None
        if not math.isfinite(t):
            raise fail(f"timestamp must be finite (got {value})")
        return t
    if type(value) is str:
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"timestamp {value[:40]!r} is neither a number of seconds nor an ISO 8601 time") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return t.timestamp()
    raise fail(f"timestamp must be a number of seconds or an ISO 8601 string (got {type_name(value)})")


def _content(value: Any, where: str, fail: Fail) -> str:
    """A message content as text: a string, null (an assistant's tool call), or text parts."""
    if value is None:
        return ""
    if type(value) is str:
        check_encodable(where, value, fail)
        return value
    if type(value) is not list:
        raise fail(f"{where} must be a string or a list of parts (got {type_name(value)})")
    texts = []
    for j, part in enumerate(value):
        if type(part) is not dict:
            raise fail(f"{where}[{j}] must be an object (got {type_name(part)})")
        kind = part.get("type")
        if kind != "text":
            raise fail(f"{where}[{j}] is a {str(kind)[:20]!r} part: prefix-tui replays text parts only")
        text = part.get("text")
        if type(text) is not str:
            raise fail(f"{where}[{j}].text must be a string (got {type_name(text)})")
        check_encodable(f"{where}[{j}].text", text, fail)
        texts.append(text)
    return "".join(texts)


def chat_messages(msgs: Any, fail: Fail, prefix: str = "") -> list[dict[str, Any]]:
    """OpenAI chat messages with their content as text; other fields (tool_calls, name,
    ...) are kept for a Jinja template (the simple template reads role and content)."""
    if type(msgs) is not list:
        raise fail(f"{prefix}messages must be a list of objects (got {type_name(msgs)})")
    if not msgs:
        raise fail(f"{prefix}messages must not be empty")
    out = []
    for i, m in enumerate(msgs):
        where = f"{prefix}messages[{i}]"
        if type(m) is not dict:
            raise fail(f"{where} must be an object with role and content (got {type_name(m)})")
        role = m.get("role")
        if type(role) is not str or not role:
            raise fail(f"{where}.role must be a non-empty string (got {type_name(role)})")
        check_encodable(f"{where}.role", role, fail)
        out.append({**m, "role": role, "content": _content(m.get("content"), f"{where}.content", fail)})
    return out


def _reply(response: Any, fail: Fail) -> tuple[str | None, int | None]:
    """(reply text, completion tokens) from a logged response, as far as it tells."""
    if type(response) is not dict:
        raise fail(f"response must be an object (got {type_name(response)})")
    if type(response.get("body")) is dict:  # an OpenAI batch output line
        response = response["body"]
    choices = response.get("choices")
    if type(choices) is list and choices and type(choices[0]) is dict:
        c = choices[0]
        text = c["message"].get("content") if type(c.get("message")) is dict else c.get("text")
        if type(text) is str:
            check_encodable("response.choices[0] text", text, fail)
            return text, None
    usage = response.get("usage")
    if type(usage) is dict and "completion_tokens" in usage:
        return None, count(usage["completion_tokens"], "response.usage.completion_tokens", fail)
    return None, None


class OpenAILogParser:
    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self._t0: float | None = None
        self._seen_ids: dict[str, int] = {}

    def parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        def fail(msg: str) -> Exception:
            return self.ctx.fail(lineno, msg)

        ctx = self.ctx
        wrapped = "body" in obj
        body = obj["body"] if wrapped else obj
        if type(body) is not dict:
            raise fail(f"body must be an object, the request's JSON body (got {type_name(body)})")
        p = "body." if wrapped else ""
        rid = str(lineno)
        for key in ID_FIELDS:
            if key in obj:
                rid = id_string(obj[key], key, fail)
                break
        first = self._seen_ids.setdefault(rid, lineno)
        if first != lineno:
            raise fail(f"duplicate request id {rid!r} (first on line {first})")

        if "timestamp" in obj:
            t = _timestamp(obj["timestamp"], fail)
            if self._t0 is None:
                self._t0 = t
            arrival = t - self._t0
            if not math.isfinite(arrival):
                raise fail(f"timestamp {obj['timestamp']} is too far from the first request's")
            if arrival < 0:
                raise fail(f"timestamp is {-arrival:.3f} s before the first request's: a log "
                           "is replayed in its order, so times must not go back past the first")
        else:
            arrival = float(index)

        has = [k for k in ("messages", "prompt") if k in body]
        if len(has) != 1:
            raise fail(f"{p}messages (chat) or {p}prompt (completions) is needed, exactly one"
                       + (f" (got {' and '.join(has)})" if has else ""))
        msgs = None
        later, broken = False, None
        tools = body.get("tools")
        if tools is not None:
            if type(tools) is not list:
                raise fail(f"{p}tools must be a list of objects (got {type_name(tools)})")
            bad = next((i for i, t in enumerate(tools) if type(t) is not dict), None)
            if bad is not None:
                raise fail(f"{p}tools[{bad}] must be an object (got {type_name(tools[bad])})")
        if has == ["messages"]:
            msgs = chat_messages(body["messages"], fail, p)
            prompt, text = ctx.render(msgs, fail, tools)
            later, broken = ctx.turn_break(msgs, prompt, fail, tools)
        else:
            prompt, text = self._prompt(body["prompt"], p, fail)

        reply, out_len = (None, None)
        if "response" in obj:
            reply, out_len = _reply(obj["response"], fail)
        out_ids = None
        if reply is not None:
            if msgs is not None:
                out_ids = ctx.render_reply(msgs, prompt, reply, fail, tools) if reply else ()
            else:
                out_ids = tuple(ctx.tokenizer().encode(reply))
            out_len = len(out_ids)
        elif out_len is None:
            out_len = 0
            for key in ("max_completion_tokens", "max_tokens"):
                if body.get(key) is not None:
                    out_len = count(body[key], p + key, fail, high=MAX_OUTPUT_LEN)
                    break

        salt = body.get("cache_salt")
        if salt is not None:
            check_cache_salt(salt, lambda m: fail(p + m))
        model = body.get("model")
        if model is not None and type(model) is not str:
            raise fail(f"{p}model must be a string (got {type_name(model)})")
        lora = model if model in ctx.lora_names else None
        return TraceRequest(
            index=index,
            line=lineno,
            request_id=rid,
            arrival_time=arrival,
            prompt_token_ids=prompt,
            output_token_ids=out_ids,
            output_len=out_len,
            text=cut_text(text),
            cache_salt=salt,
            lora_name=lora,
            template_checked=later,
            template_break=broken,
        )

    def _prompt(self, value: Any, p: str, fail: Fail) -> tuple[tuple[int, ...], str | None]:
        # The completions API takes a string, token ids, or a batch of either; a log line
        # is one request, so a batch must hold exactly one.
        if type(value) is list and value and type(value[0]) in (str, list):
            if len(value) != 1:
                raise fail(f"{p}prompt is a batch of {len(value)} prompts: give one prompt a line")
            value = value[0]
        if type(value) is str:
            if not value:
                raise fail(f"{p}prompt must not be empty")
            check_encodable(p + "prompt", value, fail)
            return tuple(self.ctx.tokenizer().encode(value)), value
        if type(value) is list:
            ids = token_ids(value, p + "prompt", fail)
            if not ids:
                raise fail(f"{p}prompt must not be empty")
            return ids, None
        raise fail(f"{p}prompt must be a string or a list of token ids (got {type_name(value)})")
