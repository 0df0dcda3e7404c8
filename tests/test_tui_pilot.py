"""Pilot tests: drive the inspector with keys and clicks, and check what the panes hold
against the engine's own records and metrics."""

from __future__ import annotations

from engine import metrics
from engine.model import BlockState
from tests.test_tui_support import drawn_glyph, CHAT, EVICTION_STEP, TINY, at_step, chat_trace, eviction_trace, goto_step, wait_until, inspector_app
from tui.app import InspectorApp
from tui.widgets.block_inspector import BlockInspector
from tui.widgets.events import EventsPanel
from tui.widgets.free_queue import FreeQueuePanel
from tui.widgets.modals import ErrorScreen, HelpScreen, PromptScreen
from tui.widgets.pool_map import PoolMap
from tui.widgets.request_panel import RequestPanel
from tui.widgets.sequences import SequenceTable
from tui.widgets.totals import TotalsPanel, totals_values


def chat_app(**kw) -> InspectorApp:
    return inspector_app(CHAT, requests=chat_trace(), **kw)


def assert_shows(app: InspectorApp, index: int) -> None:
    """Every pane shows record ``index``."""
    rec = app.main.history.records[index]
    assert app.main.history.position == index
    seq = rec.seqs[0]
    table = app.main.block_table
    assert table.letters == "".join(s.letter for s in seq.states)
    assert table.block_ids == seq.block_ids
    pool = app.query_one(PoolMap)
    for bid, state in zip(seq.block_ids, seq.states):
        assert drawn_glyph(pool, bid) == state.letter
    totals = app.query_one(TotalsPanel)
    assert totals.values == totals_values(rec.totals)
    assert totals.values["sharing"] == f"{metrics.sharing_fraction(rec.totals):.1%}"
    assert totals.values["hit_rate"] == f"{metrics.hit_rate(rec.totals):.1%}"
    assert totals.values["hit_rate_recent"] == f"{metrics.recent_hit_rate(rec.totals):.1%}"
    assert totals.values["sharing_avg"] == f"{metrics.avg_sharing_fraction(rec.totals):.1%}"
    assert app.query_one(RequestPanel).record is rec
    assert app.query_one(SequenceTable).cursor_row == index
    assert [b for b, _ in app.query_one(FreeQueuePanel).chips()] == list(rec.free_head)
    lines = app.query_one(EventsPanel).lines()
    told = sum(int(text.split()[1].rstrip(":")) for kind, text in lines if kind != "cleared")
    assert told == sum(len(e.block_hashes) for e in rec.events)
    assert app.main.header.step == index + 1


async def test_step_forward_back_and_keys():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        assert_shows(app, 0)
        for i in (1, 2, 3):
            await pilot.press("right")
            await wait_until(pilot, at_step(app, i))
            assert_shows(app, i)
        await pilot.press("n")
        await wait_until(pilot, at_step(app, 4))
        await pilot.press("left", "p")
        await wait_until(pilot, at_step(app, 2))
        assert_shows(app, 2)
        last = len(chat_trace()) - 1
        await pilot.press("end")
        await wait_until(pilot, at_step(app, last))
        assert_shows(app, last)
        assert app.main.header.step_text == f"step {last + 1} / {last + 1}"
        await pilot.press("home")
        await wait_until(pilot, at_step(app, 0))
        assert_shows(app, 0)


async def test_going_back_rebuilds_the_pool_without_vllm():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, 9)
        made = len(app.main.feed.records)
        pool_at_9 = list(app.main.history.pool)
        await goto_step(pilot, app, 2)
        await goto_step(pilot, app, 9)
        assert list(app.main.history.pool) == pool_at_9
        assert len(app.main.feed.records) == made  # nothing re-ran


async def test_recomputed_last_block_is_visible():
    # The last request resends the first, block-aligned prompt: vLLM caps the hit at
    # prompt length - 1, so its last block is recomputed, and the R cell must show it.
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        last = len(chat_trace()) - 1
        await goto_step(pilot, app, last)
        rec = app.main.history.current
        assert rec.request.recomputed_last_block
        assert app.main.block_table.letters[: rec.request.prompt_blocks] == "HHHR"
        assert "recomputed" in rec.note
        r_block = rec.seqs[0].block_ids[3]
        assert drawn_glyph(app.query_one(PoolMap), r_block) == "R"


async def test_play_and_pause():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        await pilot.press("plus", "plus", "plus")  # faster: 50 steps/s
        await pilot.press("space")
        last = len(chat_trace()) - 1
        await wait_until(pilot, lambda: app.main.history.position == last and not app.main.playing)
        await wait_until(pilot, at_step(app, last))
        assert_shows(app, last)
        await pilot.press("home", "space")
        await wait_until(pilot, lambda: app.main.history.position >= 1)
        await pilot.press("space")
        assert not app.main.playing


