"""Snapshot tests of the inspector (pytest-textual-snapshot). Regenerate after a deliberate
change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.

Each snapshot waits (run_before) until vLLM is up and the cursor sits on the wanted step,
so no loading text, clock or timing leaks into the picture.
"""

from __future__ import annotations

import pytest

from tests.test_tui_support import (
    inspector_app,
    CHAT,
    EVICTION_STEP,
    TINY,
    chat_trace,
    eviction_trace,
    goto_serve_step,
    goto_step,
    serve_app,
    wait_until,
)


@pytest.fixture(autouse=True)
def _colour(monkeypatch):
    # The pictures are taken in colour whatever the CI shell exports.
    monkeypatch.delenv("NO_COLOR", raising=False)


def _at(index: int, *keys: str):
    async def run_before(pilot) -> None:
        await goto_step(pilot, pilot.app, index)
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_main_screen_80x24(snap_compare):
    app = inspector_app(CHAT, requests=chat_trace())
    assert snap_compare(app, terminal_size=(80, 24), run_before=_at(6))


def test_main_screen_160x50(snap_compare):
    # The last step: a resent prompt, all hits but the recomputed last block (R).
    trace = chat_trace()
    app = inspector_app(CHAT, requests=trace)
    assert snap_compare(app, terminal_size=(160, 50), run_before=_at(len(trace) - 1))


def test_help_screen(snap_compare):
    app = inspector_app(CHAT, requests=chat_trace())
    assert snap_compare(app, terminal_size=(120, 40), run_before=_at(0, "question_mark"))


def test_eviction_step_160x50(snap_compare):
    app = inspector_app(TINY, requests=eviction_trace())
    assert snap_compare(app, terminal_size=(160, 50), run_before=_at(EVICTION_STEP))


def test_serve_preemption_step_160x50(snap_compare):
    # Serve mode at the iteration where vLLM preempts q4: four running block tables that
    # share the system prompt's blocks (s), q4 highlighted in the waiting queue.
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_until(pilot, lambda: app.main.feed.replay_done and app.main.history.position >= 0)
        step = next(r.index for r in app.main.history.records if r.serve.preempted)
        await goto_serve_step(pilot, app, step)
        await pilot.pause()

    assert snap_compare(serve_app(), terminal_size=(160, 50), run_before=run_before)
