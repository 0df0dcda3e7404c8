"""The one request type every trace format is read into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace, already tokenized.

    ``index`` is the 0-based position among requests (blank lines skipped); ``line`` the
    1-based line in the file, for messages. ``output_token_ids`` is known for native traces
    that give it; otherwise only ``output_len`` is, and the replay synthesizes tokens that
    can never match a prompt (an unknown reply cannot be a cache hit).
    """

    index: int
    line: int
    request_id: str
    arrival_time: float
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...] | None = None
    output_len: int = 0
    conversation_id: str | None = None
    turn: int | None = None
    # Prompt text as given (prompt/messages formats), for display only; untrusted.
    text: str | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        if self.output_token_ids is not None:
            return len(self.output_token_ids)
        return self.output_len