async def test_go_to_step_and_find():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        await pilot.press("g")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("8", "enter")
        await wait_until(pilot, at_step(app, 7))
        assert_shows(app, 7)
        await pilot.press("slash")
        await pilot.press(*"c2-t2", "enter")
        target = next(r.index for r in chat_trace() if r.request_id == "c2-t2")
        await wait_until(pilot, at_step(app, target))
        assert app.query_one(RequestPanel).record.request.request_id == "c2-t2"


async def test_select_block_by_click_and_keys():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, 4)
        rec = app.main.history.current
        seq = rec.seqs[0]
        pool = app.query_one(PoolMap)
        # Click the pool map cell of the request's first block.
        bid = seq.block_ids[0]
        grid = pool.grid
        row, col = divmod(bid, grid.per_row)
        x = grid.label + col * grid.cell + grid.pad
        y = row * grid.row_height
        await pilot.click(PoolMap, offset=(x + 1 + pool.gutter.left, y + pool.gutter.top))
        await wait_until(pilot, lambda: app.main.selected_block == bid)
        inspector = app.query_one(BlockInspector)
        await wait_until(pilot, lambda: inspector.report is not None and inspector.report.block_id == bid)
        report = inspector.report
        assert report.slot == app.main.history.slot(bid)
        assert report.state is seq.states[0]
        assert report.position == 0
        assert report.token_ids == rec.request.request.prompt_token_ids[:4]
        assert report.num_uses == sum(bid in r.seqs[0].block_ids for r in app.main.history.records[:5])
        assert report.cached and report.cached[0] == 0  # the system prompt was cached at step 1
        # "]" walks the block table.
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: app.main.selected_block == seq.block_ids[1])
        assert app.main.block_table.selected == seq.block_ids[1]
        assert pool.selected == seq.block_ids[1]
        # A click on the block table selects too.
        table = app.main.block_table
        await pilot.click(type(table), offset=(table.gutter.left + 2, table.gutter.top))
        await wait_until(pilot, lambda: app.main.selected_block == seq.block_ids[0])
        await pilot.press("escape")
        assert app.main.selected_block is None and pool.selected is None and inspector.report is None


async def test_select_row_jumps_to_step():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        table = app.query_one(SequenceTable)
        table.focus()
        await pilot.press("down", "down", "down")
        await wait_until(pilot, at_step(app, 3))
        assert_shows(app, 3)
        await pilot.click(SequenceTable, offset=(10, table.gutter.top + 1 + 6))  # header, row 6
        await wait_until(pilot, at_step(app, 6))
        assert_shows(app, 6)


async def test_eviction_step_shows_e_and_removed_events():
    app = inspector_app(TINY, requests=eviction_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, EVICTION_STEP)
        rec = app.main.history.current
        assert rec.evicted, "the scenario must evict"
        assert "E" in app.main.block_table.letters
        assert rec.request.evicted_blocks == len(rec.evicted)
        assert f"evicting {len(rec.evicted)} cached block" in rec.note
        pool = app.query_one(PoolMap)
        seq = rec.seqs[0]
        states = dict(zip(seq.block_ids, seq.states))
        for bid, _h in rec.evicted:
            # The block the request now holds shows its block-table letter: E, or P when
            # the evicted block became the request's partial tail block.
            assert drawn_glyph(pool, bid) == states[bid].letter
            assert states[bid] in (BlockState.NEW_EVICTED, BlockState.PARTIAL)
        kinds = [kind for kind, _ in app.query_one(EventsPanel).lines()]
        assert "removed" in kinds
        assert app.query_one(TotalsPanel).values["evictions"] == str(rec.totals.evictions)


async def test_help_and_error_screens():
    app = chat_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("right")  # keys of the main screen stay out of the modal
        assert app.main.history.position == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("e")  # nothing failed: a notification, no modal
        assert not isinstance(app.screen, ErrorScreen)


async def test_not_fitted_request_is_shown_and_app_keeps_going():
    reqs = eviction_trace()[:2]
    from engine.model import TraceRequest

    huge = TraceRequest(index=2, line=3, request_id="huge", arrival_time=2.0,
                        prompt_token_ids=tuple(range(9000, 9000 + 200)), output_len=1)
    after = TraceRequest(index=3, line=4, request_id="after", arrival_time=3.0,
                         prompt_token_ids=tuple(range(20)), output_len=1)
    app = inspector_app(TINY, requests=[*reqs, huge, after])
    async with app.run_test(size=(120, 40)) as pilot:
        await goto_step(pilot, app, 2)
        assert "did not fit" in app.main.history.current.note
        assert app.main.block_table.seq is None
        await pilot.press("e")
        assert isinstance(app.screen, ErrorScreen)
        await pilot.press("escape")
        await pilot.press("right")
        await wait_until(pilot, at_step(app, 3))
        assert app.query_one(RequestPanel).record.request.request_id == "after"


