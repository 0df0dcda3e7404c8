"""Trace text is untrusted: it is never parsed as markup and no control character or
escape sequence reaches the terminal."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Region

from engine.model import TraceRequest
from tests.test_tui_support import CHAT, at_step, wait_until, inspector_app
from tui.widgets.request_panel import RequestPanel
from tui.widgets.safe import safe_text
from tui.widgets.sequences import SequenceTable

NASTY = "[bold red]x[/]\x1b[31m"


def test_safe_text_shows_markup_literally_and_defuses_controls():
    assert safe_text("plain id-1") == "plain id-1"
    assert safe_text(NASTY) == "[bold red]x[/]␛[31m"
    s = safe_text("a\x1b]52;c;aGk=\x07b\x9b2Jc\u202eevil\u2066d\r\ne\x7f")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in s)
    assert "\u202e" not in s and "\u2066" not in s
    assert s.startswith("a␛]52;c;aGk=␇b")
    assert safe_text("two\nlines", keep_newlines=True) == "two\nlines"
    assert safe_text("two\nlines") == "two␊lines"


def _strip_text(widget) -> tuple[str, list]:
    region = Region(0, 0, widget.size.width, widget.size.height)
    strips = widget.render_lines(region)
    segments = [seg for strip in strips for seg in strip]
    return "".join(seg.text for seg in segments), segments


async def test_nasty_request_id_and_text_show_literally():
    req = TraceRequest(
        index=0, line=1, request_id=NASTY, arrival_time=0.0,
        prompt_token_ids=tuple(range(1, 10)), output_len=2,
        conversation_id="conv\x1b]0;title\x07", turn=0, text=NASTY,
    )
    app = inspector_app(CHAT, requests=[req])
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        panel = app.query_one(RequestPanel)
        text, segments = _strip_text(panel)
        assert "[bold red]x[/]␛[31m" in text
        assert "conv␛]0;title␇" in text
        assert "\x1b" not in text and "\x07" not in text
        # No markup was applied: the "x" inside the brackets is styled like its neighbours.
        for seg in segments:
            if "[bold red]x" in seg.text:
                assert not (seg.style and seg.style.color and seg.style.color.name == "red")
        table = app.query_one(SequenceTable)
        cell = table.get_cell("0", "id")
        assert isinstance(cell, Text) and cell.plain.startswith("[bold red")
        assert not cell.spans
        svg = app.export_screenshot()
        assert "\x1b" not in svg
        assert "[bold&#160;red]x[/]" in svg or "[bold red]x[/]" in svg
