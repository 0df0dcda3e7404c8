"""Unit tests of the inspector's pure parts: geometry, palette, events, search, scans."""

from __future__ import annotations

import re
from pathlib import Path

from engine.model import (
    NO_EVENTS, BlockState, EvictedBlock, GroupTable, KVEvent, PoolChange, PoolDelta, SeqView, Slot,
    StepRecord, Totals, evictions, kv_events,
)
from tests.conftest import req
from tui.screens.actions import find_request
from tui.widgets import palette
from tui.widgets.block_inspector import scan_block
from tui.widgets.cells import make_grid
from tui.widgets.events import event_line, hash_to_block, merged
from tui.widgets.safe import clip

TCSS = (Path(__file__).resolve().parents[1] / "tui" / "app.tcss").read_text()


def test_every_state_has_a_letter_label_help_and_a_colour_rule():
    for state in BlockState:
        assert state.letter and palette.STATE_LABEL[state] and palette.STATE_HELP[state]
        assert re.search(rf"\.{re.escape(palette.STATE_CLASS[state])}\s*{{", TCSS)
    for cls in palette.COMPONENT_CLASSES:
        assert re.search(rf"\.{re.escape(cls)}\s*{{", TCSS), cls
    letters = [s.letter for s in BlockState]
    assert len(set(letters)) == len(letters)


def test_grid_picks_the_biggest_cells_that_fit_and_maps_clicks_back():
    small = make_grid(24, 80, 20, 23)
    assert small.show_id and small.pad == 1 and small.row_height == 2
    huge = make_grid(100_000, 150, 40, 99_999)
    assert not huge.show_id and huge.chip == 1 and huge.gap == 0 and huge.label == 6
    for grid in (small, make_grid(256, 80, 4, 255), huge):
        for index in (0, 1, grid.per_row - 1, grid.count - 1):
            row, col = divmod(index, grid.per_row)
            x = grid.label + col * grid.cell
            assert grid.index_at(x, row * grid.row_height) == index
        assert grid.index_at(0, 0) in (None, 0)
    if small.row_height == 2:
        assert small.index_at(small.label, 1) is None  # the blank line between rows


def test_events_name_the_block_each_hash_is_in():
    h1, h2, gone = b"\x01" * 32, b"\x02" * 32, b"\x09" * 32
    rec = StepRecord(
        index=0, clock=0.0, admitted=(), seqs=(), finished=(),
        evicted=evictions([EvictedBlock(7, gone)]),
        events=kv_events([KVEvent("stored", (h1, h2), parent_hash=None, num_tokens=8),
                          KVEvent("removed", (gone,))]),
        pool_delta=PoolDelta.of([PoolChange(3, Slot(0, None), Slot(1, h1)),
                                 PoolChange(4, Slot(0, None), Slot(1, h2)),
                                 PoolChange(7, Slot(0, gone), Slot(1, None))]),
        free_head=(), num_free=0, num_cached_free=0, totals=Totals(),
    )
    where = hash_to_block(rec)
    assert where == {h1: 3, h2: 4, gone: 7}
    assert event_line(rec.events[0], where) == ("stored", "stored 2: #3:01010101 #4:02020202")
    assert event_line(rec.events[1], where) == ("removed", "removed 1: #7:09090909")


def test_find_request_exact_first_then_substring():
    reqs = [req(0, [1], rid="alpha-10"), req(1, [1], rid="alpha-1"), req(2, [1], rid="beta")]
    assert find_request(reqs, "alpha-1") == 1
    assert find_request(reqs, "lpha") == 0
    assert find_request(reqs, "gamma") is None
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc"


def test_scan_block_collects_uses_cache_and_evictions():
    h = b"\x05" * 32
    r0, r1 = req(0, range(8), output_len=0), req(1, range(8), output_len=0)

    def step(i, r, states, delta=(), evicted=()):
        delta = PoolDelta.of(PoolChange(*c) for c in delta)
        evicted = evictions(EvictedBlock(*e) for e in evicted)
        from engine.model import Outcome, RequestResult

        result = RequestResult(
            request=r, seq_id=str(i), outcome=Outcome.OK, prompt_tokens=8, hit_tokens=0,
            hit_blocks=0, new_blocks=2, output_blocks=0, evicted_blocks=0, prompt_blocks=2,
            recomputed_last_block=False,
        )
        seq = SeqView(str(i), r.request_id, (GroupTable(0, (1, 2), states),), 8, 8, 0, 2)
        return StepRecord(index=i, clock=float(i), admitted=(result,), seqs=(seq,), finished=(),
                          evicted=evicted, events=NO_EVENTS, pool_delta=delta, free_head=(), num_free=0,
                          num_cached_free=0, totals=Totals())

    N, H = BlockState.NEW, BlockState.HIT_FREE
    records = [
        step(0, r0, (N, N), delta=((2, Slot(0, None), Slot(1, h)),)),
        step(1, r1, (H, H)),
        step(2, r1, (N, N), evicted=((2, h),)),
    ]
    report = scan_block(records, 2, 2, Slot(1, h), block_size=4)
    assert report.cached == (0,) and report.reused == (1,) and report.evicted == (2,)
    assert report.num_uses == 3 and report.state is N and report.position == 1
    assert report.token_ids == (4, 5, 6, 7) and report.first_token == 4
    early = scan_block(records, 0, 2, Slot(1, h), block_size=4)
    assert early.reused == () and early.num_uses == 1


def test_runs_of_removed_and_chained_stored_events_merge():
    a, b, c, d = (bytes([i]) * 32 for i in range(1, 5))
    events = (
        KVEvent("removed", (a,)), KVEvent("removed", (b,)),
        KVEvent("stored", (c,), parent_hash=None, num_tokens=4),
        KVEvent("stored", (d,), parent_hash=c, num_tokens=4),
        KVEvent("stored", (a,), parent_hash=b, num_tokens=4),  # not chained: a new line
    )
    out = merged(events)
    assert [(e.kind, len(e.block_hashes)) for e in out] == [("removed", 2), ("stored", 2), ("stored", 1)]
    assert out[1].parent_hash is None and out[1].num_tokens == 8


def test_line_scroll_moves_by_lines_and_stops_at_the_last_page():
    from types import SimpleNamespace

    from tui.widgets.line_scroll import LineScroll

    class Pane(LineScroll):
        content_size = SimpleNamespace(height=3)

        def __init__(self) -> None:
            self.top, self.refreshes = 0, 0

        def _line_count(self) -> int:
            return 10

        def refresh(self) -> None:
            self.refreshes += 1

    pane = Pane()
    pane._scroll(5)
    assert pane.top == 5
    pane._scroll(5)
    assert pane.top == 7  # 10 lines, 3 visible: the last page starts at line 7
    pane._scroll(1)
    assert (pane.top, pane.refreshes) == (7, 2)  # no redraw when nothing moves
    pane._scroll(-20)
    assert pane.top == 0
