"""Plain data for a KV event stream read back (attach, events FILE): one decoded batch and
what was wrong with it. vLLM-free: the adapter's decoder (engine.backends.vllm_v1.
kvdecode) fills these from vLLM's own classes."""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import KVEvent


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """One KVEventBatch: its events as engine.model.KVEvent (hashes int or bytes, as
    sent), or why it could not be read. A batch can be partly good: bad events are
    counted and left out, good ones kept."""

    ts: float | None
    events: tuple[KVEvent, ...]
    malformed: bool = False  # not a KVEventBatch at all (garbage, wrong shape)
    bad_events: int = 0  # events of a known type that do not fit vLLM's class
    unknown_tags: int = 0  # events tagged with a type vLLM 0.33 does not have
    wrong_hash_types: int = 0  # events whose hashes are not the stream's type
    error: str = ""  # the first problem, one line (untrusted text: shown through safe_text)

    @property
    def problems(self) -> int:
        return int(self.malformed) + self.bad_events + self.unknown_tags + self.wrong_hash_types
