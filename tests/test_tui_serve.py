"""The inspector in serve mode (one vLLM scheduler iteration per step): pilot tests on
``serve_trace`` (block size 4, a 24-block pool, requests arriving together that share a
prefix, so vLLM's scheduler shares blocks and preempts). Every pane is checked against the
engine's records and the engine.serve helpers; nothing here recomputes vLLM's decisions."""

from __future__ import annotations

import argparse

import pytest

from engine.model import BlockState
from engine.replay.steps import next_arrival, next_finish, prev_arrival, prev_finish
from engine.options import add_engine_arguments
from tests.test_tui_support import drawn_cell, at_serve_step, goto_serve_step, serve_app, serve_trace, wait_until, inspector_app
from tui.widgets import palette
from tui.widgets.block_inspector import BlockInspector
from tui.widgets.running_tables import RunningTables
from tui.widgets.serve_panel import ServePanel
from tui.widgets.totals import TotalsPanel, serve_values, totals_values


def assert_serve_shows(app, index: int) -> None:
    """The running tables, queues pane, totals and header show record ``index``."""
    rec = app.main.history.records[index]
    assert app.main.history.position == index
    tables = app.query_one(RunningTables)
    rows = tables.rows()
    assert [(sid, ids) for sid, _g, ids in rows] == [(s.seq_id, s.block_ids) for s in rec.seqs]
    assert [s.seq_id for s in rec.seqs] == list(rec.serve.running)  # vLLM's running order
    for (_sid, glyphs, _ids), seq in zip(rows, rec.seqs):
        for glyph, state, bid in zip(glyphs, seq.states, seq.block_ids):
            if state is BlockState.HELD and app.main.history.slot(bid)[0] > 1:
                assert glyph == "s"  # held, and another live sequence holds it too
            else:
                assert glyph == state.letter
    lines = app.query_one(ServePanel).lines()
    rid = {str(r.index): r.request_id for r in serve_trace()}
    running_at = lines.index(next(ln for ln in lines if ln.startswith("running ")))
    waiting_at = lines.index(next(ln for ln in lines if ln.startswith("waiting ")))
    shown_running = [ln[2:].split()[0] for ln in lines[running_at + 1: waiting_at]]
    assert shown_running == [rid[s] for s in rec.serve.running]
    assert [ln.split()[0] for ln in lines[waiting_at + 1:]] == [rid[s] for s in rec.serve.waiting]
    if len(rec.serve.running) > 1:  # the last one is marked as vLLM's next preemption victim
        assert lines[waiting_at - 1].startswith(f"▸ {rid[rec.serve.running[-1]]} ")
    totals = app.query_one(TotalsPanel)
    assert totals.values == {**totals_values(rec.totals), **serve_values(rec.totals)}
    it = app.main.header.iteration
    assert it["iteration"] == rec.serve.iteration and it["clock"] == rec.clock
    assert it["used_blocks"] == rec.serve.used_blocks
    assert it["scheduled_tokens"] == rec.serve.scheduled_tokens


async def test_every_step_shows_its_record():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        assert app.main.header.serve_text(0).startswith("serve · AsyncScheduler · iteration 1 ")
        for i in range(len(app.main.history)):
            if i:
                await pilot.press("right")
                await wait_until(pilot, at_serve_step(app, i))
            assert_serve_shows(app, i)


async def test_shared_prefix_blocks_show_s_and_their_ref_count():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        rec = app.main.history.current
        assert len(rec.seqs) == 4
        tables = app.query_one(RunningTables)
        glyphs = [g for _sid, g, _ids in tables.rows()]
        # q0 allocates the system prompt's blocks; q1..q3 hit them while q0 holds them.
        assert glyphs[0][:3] == "NNN" and all(g[:3] == "SSS" for g in glyphs[1:])
        shared = rec.seqs[0].block_ids[:3]
        assert all(s.block_ids[:3] == shared for s in rec.seqs)
        assert [app.main.history.slot(b)[0] for b in shared] == [4, 4, 4]
        # A step later all four hold them: "s" in every row, ref count 4 in the pool map.
        await pilot.press("right")
        await wait_until(pilot, at_serve_step(app, 1))
        assert all(g[:3] == "sss" for _sid, g, _ids in tables.rows())
        used_many = app.main.pool_map.get_component_rich_style(palette.POOL_USED_MANY)
        for bid in shared:
            assert app.main.history.slot(bid)[0] == 4
            assert drawn_cell(app.main.pool_map, bid) == (used_many, "s")
        own = rec.seqs[1].block_ids[3]
        assert drawn_cell(app.main.pool_map, own) == (app.main.pool_map.get_component_rich_style(palette.POOL_USED), "=")
        assert "3 shared" in str(app.main.running.border_title)


