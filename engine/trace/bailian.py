"""Alibaba's Qwen-Bailian traces (``alibaba-edu/qwen-bailian-usagetraces-anon``, Apache-2.0).

One request a line::

    {"chat_id": 159, "parent_chat_id": 55, "timestamp": 61.114, "input_length": 521,
     "output_length": 132, "type": "text", "turn": 2, "hash_ids": [1089, 1090, ...]}

``hash_ids``: one id per 16-token block (the default trace block size for this format),
the last one possibly partial; tokens are synthesized from them as for Mooncake
(engine.trace.mooncake: injective). ``timestamp`` is in seconds. ``parent_chat_id`` is -1
for a conversation's first request, else the chat_id of the request it follows: the
conversation is the root of that chain. ``type`` (text, search, image, file) becomes the
request type, for per-type totals. A production format: other fields are ignored.
"""

from __future__ import annotations

from typing import Any

from engine.model import TraceRequest
from engine.trace.context import ParseContext
from engine.trace.fields import check_encodable, count, seconds, type_name
from engine.trace.mooncake import hashed_prompt, require

REQUIRED = ("chat_id", "timestamp", "input_length", "output_length", "hash_ids")
OPTIONAL = ("parent_chat_id", "type", "turn")
DEFAULT_BLOCK_SIZE = 16
ROOT = -1


class BailianParser:
    """One pass over a Qwen-Bailian trace: remembers each chat_id's conversation (its
    root chat_id) and line, so later turns find their conversation and ids stay unique."""

    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self._chats: dict[int, tuple[int, int]] = {}  # chat_id -> (root chat_id, line)

    def parse(self, obj: dict[str, Any], index: int, lineno: int) -> TraceRequest:
        def fail(msg: str) -> Exception:
            return self.ctx.fail(lineno, msg)

        require(obj, REQUIRED, "Qwen-Bailian", fail)
        chat = obj["chat_id"]
        if type(chat) is not int or chat < 0:
            raise fail(f"chat_id must be an int >= 0 (got {chat!r})" if type(chat) is int
                       else f"chat_id must be an int (got {type_name(chat)})")
        parent = obj.get("parent_chat_id", ROOT)
        if type(parent) is not int:
            raise fail(f"parent_chat_id must be an int, -1 for a first turn (got {type_name(parent)})")
        if parent < ROOT:
            raise fail(f"parent_chat_id must be -1 (a first turn) or a chat_id (got {parent})")
        if parent == chat:
            raise fail(f"parent_chat_id {parent} is the request's own chat_id")
        if chat in self._chats:
            raise fail(f"duplicate chat_id {chat} (first on line {self._chats[chat][1]})")
        t = seconds(obj["timestamp"], "timestamp", fail)
        prompt = hashed_prompt(obj, self.ctx.block_size, fail)
        out = count(obj["output_length"], "output_length", fail)
        kind = obj.get("type")
        if kind is not None:
            if type(kind) is not str:
                raise fail(f"type must be a string such as \"text\" (got {type_name(kind)})")
            check_encodable("type", kind, fail)
        turn = obj.get("turn")
        if turn is not None:
            turn = count(turn, "turn", fail, high=2**31)
        # A parent the trace does not hold (cut from a longer trace) still names the
        # conversation: its later turns share it.
        root = chat if parent == ROOT else self._chats.get(parent, (parent, 0))[0]
        self._chats[chat] = (root, lineno)
        return TraceRequest(
            index=index,
            line=lineno,
            request_id=str(chat),
            arrival_time=t,
            prompt_token_ids=prompt,
            output_len=out,
            conversation_id=str(root),
            turn=turn,
            request_type=kind or None,
        )
