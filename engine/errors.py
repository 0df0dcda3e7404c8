"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or settings; ``str(err)`` is the whole message shown to the user."""

    exit_code = 2


class TraceError(UserError):
    """A problem at one place in a trace file: ``path:line: message``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
