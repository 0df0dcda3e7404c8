"""Writing picture files: whole or not at all, never over an existing file unless asked.

``write_new`` claims a name with a hard link from a finished temp file, which fails when
the name exists (atomic, even if another process takes the name at the same moment);
``unique_path`` tries name, name-2, name-3, ... for the inspector's `s`, which never
overwrites.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path, fill: Callable[[Path], None]) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        fill(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # what a plain open() would give (mkstemp: 0600)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


def write_file(path: str | Path, fill: Callable[[Path], None], force: bool) -> None:
    """``fill(tmp)`` writes the content to a temp file beside ``path``; it then becomes
    ``path`` (replacing it only with ``force``)."""
    p = Path(path)
    tmp = _temp_beside(p, fill)
    try:
        if force:
            os.replace(tmp, p)
            return
        try:
            os.link(tmp, p)
        except FileExistsError:
            raise UserError(f"{p}: exists; pass --force to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_unique(directory: str | Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``text`` to directory/stem+suffix, or stem-2, stem-3, ...: never over a file."""
    d = Path(directory)
    tmp = _temp_beside(d / f"{stem}{suffix}", lambda t: t.write_text(text, encoding="utf-8"))
    try:
        n = 1
        while True:
            candidate = d / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, candidate)
                return candidate
            except FileExistsError:
                n += 1
    finally:
        tmp.unlink(missing_ok=True)