async def test_preemption_shows_in_the_queues_and_totals():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and app.main.history.position >= 0)
        records = app.main.history.records
        k = next(r.index for r in records if r.serve.preempted)
        rec = records[k]
        assert rec.serve.preempted == ("4",) and records[k - 1].serve.running[-1] == "4"  # the last one
        await goto_serve_step(pilot, app, k - 1)
        assert "▸ q4 " in "\n".join(app.query_one(ServePanel).lines())
        await goto_serve_step(pilot, app, k)
        lines = app.query_one(ServePanel).lines()
        freed = len(next(s for s in records[k - 1].seqs if s.seq_id == "4").block_ids)
        assert any(ln.startswith("✗ preempted q4") and f"{freed} blk freed (3 still shared)" in ln
                   for ln in lines)  # the system prompt's blocks: q0..q3 still hold them
        assert any(ln.split()[:3] == ["q4", "preempted", "now"] for ln in lines)
        assert "preempted q4" in rec.note
        totals = app.query_one(TotalsPanel).values
        assert totals["preemptions"] == "1"
        # Resumed: vLLM's prefix lookup again, counted apart as preempted hits / queries.
        r = next(r.index for r in records if r.serve.resumed)
        (seq_id, cached), = records[r].serve.resumed
        await goto_serve_step(pilot, app, r)
        assert any(ln.startswith("↻ resumed   q4") and f"{cached:,} cached tok" in ln
                   for ln in app.query_one(ServePanel).lines())
        t = records[r].totals
        assert t.preempted_hits == cached > 0 and t.preempted_queries > cached
        totals = app.query_one(TotalsPanel).values
        assert totals["preempted_hits"] == f"{t.preempted_hits:,}"
        assert totals["preempted_queries"] == f"{t.preempted_queries:,}"
        # The waiting list remembers the earlier preemption while q4 waits.
        if records[k + 1].serve.waiting:
            await goto_serve_step(pilot, app, k + 1)
            assert any("preempted at step" in ln for ln in app.query_one(ServePanel).lines())


async def test_admissions_show_the_schedulers_cached_tokens():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        lines = app.query_one(ServePanel).lines()
        for r in app.main.history.current.admitted:
            line = next(ln for ln in lines if ln.startswith(f"+ admitted  {r.request_id} "))
            assert f"{r.hit_tokens:,} cached tok" in line
        assert app.main.feed.backend.scheduler.cache.hits == app.main.history.records[-1].totals.hits


async def test_arrival_and_finish_keys_land_where_engine_serve_says():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        records = app.main.history.records
        i = 0
        for key, search in (("a", next_arrival), ("f", next_finish), ("f", next_finish),
                            ("a", next_arrival), ("F", prev_finish), ("A", prev_arrival)):
            want = search(records, i)
            assert want is not None
            await pilot.press(key)
            await wait_until(pilot, at_serve_step(app, want))
            i = want
        assert next_arrival(records, next_arrival(records, next_arrival(records, 0))) is None
        await goto_serve_step(pilot, app, len(records) - 1)
        await pilot.press("a")  # none later: the cursor stays
        await pilot.pause()
        assert app.main.history.position == len(records) - 1 and app.main.pending_jump is None


async def test_serve_keys_only_in_serve_mode():
    from tests.test_tui_support import CHAT, chat_trace

    app = inspector_app(CHAT, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert not {"a", "A", "f", "F"} & app.active_bindings.keys()
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert {"a", "A", "f", "F"} <= app.active_bindings.keys()


async def test_block_inspector_counts_a_held_block_once_per_holder():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 3)
        bid = app.main.history.current.seqs[0].block_ids[0]
        app.main.action_select_block(bid)
        inspector = app.query_one(BlockInspector)
        await wait_until(pilot, lambda: inspector.report is not None and inspector.report.block_id == bid)
        report = inspector.report
        assert report.num_uses == 4  # q0 allocated it, q1..q3 took it as a hit; then held
        assert [letter for _s, _r, letter in report.uses] == ["N", "S", "S", "S"]
        assert report.token_ids == serve_trace()[0].prompt_token_ids[:4]


async def test_find_goes_to_the_step_a_request_arrives():
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        await pilot.press("slash", *"q5", "enter")
        want = next(r.index for r in app.main.history.records if "5" in r.serve.arrived)
        await wait_until(pilot, at_serve_step(app, want))


async def test_narrow_serve_layout_keeps_rows_and_tabs():
    app = serve_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await goto_serve_step(pilot, app, 1)
        assert app.screen.has_class("-narrow")
        tables = app.query_one(RunningTables)
        assert tables.region.height >= 3
        await pilot.press("t")
        await pilot.pause()
        visible = [w.id for w in app.query(".pane") if w.display and w.region.height]
        assert visible == ["queues"]


