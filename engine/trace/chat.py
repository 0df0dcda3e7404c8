"""Chat templates for ``messages`` (``--chat-template``), and where a later conversation
turn stops extending the previous one.

- ``simple`` (the default): prefix-tui's fixed plain-text template (engine.trace.tokenize):
  pieces tokenized apart, so turn k+1 always extends turn k's prompt + reply.
- ``tokenizer``: the chat template of the ``--tokenizer`` directory, through transformers'
  ``apply_chat_template`` (local files only, never remote code).
- ``FILE.jinja``: a template file, rendered the way transformers renders one: jinja2's
  ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop controls, its tojson,
  raise_exception and strftime_now, and the tokenizer's special tokens (bos_token, ...) when
  it has them. A template is untrusted input: the sandbox keeps it from Python's internals.

A rendered prompt is tokenized whole, as vLLM's server does (special tokens in the text are
the tokenizer's, none added). A reply is what the template renders for the assistant
message after the generation prompt. For a request whose messages hold an earlier assistant
reply, the previous turn is re-rendered (its messages up to that reply: prompt + reply) and
compared with this prompt token by token: the first difference is a TemplateBreak.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.model import TemplateBreak
from engine.trace.fields import Fail
from engine.trace.tokenize import Tokenizer, messages_text, render_messages, render_reply

SIMPLE = "simple"
TOKENIZER = "tokenizer"
CONTEXT_TOKENS = 8  # decoded around a break, each side
CONTEXT_CHARS = 60

Messages = Sequence[Mapping[str, Any]]  # role and content (text), and for Jinja any other field
Tools = Sequence[Any] | None  # an OpenAI request's ``tools``, for templates that render them


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clip(text: str, tail: bool = False) -> str:
    if len(text) <= CONTEXT_CHARS:
        return text
    return "…" + text[-CONTEXT_CHARS:] if tail else text[:CONTEXT_CHARS] + "…"


def first_difference(previous: Sequence[int], prompt: Sequence[int]) -> int | None:
    """The first position where ``prompt`` stops extending ``previous`` (None: it does)."""
    n = min(len(previous), len(prompt))
    for i in range(n):
        if previous[i] != prompt[i]:
            return i
    return None if len(prompt) >= len(previous) else n


def make_break(tok: Tokenizer, previous: Sequence[int], prompt: Sequence[int], i: int) -> TemplateBreak:
    return TemplateBreak(
        position=i,
        previous_tokens=len(previous),
        expected=previous[i] if i < len(previous) else None,
        found=prompt[i] if i < len(prompt) else None,
        before=_clip(tok.decode(prompt[max(0, i - CONTEXT_TOKENS): i]), tail=True),
        expected_text=_clip(tok.decode(previous[i: i + CONTEXT_TOKENS])),
        found_text=_clip(tok.decode(prompt[i: i + CONTEXT_TOKENS])),
    )


def previous_reply(messages: Messages) -> int | None:
    """The index of the last assistant message that something follows (this request is a
    later turn of a conversation), or None."""
    for j in range(len(messages) - 2, 0, -1):
        if messages[j]["role"] == "assistant":
            return j
    return None


class ChatTemplate:
    """Renders messages to tokens. ``fail(msg)`` builds the error for the trace line."""

    name = SIMPLE
    checks_turns = False  # the simple template extends every turn by construction

    def __init__(self, tokenizer: Callable[[], Tokenizer]) -> None:
        self.tokenizer = tokenizer

    def prompt(self, messages: Messages, fail: Fail, tools: Tools = None) -> tuple[tuple[int, ...], str]:
        """The prompt's tokens (with the generation prompt) and its text, for display."""
        return tuple(render_messages(self.tokenizer(), messages)), messages_text(messages)

    def reply(self, messages: Messages, prompt: Sequence[int], reply: str | Mapping[str, Any],
              fail: Fail, tools: Tools = None) -> tuple[int, ...]:
        """The tokens of ``reply`` (its text, or the whole assistant message), the answer
        to ``messages``."""
        text = reply if isinstance(reply, str) else reply["content"]
        return tuple(render_reply(self.tokenizer(), text))

    def turn_break(self, messages: Messages, prompt: Sequence[int], fail: Fail, tools: Tools = None
                   ) -> tuple[bool, TemplateBreak | None]:
        """(was this checked as a later turn, where its prompt stops extending the
        previous turn)."""
        j = previous_reply(messages) if self.checks_turns else None
        if j is None:
            return False, None
        before = messages[:j]
        prev_prompt, _ = self.prompt(before, fail, tools)
        previous = prev_prompt + self.reply(before, prev_prompt, messages[j], fail, tools)
        i = first_difference(previous, prompt)
        return True, (None if i is None else make_break(self.tokenizer(), previous, prompt, i))


