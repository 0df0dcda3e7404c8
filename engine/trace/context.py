"""What a format's line parser gets from the reader: where it is (for errors), the trace
block size, the tokenizer (loaded on first use), the chat template, LoRA adapter names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import TraceError
from engine.trace.fields import Fail
from engine.model import TemplateBreak
from engine.trace.chat import ChatTemplate, Messages, Tools
from engine.trace.tokenize import Tokenizer, render_reply

# Fields that name a format, for "this line belongs to another format" hints; the order
# is the order hints look in. engine.trace.formats checks these against the parsers.
FORMAT_FIELDS: dict[str, tuple[str, frozenset[str]]] = {
    "mooncake": ("Mooncake", frozenset({"timestamp", "input_length", "output_length", "hash_ids"})),
    "bailian": ("Qwen-Bailian", frozenset({"chat_id", "parent_chat_id", "timestamp", "input_length",
                                           "output_length", "type", "turn", "hash_ids"})),
    "openai": ("OpenAI request log", frozenset({"model", "max_tokens", "max_completion_tokens", "body",
                                                "custom_id", "temperature", "stream", "n", "stop"})),
}


def foreign_field_hint(key: str, fmt: str, first: bool = False) -> str:
    """`` (a Mooncake field; ...)`` when ``key`` is a field of another format than ``fmt``
    (and not one of ``fmt``'s own), else ``""``; ``first``: on the first request, where
    the format was guessed, say how to force the other one."""
    own = FORMAT_FIELDS.get(fmt, ("", frozenset()))[1]
    if key in own:
        return ""
    title = FORMAT_TITLES.get(fmt, fmt)
    for name, (other, fields) in FORMAT_FIELDS.items():
        if name != fmt and key in fields:
            article = "an" if other[0] in "AEIOU" else "a"
            force = f"; --trace-format {name} reads the file as {other}" if first else ""
            return f" ({article} {other} field; {other} and {title} lines cannot mix{force})"
    return ""


FORMAT_TITLES = {"native": "native", **{k: v[0] for k, v in FORMAT_FIELDS.items()}}


@dataclass
class ParseContext:
    """Per reader; ``tokenizer`` loads on first call (hash-id formats never need one)."""

    path: str
    block_size: int
    tokenizer: Callable[[], Tokenizer]
    lora_names: frozenset[str] = field(default_factory=frozenset)
    chat: ChatTemplate | None = None  # None: the simple template

    def __post_init__(self) -> None:
        if self.chat is None:
            self.chat = ChatTemplate(self.tokenizer)

    def fail(self, lineno: int | None, message: str) -> TraceError:
        return TraceError(self.path, lineno, message)

    def render(self, messages: Messages, fail: Fail, tools: Tools = None) -> tuple[tuple[int, ...], str]:
        """A chat prompt's tokens and its text (for display)."""
        return self.chat.prompt(messages, fail, tools)

    def render_reply(self, messages: Messages | None, prompt: tuple[int, ...],
                     reply: str, fail: Fail, tools: Tools = None) -> tuple[int, ...]:
        """The tokens of an assistant reply to ``messages`` (whose prompt is ``prompt``);
        a reply to a plain prompt is the simple template's reply."""
        if messages is None:
            return tuple(render_reply(self.tokenizer(), reply))
        return self.chat.reply(messages, prompt, reply, fail, tools)

    def turn_break(self, messages: Messages, prompt: tuple[int, ...], fail: Fail,
                   tools: Tools = None) -> tuple[bool, TemplateBreak | None]:
        return self.chat.turn_break(messages, prompt, fail, tools)
