"""Making untrusted trace text safe to put on a terminal.

Request ids, prompt text and decoded tokens come from the trace file. They are never
parsed as markup (callers wrap them in rich.text.Text / Content), and before that they
pass through ``safe_text``, which makes every control character visible instead of
letting it act: an ESC that reached the terminal could recolour it, move the cursor or
(OSC 52) write the clipboard, and a bidi override could make text read differently
from what it is.
"""

from __future__ import annotations

import re

# C0 controls become their Unicode "control picture" (U+2400 + code): ESC shows as ␛, so
# "\x1b[31m" reads as the inert text "␛[31m" rather than disappearing without a trace.
_C0 = {c: chr(0x2400 + c) for c in range(0x20)}
_C0[0x7F] = "\u2421"  # ␡
# C1 controls (U+0080..U+009F: 8-bit CSI, OSC, ...) have no pictures: replacement char.
_C1 = {c: "\ufffd" for c in range(0x80, 0xA0)}
# Bidi embeddings/overrides/isolates and marks, line/paragraph separators, BOM/ZWNBSP.
_FORMAT = {
    c: "\ufffd"
    for c in (
        *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
        *range(0x2066, 0x206A),  # LRI RLI FSI PDI
        0x200E, 0x200F, 0x061C,  # LRM RLM ALM
    )
}
_FORMAT.update({0x2028: " ", 0x2029: " ", 0xFEFF: ""})

_TABLE = {**_C0, **_C1, **_FORMAT}
_TABLE_KEEP_NL = {**_TABLE, 0x0A: "\n"}
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def safe_text(s: object, *, keep_newlines: bool = False) -> str:
    """``s`` as a string with no character that a terminal would act on.

    Tabs and newlines become ␉ and ␊ too (one display line stays one line) unless
    ``keep_newlines``, which keeps newlines for multi-line panes.
    """
    text = s if isinstance(s, str) else str(s)
    if not _UNSAFE.search(text):
        return text  # the common case costs one regex scan
    return text.translate(_TABLE_KEEP_NL if keep_newlines else _TABLE)


def clip(s: str, width: int) -> str:
    """Cut to ``width`` characters with an ellipsis (for ids in narrow columns)."""
    if width <= 0:
        return ""
    return s if len(s) <= width else s[: max(0, width - 1)] + "…"
