"""Pictures for slides: `s` in the inspector (a new file each time, never over one),
`--screenshot-at STEP -o FILE.svg` without a terminal, and `--headless --plot` (vLLM's hit
rate per request and cumulative, checked on a hand-worked trace)."""

from __future__ import annotations

import html

import pytest

from engine.backends import BuildOptions, lookup
from engine.plotdata import HitRateSeries
from engine.settings import EngineSettings
from engine.trace.reader import TraceSource
from tests.conftest import ROOT
from tests.test_tui_support import CHAT, at_step, chat_trace, inspector_app, wait_until
from tui.cli import main

LESSON1 = str(ROOT / "traces" / "lessons" / "01-blocks-and-hashes.jsonl")
SMALL = ["--block-size", "4", "--num-gpu-blocks-override", "16"]


def svg_text(path) -> str:
    """The words of a Textual SVG screenshot (it writes spaces as &#160;)."""
    return html.unescape(path.read_text(encoding="utf-8")).replace("\xa0", " ")


async def test_s_saves_a_new_svg_each_time_and_never_overwrites(tmp_path, monkeypatch):
    taken = tmp_path / "prefix-tui-requests-step3.svg"  # the name the first press would take
    app = inspector_app(CHAT, requests=chat_trace())
    app.main.trace_name = "requests"
    taken.write_text("precious")
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.history.position >= 0)
        app.main.goto(2)
        await wait_until(pilot, at_step(app, 2))
        monkeypatch.chdir(tmp_path)  # `s` saves in the current directory
        await pilot.press("s")
        await wait_until(pilot, lambda: (tmp_path / "prefix-tui-requests-step3-2.svg").exists())
        await pilot.press("s")
        await wait_until(pilot, lambda: (tmp_path / "prefix-tui-requests-step3-3.svg").exists())
    assert taken.read_text() == "precious"
    words = svg_text(tmp_path / "prefix-tui-requests-step3-2.svg")
    assert words.lstrip().startswith("<svg") and "step 3 / 13" in words


def test_screenshot_at_a_step_without_a_terminal(tmp_path, capsys):
    out = tmp_path / "slide.svg"
    assert main([LESSON1, *SMALL, "--screenshot-at", "2", "-o", str(out)]) == 0
    words = svg_text(out)
    assert "step 2 / 4" in words and "01-blocks-and-hashes.jsonl" in words
    # Request "same" hit its two full blocks: the sentence says so.
    assert "2 of 3 prompt blocks reused from cache" in words
    # Never over an existing file without --force; --force replaces it.
    out.write_text("precious")
    assert main([LESSON1, *SMALL, "--screenshot-at", "2", "-o", str(out)]) == 2
    assert out.read_text() == "precious"
    assert "exists; pass --force" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--screenshot-at", "9", "-o", "{out}"], "there is no such step; the replay has 4 steps"),
    (["--screenshot-at", "2"], "--screenshot-at needs -o FILE.svg"),
    (["--screenshot-at", "2", "-o", "{tmp}/x.png"], "the name must end in .svg"),
    (["--screenshot-at", "2", "-o", LESSON1.replace(".jsonl", ".svg"), "--headless"], "not with --headless"),
    (["-o", "{out}"], "-o goes with --screenshot-at"),
    (["--plot", "{tmp}/p.png"], "--plot goes with --headless"),
    (["--headless", "--plot", "{tmp}/p.jpg"], "must end in .png or .svg"),
    (["--headless", "--plot", LESSON1], "must end in .png or .svg"),
    (["--headless", "--plot", "{tmp}/nodir/p.svg"], "no such directory"),
])
def test_picture_flags_refuse_with_one_line(tmp_path, capsys, argv, words):
    argv = [a.format(out=tmp_path / "o.svg", tmp=tmp_path) for a in argv]
    assert main([LESSON1, *SMALL, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o.svg").exists()


def test_hit_rate_series_is_vllms_per_request_and_cumulative():
    # Lesson 1's trace at block size 4: 10 tokens, resent (8 hit), new tail (8 hit), one
    # token off in block 1 (0 hit). vLLM queries every prompt token: 10 per request.
    entry = lookup("v1", "sequential")
    backend = entry.build(BuildOptions(EngineSettings(block_size=4, num_blocks=16)))
    series = HitRateSeries()
    for rec in backend.replay(TraceSource(LESSON1).reader(), detail=False):
        series.add(rec)
    assert list(series.request_steps) == [1, 2, 3, 4]
    assert list(series.per_request) == [0.0, 0.8, 0.8, 0.0]
    assert list(series.steps) == [1, 2, 3, 4]
    assert list(series.cumulative) == pytest.approx([0 / 10, 8 / 20, 16 / 30, 16 / 40])


def test_plot_writes_png_and_svg_files_and_keeps_existing_ones(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    png, svg = tmp_path / "hit.png", tmp_path / "hit.svg"
    assert main([LESSON1, *SMALL, "--headless", "--no-progress", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([LESSON1, *SMALL, "--headless", "--no-progress", "--plot", str(svg)]) == 0
    assert "<svg" in svg.read_text()[:2000]
    capsys.readouterr()
    svg.write_text("precious")
    assert main([LESSON1, *SMALL, "--headless", "--no-progress", "--plot", str(svg)]) == 2
    assert svg.read_text() == "precious"
    assert main([LESSON1, *SMALL, "--headless", "--no-progress", "--plot", str(svg), "--force"]) == 0
    assert "<svg" in svg.read_text()[:2000]
