"""Opening a trace file: plain JSONL, gzip or zstd, decompressed lazily as it is read.

The compression is told by the file's first bytes (its magic number), not by its name, so a
gzipped trace named ``.jsonl`` reads as well as ``.jsonl.gz``. Formats prefix-tui cannot read
(xz, bzip2, zip, Parquet, a zstd file without the ``zstandard`` package) are named in one
line instead of the "not valid UTF-8" they would otherwise produce.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from engine.errors import TraceError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Formats we cannot read, by magic number: what they are, as the message names them.
UNREADABLE = (
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
READS = "prefix-tui reads JSON Lines, plain, gzip (.gz) or zstd (.zst)"


def zstd_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("zstandard") is not None


class OpenedTrace:
    """A trace file opened for reading lines; ``position()`` is how far into the file on
    disk (compressed bytes) reading has come, for progress against ``total_bytes``."""

    def __init__(self, path: str, raw: BinaryIO, stream: BinaryIO, compression: str | None) -> None:
        self.path = path
        self._raw = raw
        self._stream = stream
        self.compression = compression  # None, "gzip" or "zstd"
        self.total_bytes = os.fstat(raw.fileno()).st_size

    def position(self) -> int:
        return self._raw.tell()

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(1-based line number, raw line); a corrupt or cut-off compressed stream is a
        TraceError naming the line it stopped at."""
        lineno = 0
        it = iter(self._stream)
        while True:
            try:
                raw = next(it)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:
                raise TraceError(self.path, lineno + 1, self._broken(exc)) from None
            except Exception as exc:  # zstandard.ZstdError: not importable unless installed
                if self.compression != "zstd" or type(exc).__name__ != "ZstdError":
                    raise
                raise TraceError(self.path, lineno + 1, self._broken(exc)) from None
            lineno += 1
            yield lineno, raw

    def _broken(self, exc: BaseException) -> str:
        what = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, EOFError):
            what = "the file ends in the middle of the compressed stream (cut off?)"
        return f"the {self.compression} stream is corrupt: {what}"

    def close(self) -> None:
        self._stream.close()
        self._raw.close()

    def __enter__(self) -> OpenedTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_trace(path: str) -> OpenedTrace:
    """Open ``path`` for reading, decompressing by its magic number."""
    p = Path(path)
    if p.is_dir():
        raise TraceError(path, None, "is a directory, not a trace file")
    try:
        raw = open(p, "rb")
    except FileNotFoundError:
        raise TraceError(path, None, "no such file") from None
    except PermissionError:
        raise TraceError(path, None, "permission denied") from None
    except OSError as exc:
        raise TraceError(path, None, f"cannot open: {exc.strerror or exc}") from None
    try:
        head = raw.read(16)
        raw.seek(0)
        return _wrap(path, raw, head)
    except BaseException:
        raw.close()
        raise


def _wrap(path: str, raw: BinaryIO, head: bytes) -> OpenedTrace:
    name = Path(path).name.lower()
    if head.startswith(GZIP_MAGIC):
        return OpenedTrace(path, raw, gzip.GzipFile(fileobj=raw, mode="rb"), "gzip")
    if head.startswith(ZSTD_MAGIC):
        if not zstd_available():
            raise TraceError(path, None, "is zstd-compressed and the zstandard package is not "
                             "installed: pip install zstandard, or decompress it (zstd -d)")
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return OpenedTrace(path, raw, io.BufferedReader(reader), "zstd")
    for magic, what in UNREADABLE:
        if head.startswith(magic):
            raise TraceError(path, None, f"is {what}; {READS}")
    if name.endswith((".gz", ".gzip")) and head:
        raise TraceError(path, None, "is named .gz but is not gzip-compressed "
                         f"(its first bytes are {head[:4]!r}); rename it or compress it")
    if name.endswith(".zst") and head:
        raise TraceError(path, None, "is named .zst but is not zstd-compressed "
                         f"(its first bytes are {head[:4]!r}); rename it or compress it")
    return OpenedTrace(path, raw, raw, None)