def _pilot_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace")
    add_engine_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_inspector_passes_serve_mode_and_flags(tmp_path, monkeypatch):
    from engine.errors import UserError
    from tui.app import InspectorApp
    from tui.launch import run_inspector

    trace = tmp_path / "t.jsonl"
    trace.write_text('{"prompt_token_ids": [1, 2, 3]}\n')
    seen = {}

    def run(self):  # noqa: ANN001, ANN202 - stands in for App.run
        seen.update(mode=self.main.entry.mode, serve=self.main.serve_settings,
                    feed=self.main.feed.entry.mode, screen=type(self.main).__name__)

    monkeypatch.setattr(InspectorApp, "run", run)
    args = _pilot_args(str(trace), "--mode", "serve", "--max-num-seqs", "3", "--no-async-scheduling")
    assert run_inspector(args) == 0
    assert seen["mode"] == seen["feed"] == "serve" and seen["screen"] == "ServeScreen"
    assert seen["serve"].max_num_seqs == 3 and seen["serve"].async_scheduling is False
    run_inspector(_pilot_args(str(trace)))
    assert seen["mode"] == "sequential" and seen["serve"] is None
    assert seen["screen"] == "SequentialScreen"
    with pytest.raises(UserError, match="max-num-seqs"):
        run_inspector(_pilot_args(str(trace), "--mode", "serve", "--max-num-seqs", "0"))


async def test_running_tables_at_scale_draw_one_line_per_sequence():
    """256 running sequences of 100 blocks (a full max_num_seqs batch): one line per
    sequence, cut with +N, scrolling, clicks mapped to the right block."""
    
    from textual.app import App

    from engine.model import GroupTable, SeqView, Slot

    seqs = [
        SeqView(seq_id=str(k), request_id=f"r{k}",
                tables=(GroupTable(0, tuple(range(1 + k * 100, 101 + k * 100)),
                                   (BlockState.HELD,) * 99 + (BlockState.PARTIAL,)),),
                num_prompt_tokens=1500,
                num_tokens=1590, num_hit_tokens=0, num_prompt_blocks=94)
        for k in range(256)
    ]
    pool = [Slot(1, None)] * (1 + 256 * 100)

    class Host(App):
        def compose(self):
            yield RunningTables(len(pool), id="running")

    app = Host()
    async with app.run_test(size=(90, 30)) as pilot:
        tables = app.query_one(RunningTables)
        for _ in range(10):  # a step lays out rows, O(sequences), and draws what is visible
            tables.show(seqs, pool)
            await pilot.pause()
        assert tables.cell_layout == "clip"
        height = tables.content_size.height
        assert tables.render_line(0).text.startswith("r0   ====")
        first = tables.render_line(0).text.rstrip()
        shown, more = first.count("="), int(first.rsplit("+", 1)[1])  # clipped: "+N" more
        assert shown + more == 100 and shown > 10
        assert tables.render_line(height - 1).text.startswith(f"… {256 - (height - 1)} more sequences")
        assert tables.block_at(len("r255 "), 3) == seqs[3].block_ids[0]
        tables.select(seqs[200].block_ids[5])
        assert tables.top <= 200 < tables.top + height


async def test_error_inside_vllm_is_shown_at_its_iteration(monkeypatch):
    from engine.backends.vllm_v1.scheduler import V1Scheduler as SchedBackend
    from tui.widgets.modals import ErrorScreen

    real = SchedBackend.step
    calls = {"n": 0}

    def step(self, token_for, detail=True):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom [bold]not markup[/]")
        return real(self, token_for, detail)

    monkeypatch.setattr(SchedBackend, "step", step)
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 3)
        rec = app.main.history.current
        assert rec.error is not None and "boom" in rec.error.message
        assert app.main.header.step_text == "step 4 / 4"  # the replay stops at the error
        assert "press e" in app.main.request_panel.render().plain
        assert any("vLLM raised" in ln for ln in app.query_one(ServePanel).lines())
        await pilot.press("e")
        assert isinstance(app.screen, ErrorScreen) and "boom" in app.screen.traceback
        await pilot.press("escape", "left")
        await wait_until(pilot, at_serve_step(app, 2))


async def test_arrival_key_waits_for_records_the_paced_replay_has_not_made(monkeypatch):
    from tui.feed import Feed

    monkeypatch.setattr(Feed, "RUN_AHEAD", 2)  # the replay stays 2 iterations ahead
    app = serve_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.history.position == 0 and app.main.feed.replay_paused)
        assert len(app.main.feed.records) <= 4 and not app.main.feed.replay_done  # paced, not run out
        await pilot.press("a")
        await wait_until(pilot, lambda: app.main.pending_jump is None and app.main.shown_step > 0)
        records = app.main.history.records
        assert app.main.history.position == next_arrival(records, 0) == 5
        assert not app.main.feed.replay_done
