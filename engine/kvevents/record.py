"""attach --record FILE: the messages attach applied, in sequence order, in the msgpack
stream format (engine.kvevents.frames), with a sidecar like --export-events'. Written
beside the target and renamed at the end: never a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine.kvevents.frames import write_message
from engine.kvevents.options import meta_path


class Recorder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent or ".")
        self._fh = os.fdopen(fd, "wb", buffering=1 << 20)
        self.messages = 0

    def __call__(self, frames: list[bytes]) -> None:
        write_message(self._fh, frames)
        self.messages += 1

    def close(self, meta: dict) -> None:
        """Rename into place with its sidecar (``meta`` adds to the format keys)."""
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
        side = meta_path(self.path)
        fd, side_tmp = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".tmp",
                                        dir=side.parent or ".")
        try:
            self._fh.close()
            doc = {
                "format": "vllm-kv-events",
                "encoding": "msgpack",
                "framing": "per batch three frames as vLLM's ZmqEventPublisher sends them "
                           "(topic, 8-byte big-endian sequence number, msgpack KVEventBatch), "
                           "each a 4-byte big-endian length and the frame's bytes",
                "batches": self.messages,
                **meta,
            }
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.write("\n")
            for tmp in (side_tmp, self._tmp):
                os.chmod(tmp, mode)
            os.replace(side_tmp, side)
            os.replace(self._tmp, self.path)
        except BaseException:
            Path(side_tmp).unlink(missing_ok=True)
            Path(self._tmp).unlink(missing_ok=True)
            raise
