"""Messages up: what the worker threads and the panes tell the app.

Workers never touch widgets; they post these (``post_message`` is thread-safe) and the
app reacts on its own thread. Progress messages carry a snapshot (counts), not data: the
data lives in the feed's append-only lists, so a newer message can replace an older one
still waiting in the queue (``can_replace``) and a fast producer never floods the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engine.model import KVGroupInfo, SchedulerInfo


class TraceProgress(Message):
    """The trace reader has read ``count`` requests (``feed.requests[:count]``)."""

    def __init__(self, count: int, bytes_read: int, total_bytes: int, done: bool) -> None:
        super().__init__()
        self.count = count
        self.bytes_read = bytes_read
        self.total_bytes = total_bytes
        self.done = done

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TraceProgress)


class TraceFailed(Message):
    """The trace could not be read (further); ``text`` is ``file:line: message``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class EngineStatus(Message):
    """A line saying what the engine worker is doing (importing vLLM, building the pool)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineStatus)


class EngineReady(Message):
    """vLLM is up; ``info`` is the scheduler vLLM built (scheduler backends), else None;
    ``groups`` the KV cache groups vLLM built (several with --hf-config)."""

    def __init__(self, vllm_version: str, info: SchedulerInfo | None = None,
                 groups: tuple[KVGroupInfo, ...] = ()) -> None:
        super().__init__()
        self.vllm_version = vllm_version
        self.info = info
        self.groups = groups


class EngineFailed(Message):
    def __init__(self, text: str, traceback: str = "") -> None:
        super().__init__()
        self.text = text
        self.traceback = traceback


class ReplayProgress(Message):
    """``count`` step records exist (``feed.records[:count]``); ``done`` once the replay
    has ended (end of trace, vLLM error, or trace error)."""

    def __init__(self, count: int, done: bool = False) -> None:
        super().__init__()
        self.count = count
        self.done = done

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ReplayProgress)


class BlockClicked(Message):
    """A block was clicked in the pool map or the block table."""

    def __init__(self, block_id: int, source: str) -> None:
        super().__init__()
        self.block_id = block_id
        self.source = source


class BlockReport(Message):
    """The block inspector's scan of the records finished (see widgets.block_inspector)."""

    def __init__(self, report: object) -> None:
        super().__init__()
        self.report = report
