"""Keys and banners that must say what they did (issue 14): a bad first trace line stops
the engine start, `g` outside the trace, `t` on a wide terminal, `e` before any step, the
requests pane's reach, and the status line's total and time left while End runs."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

from engine.backends import lookup
from tests.test_tui_support import CHAT, at_step, chat_trace, goto_step, inspector_app, wait_until
from tui.app import InspectorApp
from tui.screens.status import TO_THE_END, StatusLine, duration
from tui.widgets.request_panel import RequestPanel
from tui.widgets.sequences import SequenceTable


def _notes(app) -> list[str]:
    notes: list[str] = []
    app.main.notify = lambda message, **kw: notes.append(str(message))
    return notes


async def test_a_bad_first_line_shows_the_trace_error_and_stops_the_engine_start(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": ""}\n{"prompt_token_ids": [1, 2, 3]}\n')
    app = inspector_app(CHAT, str(path))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.engine_status == "stopped")
        text = app.query_one(RequestPanel).render().plain
        assert f"Trace error: {path}:1: prompt must not be empty" in text
        assert "vLLM was not started" in text and "Starting vLLM" not in text
        assert "␊" not in text  # two lines, not a visible newline mark
        assert "vLLM not started" in app.main.header.status
        assert app.main.feed.cancel.is_set()
        # Stays stopped: a build that was under way never starts a replay.
        await pilot.pause(0.5)
        assert app.main.vllm_version is None and not app.main.history.records


async def test_go_to_a_step_outside_the_trace_says_where_it_went():
    app = inspector_app(CHAT, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        last = len(chat_trace()) - 1
        await goto_step(pilot, app, last)
        notes = _notes(app)
        for typed, step in (("0", 0), ("999", last), ("-5", 0)):
            await pilot.press("g", *typed, "enter")
            await wait_until(pilot, at_step(app, step))
        assert notes[0] == "there is no step 0: steps start at 1; went to step 1"
        assert notes[1] == f"there is no step 999: the trace has {last + 1} steps; went to the last"
        assert notes[2] == "there is no step -5: steps start at 1; went to step 1"


async def test_t_on_a_wide_terminal_says_every_pane_is_on_screen():
    app = inspector_app(CHAT, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        notes = _notes(app)
        await pilot.press("t")
        assert notes and "every pane is on screen" in notes[0] and "140 columns" in notes[0]


async def test_e_before_the_first_step_says_what_is_loading():
    started, go = threading.Event(), threading.Event()
    entry = lookup("v1", "sequential")

    def slow_build(options):  # vLLM "importing" until the test says go
        started.set()
        go.wait(60)
        return entry.factory(options)

    app = inspector_app(CHAT, requests=chat_trace())
    app.main.feed.entry = dataclasses.replace(entry, factory=slow_build)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: started.is_set() and app.main.engine_status.startswith("building"))
        notes = _notes(app)
        await pilot.press("e")
        go.set()
        assert notes and notes[0].startswith("no step yet: building vLLM's KV-cache manager")
        await wait_until(pilot, at_step(app, 0))


async def test_requests_pane_title_says_how_far_results_go():
    app = inspector_app(CHAT, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, 5)
        await goto_step(pilot, app, 2)
        table = app.query_one(SequenceTable)
        await wait_until(pilot, lambda: str(table.border_title) == "requests · results up to step 6")
        assert table.get_cell("5", "outcome").plain == "ok" and table.get_cell("6", "hit").plain == "…"


def test_end_shows_steps_of_the_total_and_the_time_left():
    now = [100.0]
    line = StatusLine(clock=lambda: now[0])
    feed = SimpleNamespace(read_done=True, reader_paused=False)
    done = [1000]
    screen = SimpleNamespace(
        feed=feed, engine_status="ready", read_fraction=1.0, trace_error=None,
        history=[None] * 0, target=TO_THE_END, playing=False, waiting_text=lambda: None,
        progress_to=lambda target: (done[0] / 12_000, f"{done[0]:,} / 12,000 steps"),
    )
    assert "replaying to the end: 1,000 / 12,000 steps (8%)" in line.text(screen)
    assert "left" not in line.text(screen)  # no rate yet
    now[0], done[0] = 110.0, 3000  # 2,000 steps in 10 s: 9,000 more take 45 s
    assert line.text(screen).endswith("3,000 / 12,000 steps (25%), about 45 s left")
    now[0], done[0] = 130.0, 7000  # 6,000 in 30 s: 5,000 more take 25 s
    assert line.text(screen).endswith("about 25 s left")
    assert (duration(45), duration(185), duration(7800)) == ("45 s", "3 min 05 s", "2 h 10 min")


async def test_end_while_the_trace_is_read_estimates_the_total():
    app: InspectorApp = inspector_app(CHAT, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        screen = app.main
        screen.feed.read_done = False  # as if a quarter of the file had been read so far
        screen.read_fraction, screen.read_count = 0.25, 13
        fraction, words = screen.progress_to(TO_THE_END)
        assert words == f"{len(screen.history):,} / ~52 steps"
        assert fraction == len(screen.history) / 52
