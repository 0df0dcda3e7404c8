"""The inspector on --engine v0: played, it stops at the step where V0 raised, shows the
error and V0's traceback, keeps the pool as it was before that step browsable, and
selects the block V0 was evicting, whose hash the block inspector shows. V0 has no null
block: block 0 is drawn as any other block."""

from __future__ import annotations

from engine.backends import BuildOptions, lookup
from engine.model import SlotStatus, slot_status
from engine.settings import EngineSettings, V0Settings
from engine.trace.reader import TraceSource
from tests.conftest import ROOT
from tests.test_tui_support import drawn_glyph, wait_until
from tui.app import InspectorApp
from tui.widgets.block_inspector import BlockInspector
from tui.widgets.free_queue import FreeQueuePanel
from tui.widgets.modals import ErrorScreen
from tui.widgets.pool_map import PoolMap

TRACE = ROOT / "traces" / "v0_eviction_assert.jsonl"
FAILING = 16  # the step (0-based) where the experiment's order raises (test_v0_assert.py)
LATE = 15  # in the scheduler's order, eviction has begun by this step
# A new worker imports torch and vLLM 0.10.1.1: over a minute on a busy 2-core machine.
STARTUP_S = 600


def v0_app(call_order: str) -> InspectorApp:
    entry = lookup("v0", "sequential")
    options = BuildOptions(EngineSettings(block_size=16, num_blocks=120),
                           v0=V0Settings(call_order=call_order))
    return InspectorApp(TraceSource(str(TRACE)), entry, options)


async def test_playing_stops_at_v0s_error_with_the_block_it_was_evicting(v0_backend_factory):
    app = v0_app("experiment")
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.main
        await wait_until(pilot, lambda: main.shown_step == 0, timeout=STARTUP_S)
        await pilot.press("space")  # play: it stops by itself at the failing step
        await wait_until(pilot, lambda: main.shown_step == FAILING and not main.playing)
        rec = main.history.current
        assert rec.index == FAILING and rec.error is not None
        assert "content_hash_to_evict" in rec.error.message
        # V0's block is selected and the block inspector names the hash it handed back.
        block = rec.v0.error_block
        assert main.selected_block == block
        inspector = app.query_one(BlockInspector)
        await wait_until(pilot, lambda: inspector.report is not None
                         and inspector.report.block_id == block)
        report = inspector.report
        assert report.error_hash == rec.v0.error_hash
        assert report.slot[1] != rec.v0.error_hash  # the block holds another hash now
        text = inspector.render_report(report).plain
        assert f"its evictor handed back hash {rec.v0.error_hash.hex()}" in text
        assert "stale evictor entry" in text
        # The traceback is V0's own.
        await pilot.press("e")
        assert isinstance(app.screen, ErrorScreen)
        assert "AssertionError" in app.screen.traceback
        assert "prefix_caching_block.py" in app.screen.traceback
        await pilot.press("escape")
        # The pool at the failing step is the one before it: nothing of the step applied.
        assert rec.pool_delta == () and rec.evicted == ()
        # ... and the steps before stay browsable.
        await pilot.press("left")
        await wait_until(pilot, lambda: main.shown_step == FAILING - 1)
        assert main.history.current.error is None


async def test_v0_pool_has_no_null_block_and_the_queue_is_the_evictor(v0_backend_factory):
    app = v0_app("scheduler")
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.main
        await wait_until(pilot, lambda: main.shown_step == 0, timeout=STARTUP_S)
        main.goto(LATE)
        await wait_until(pilot, lambda: main.shown_step == LATE and main.feed.replay_done)
        rec = main.history.current
        pool_map = app.query_one(PoolMap)
        assert pool_map.null_block_id is None
        assert 0 in rec.seqs[0].block_ids or main.history.pool[0] != (0, None)  # block 0 used
        assert drawn_glyph(pool_map, 0) != "x"
        # Eviction has begun: the free list is empty and the queue is V0's evictor order.
        queue = app.query_one(FreeQueuePanel)
        ids = [b for b, _glyph in queue.chips()]
        assert ids == list(rec.free_head) == [e.block_id for e in rec.v0.evictor][: len(ids)]
        assert "in V0's evictor" in queue._title().plain
        # A block in the evictor: its access time and place in V0's order.
        first = rec.v0.evictor[0]
        assert slot_status(first.block_id, main.history.pool[first.block_id], None) \
            is SlotStatus.CACHED_FREE
        main.action_select_block(first.block_id)
        inspector = app.query_one(BlockInspector)
        await wait_until(pilot, lambda: inspector.report is not None
                         and inspector.report.block_id == first.block_id)
        assert inspector.report.evictor == first and inspector.report.evictor_rank == 1
        text = inspector.render_report(inspector.report).plain
        assert f"evicted 1st of {rec.v0.num_evictor:,}" in text
        assert f"last access {first.last_accessed:g}" in text

