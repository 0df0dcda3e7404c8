"""``c`` in the inspector: a capacity sweep of the trace shown, at pool sizes around the
one shown, on the sweep screen; ``q`` comes back to the inspector where it was."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.backends import BuildOptions, lookup
from engine.errors import UserError
from engine.sweep.around import plan_around, pools_around
from engine.trace.reader import TraceSource
from tests.test_tui_support import TINY, eviction_trace, inspector_app, wait_until
from tui.screens.sweep import SweepScreen


def test_pools_around_go_from_a_quarter_to_four_times_and_inf():
    assert pools_around(10_000) == [2_500, 5_000, 10_000, 20_000, 40_000, None]
    assert pools_around(5) == [2, 5, 10, 20, None]  # a quarter and a half round to 1 and 2


def test_only_v1_with_one_kv_group_is_swept(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt_token_ids": [1, 2, 3]}\n')
    options = BuildOptions(TINY)
    with pytest.raises(UserError, match="runs vLLM V1"):
        plan_around(dataclasses.replace(lookup("v1", "sequential"), engine="v0"), options,
                    TraceSource(str(path)))
    plan = plan_around(lookup("v1", "sequential"), options, TraceSource(str(path)))
    assert [s.num_blocks for s in plan.specs] == pools_around(TINY.num_blocks)


async def test_c_sweeps_the_trace_shown_and_q_comes_back(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({
        "request_id": q.request_id, "prompt_token_ids": list(q.prompt_token_ids),
        "output_len": q.output_len, "arrival_time": q.arrival_time}) + "\n"
        for q in eviction_trace()))
    app = inspector_app(TINY, str(path))
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.main
        await wait_until(pilot, lambda: main.feed.replay_done and main.history.position == 0)
        await pilot.press("right")
        await wait_until(pilot, lambda: main.history.position == 1)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, SweepScreen))
        sweep = app.screen
        await wait_until(pilot, lambda: sweep.finished, timeout=300)
        outcome = sweep.outcome()
        assert [s.num_blocks for s in outcome.plan.specs] == [6, 12, 24, 48, 96, None]
        assert all(r.status == "complete" for r in outcome.results)
        # The point at the inspector's own pool is the inspector's replay, run again.
        shown = main.feed.records[-1].totals
        here = next(r for s, r in outcome.point_pairs() if s.num_blocks == TINY.num_blocks)
        assert (here.totals.hits, here.totals.queries, here.totals.evictions) == (
            shown.hits, shown.queries, shown.evictions)
        assert shown.evictions > 0  # the trace evicts at this pool: a point worth seeing
        await pilot.press("q")
        await wait_until(pilot, lambda: app.screen is main)
        assert main.history.position == 1 and app.is_running


def test_the_resource_tracker_starts_with_the_real_stderr_under_an_app(monkeypatch):
    # Under a Textual app sys.stderr is its capture, whose fileno() is -1: multiprocessing's
    # resource tracker would pass -1 to its process and every spawn would fail ("bad
    # value(s) in fds_to_keep"), as `sweep --tui` did in a real terminal.
    import sys
    from multiprocessing import resource_tracker

    from engine.sweep.executors import start_resource_tracker

    class Capture:
        def fileno(self) -> int:
            return -1

    capture = Capture()
    seen = []
    monkeypatch.setattr(sys, "stderr", capture)
    monkeypatch.setattr(resource_tracker, "ensure_running", lambda: seen.append(sys.stderr))
    start_resource_tracker()
    assert seen == [sys.__stderr__] and sys.stderr is capture