class JinjaTemplate(ChatTemplate):
    """A Jinja chat template: rendered to text, then tokenized whole."""

    checks_turns = True

    def __init__(self, name: str, tokenizer: Callable[[], Tokenizer],
                 render: Callable[[Messages, bool, Tools], str]) -> None:
        super().__init__(tokenizer)
        self.name = name
        self._render = render

    def text(self, messages: Messages, generation: bool, fail: Fail, tools: Tools = None) -> str:
        try:
            return self._render(messages, generation, tools)
        except UserError:
            raise
        except Exception as exc:  # a template raises what it likes (raise_exception, TypeError...)
            raise fail(f"chat template {self.name}: {_one_line(exc)}") from None

    def _tokens(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer().encode(text))

    def prompt(self, messages: Messages, fail: Fail, tools: Tools = None) -> tuple[tuple[int, ...], str]:
        text = self.text(messages, True, fail, tools)
        return self._tokens(text), text

    def reply(self, messages: Messages, prompt: Sequence[int], reply: str | Mapping[str, Any],
              fail: Fail, tools: Tools = None) -> tuple[int, ...]:
        # What the template renders after the generation prompt for this answer (its
        # end-of-turn marker included), tokenized on its own: the model generates these
        # tokens after the prompt's, it does not re-tokenize the prompt with them.
        message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
        head = self.text(messages, True, fail, tools)
        whole = self.text([*messages, message], False, fail, tools)
        if whole.startswith(head):
            return self._tokens(whole[len(head):])
        # The template renders the prompt differently once an answer follows: the reply
        # alone is the best guess of what was generated.
        return self._tokens(message.get("content") or "")


# -- Jinja, as transformers sets it up ---------------------------------------------------------

def _environment() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """``{% generation %}`` marks assistant text for transformers' masks; renders as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def compile_template(source: str, where: str) -> Any:
    """A compiled template; a syntax error is one line ``where:line: ...``."""
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{where}:{exc.lineno}: chat template syntax error: {' '.join(exc.message.split()) if exc.message else 'invalid'}") from None


def _special_tokens(tok: Tokenizer) -> dict[str, str]:
    hf = tok.hf
    if hf is None:
        return {}
    return {k: v for k, v in getattr(hf, "special_tokens_map", {}).items() if isinstance(v, str)}


def file_template(path: str, tokenizer: Callable[[], Tokenizer]) -> JinjaTemplate:
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{path}: --chat-template is a directory, not a .jinja file")
    try:
        source = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: --chat-template: no such file (or give simple or tokenizer)") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: chat template is not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the chat template: {exc.strerror or exc}") from None
    compiled = compile_template(source, path)

    def render(messages: Messages, generation: bool, tools: Tools) -> str:
        return compiled.render(messages=[dict(m) for m in messages], add_generation_prompt=generation,
                               tools=list(tools) if tools is not None else None, documents=None,
                               **_special_tokens(tokenizer()))

    return JinjaTemplate(path, tokenizer, render)


def tokenizer_template(tokenizer: Callable[[], Tokenizer], tokenizer_name: str | None) -> JinjaTemplate:
    """The --tokenizer directory's own template, through transformers' apply_chat_template."""
    where = tokenizer_name or "the default tokenizer"
    checked: list[Any] = []

    def hf() -> Any:
        if checked:
            return checked[0]
        tok = tokenizer()
        if tok.hf is None:
            raise UserError(f"--chat-template tokenizer: {where} has no chat template (it is not a "
                            "Hugging Face tokenizer directory); give --tokenizer DIR with one, or a "
                            "template file: --chat-template FILE.jinja")
        if not getattr(tok.hf, "chat_template", None):
            raise UserError(f"--chat-template tokenizer: {where} has no chat template "
                            "(tokenizer_config.json's chat_template or chat_template.jinja)")
        template = tok.hf.chat_template
        for source in (template.values() if isinstance(template, dict) else [template]):
            compile_template(source, f"{where} (its chat template)")  # one line, not transformers' traceback
        checked.append(tok.hf)
        return tok.hf

    def render(messages: Messages, generation: bool, tools: Tools) -> str:
        return hf().apply_chat_template([dict(m) for m in messages], tokenize=False,
                                        add_generation_prompt=generation,
                                        tools=list(tools) if tools is not None else None)

    return JinjaTemplate(f"{where}'s template", tokenizer, render)


def load_chat_template(spec: str | None, tokenizer: Callable[[], Tokenizer],
                       tokenizer_name: str | None) -> ChatTemplate:
    """``simple`` (or None), ``tokenizer``, or a template file (checked here: a bad file is
    one line before any request is read)."""
    if spec in (None, "", SIMPLE):
        return ChatTemplate(tokenizer)
    if spec == TOKENIZER:
        return tokenizer_template(tokenizer, tokenizer_name)
    return file_template(spec, tokenizer)