async def test_narrow_layout_keeps_pool_and_table_and_tabs_side_panes():
    app = chat_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        assert app.screen.has_class("-narrow")
        assert app.query_one(PoolMap).region.height >= 3
        assert app.main.block_table.region.height >= 2
        visible = [w.id for w in app.query(".pane") if w.display and w.region.height]
        assert visible == ["totals"]
        await pilot.press("t")
        await pilot.pause()
        visible = [w.id for w in app.query(".pane") if w.display and w.region.height]
        assert visible == ["sequences"]
        # Selecting a block brings the inspector pane forward.
        app.main.action_select_block(app.main.history.current.seqs[0].block_ids[0])
        await pilot.pause()
        visible = [w.id for w in app.query(".pane") if w.display and w.region.height]
        assert visible == ["inspector"]


async def test_requests_table_fills_results_up_to_the_furthest_step():
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, 5)
        table = app.query_one(SequenceTable)
        rec = app.main.history.records[5]
        await wait_until(pilot, lambda: table.get_cell("5", "hit").plain == str(rec.request.hit_blocks))
        assert table.get_cell("5", "outcome").plain == "ok"
        assert table.get_cell("6", "hit").plain == "…"  # not visited yet: no spoiler
        assert table.get_cell("2", "id").plain == chat_trace()[2].request_id


async def test_error_inside_vllm_is_shown_at_its_step(monkeypatch):
    from engine.backends.vllm_v1.manager import V1Manager as V1Backend

    real = V1Backend.allocate

    def allocate(self, request, num_new_tokens, lookup=None):
        if request.request_id == "4":  # the replay's seq id of step 5
            raise RuntimeError("boom [bold]not markup[/]")
        return real(self, request, num_new_tokens, lookup)

    monkeypatch.setattr(V1Backend, "allocate", allocate)
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_step(pilot, app, 4)
        rec = app.main.history.current
        assert rec.error is not None and "boom" in rec.error.message
        assert "vLLM raised" in rec.note
        assert app.main.header.step_text == "step 5 / 5"  # the replay stops at the error
        await pilot.press("e")
        assert isinstance(app.screen, ErrorScreen)
        assert "RuntimeError" in app.screen.traceback and "boom" in app.screen.traceback
        await pilot.press("escape")
        await pilot.press("left")  # the app keeps running
        await wait_until(pilot, at_step(app, 3))


async def test_engine_that_cannot_start_leaves_the_trace_browsable(monkeypatch):
    from engine.backends.vllm_v1.internals import AdapterMismatch
    from engine.backends.vllm_v1.manager import V1Manager as V1Backend

    def broken(self, settings, verbose=False):
        raise AdapterMismatch("vLLM 9.9 differs from what prefix-tui's adapter knows")

    monkeypatch.setattr(V1Backend, "__init__", broken)
    app = chat_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.engine_status == "failed")
        assert app.main.sequences.row_count == len(chat_trace())
        assert "could not start" in app.main.request_panel.message
        assert "vLLM failed" in app.main.header.status
        await pilot.press("e")
        assert isinstance(app.screen, ErrorScreen)
        assert "adapter" in app.screen.message


async def test_trace_file_with_a_bad_line_replays_what_came_before(tmp_path):
    import json

    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"request_id": f"q{i}", "prompt_token_ids": list(range(1, 10 + i))})
             for i in range(3)]
    path.write_text("\n".join(lines) + "\n{not json\n")
    app = inspector_app(CHAT, str(path))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and app.main.trace_error is not None)
        assert app.main.trace_error.startswith(f"{path}:4: ")
        app.main.goto(99)
        await wait_until(pilot, lambda: app.main.history.position == 2)
        await wait_until(pilot, lambda: app.main.header.step_text == "step 3 / 3", timeout=30)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorScreen), timeout=30)
        assert ":4:" in app.screen.message


def test_run_inspector_fails_before_the_screen_on_a_missing_trace(tmp_path):
    import argparse

    import pytest

    from engine.errors import UserError
    from engine.options import add_engine_arguments
    from tui.launch import run_inspector

    parser = argparse.ArgumentParser()
    parser.add_argument("trace")
    add_engine_arguments(parser)
    args = parser.parse_args([str(tmp_path / "missing.jsonl")])
    with pytest.raises(UserError, match="no such file"):
        run_inspector(args)
