"""A KV event stream read back with vLLM's own classes (attach, `prefix-tui events FILE`):
msgpack payloads as vLLM's ZmqEventPublisher sends them, or msgspec JSON lines as
--export-events writes them, into engine.kvevents.model.DecodedBatch.

Never trusts its input: the fast path decodes a whole ``KVEventBatch`` with msgspec; a
batch that does not fit is taken apart event by event, so one bad event costs only itself
and every problem is counted (garbage, wrong shape, unknown tag, a hash of the wrong type).
"""

from __future__ import annotations

from typing import Any, Union

from engine.backends.vllm_v1 import events as convert_events
from engine.backends.vllm_v1.imports import import_vllm
from engine.kvevents.model import DecodedBatch
from engine.model import KVEvent

_MAX_ERROR = 160  # characters of a problem kept for display


class BatchDecoder:
    """Decodes one payload at a time; learns the stream's hash type (int or bytes) from
    its first hash unless told, and counts events whose hashes are of another type."""

    def __init__(self, json: bool = False, hash_type: type | None = None) -> None:
        import_vllm()
        import msgspec
        from vllm.distributed import kv_events as kv

        self._msgspec = msgspec
        self._kv = kv
        mod = msgspec.json if json else msgspec.msgpack
        self._typed = mod.Decoder(kv.KVEventBatch)
        self._generic = mod.Decoder()
        self._event_type = Union[kv.BlockStored, kv.BlockRemoved, kv.AllBlocksCleared]
        self._tags = {"BlockStored", "BlockRemoved", "AllBlocksCleared"}
        self._json = json
        self.hash_type = hash_type

    def decode(self, payload: bytes) -> DecodedBatch:
        msgspec = self._msgspec
        try:
            batch = self._typed.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._slow(payload)
        return self._checked(batch.ts, convert_events.convert(batch.events))

    # -- the slow path: event by event ------------------------------------------------------
    def _slow(self, payload: bytes) -> DecodedBatch:
        msgspec = self._msgspec
        try:
            raw = self._generic.decode(payload)
        except msgspec.DecodeError as exc:
            return DecodedBatch(None, (), malformed=True, error=_line(f"not {self._what}: {exc}"))
        if (not isinstance(raw, list) or len(raw) < 2 or isinstance(raw[0], bool)
                or not isinstance(raw[0], (int, float)) or not isinstance(raw[1], list)):
            return DecodedBatch(None, (), malformed=True,
                                error=_line(f"not a KVEventBatch [ts, events, rank]: "
                                            f"{_shape(raw)}"))
        good: list[Any] = []
        bad = unknown = 0
        error = ""
        for i, ev in enumerate(raw[1]):
            tag = ev.get("type") if isinstance(ev, dict) else None
            if isinstance(tag, str) and tag not in self._tags:
                unknown += 1
                error = error or _line(f"event {i}: unknown type {tag!r}")
                continue
            try:
                good.append(msgspec.convert(ev, type=self._event_type))
            except msgspec.ValidationError as exc:
                bad += 1
                error = error or _line(f"event {i}: {exc}")
        checked = self._checked(float(raw[0]), convert_events.convert(good))
        return DecodedBatch(checked.ts, checked.events, bad_events=bad, unknown_tags=unknown,
                            wrong_hash_types=checked.wrong_hash_types,
                            error=error or checked.error)

    @property
    def _what(self) -> str:
        return "JSON" if self._json else "msgpack"

    def _checked(self, ts: float, evs: tuple[KVEvent, ...]) -> DecodedBatch:
        """Drop events whose hashes are not the stream's type (counted)."""
        want = self.hash_type
        keep: list[KVEvent] = []
        wrong = 0
        for ev in evs:
            hashes = ev.block_hashes if ev.parent_hash is None else (
                *ev.block_hashes, ev.parent_hash)
            if want is None and hashes:
                want = self.hash_type = type(hashes[0])
            if any(type(h) is not want for h in hashes):
                wrong += 1
                continue
            keep.append(ev)
        if not wrong:
            return DecodedBatch(ts, evs)
        name = want.__name__ if want is not None else "?"
        return DecodedBatch(ts, tuple(keep), wrong_hash_types=wrong,
                            error=f"{wrong} event(s) with hashes that are not {name} "
                                  f"(the stream's type)")


def _shape(obj: object) -> str:
    if isinstance(obj, list):
        return f"an array of {len(obj)}"
    return f"a {type(obj).__name__}"


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
