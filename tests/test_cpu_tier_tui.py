"""The CPU tier's strip under the pool map (serve mode with vLLM's CPU offloading tier):
drawn from the records' TierPart, which the adapter reads off vLLM's CPUOffloadingManager."""

from __future__ import annotations

from engine.model import BlockState
from engine.tier_records import CPU_EVICTABLE, CPU_FREE, CPU_LOADING, CPU_WRITE_PENDING, TierPart
from engine.settings import EngineSettings, ServeSettings, TierSettings
from tests.conftest import req
from tests.test_tui_support import goto_serve_step, inspector_app, wait_until
from tui.widgets.block_inspector import BlockInspector
from tui.widgets.cpu_tier import CpuTierStrip, cells, title

A = list(range(1000, 1064))
B = list(range(5000, 5064))


def test_cells_fold_to_the_busiest_block_and_the_title_counts():
    codes = bytes([CPU_FREE, CPU_EVICTABLE, CPU_FREE, CPU_FREE, CPU_WRITE_PENDING, CPU_LOADING])
    assert cells(codes, 6) == list(codes)
    assert cells(codes, 3) == [CPU_EVICTABLE, CPU_FREE, CPU_LOADING]
    part = TierPart(num_blocks=6, stored=3, evictable=1, write_pending=1, cells=codes)
    assert part.loading == 1
    assert title(part) == ("CPU tier · 6 blocks · 3 stored (50 %): 1 evictable, "
                           "1 write-pending, 1 loading")


async def test_the_strip_shows_vllms_cpu_tier_at_each_iteration():
    reqs = [req(i, p, output_len=2, arrival=10.0 * i) for i, p in enumerate((A + [1], B + [2], A + [3]))]
    serve = ServeSettings(async_scheduling=False, tier=TierSettings(num_cpu_blocks=20))
    app = inspector_app(EngineSettings(block_size=16, num_blocks=7), mode="serve",
                        serve=serve, requests=reqs)
    async with app.run_test(size=(160, 50)) as pilot:
        await goto_serve_step(pilot, app, 0)
        strip = app.query_one(CpuTierStrip)
        history = app.main.history
        last = len(history) - 1
        app.main.goto(last)
        await goto_serve_step(pilot, app, last)
        rec = history.records[last]
        assert strip.part == rec.tier and rec.tier.stored == 8  # A's and B's full blocks
        drawn = strip.render().plain.replace("\n", "")
        assert drawn.count("c") == rec.tier.evictable == 8 and drawn.count("·") == 12
        assert str(strip.border_title).startswith("CPU tier · 20 blocks · 8 stored")
        # the request that loaded A back from the CPU tier shows L in its block table
        loaded = next(r for r in history.records for s in r.seqs
                      if BlockState.HIT_CPU in s.states)
        assert loaded.seqs[0].states[1:4] == (BlockState.HIT_CPU,) * 3
        # the totals pane has the report's CPU-tier rows, vLLM's connector stats
        totals = app.main.totals
        t = rec.totals
        assert totals.values["cpu_hits"] == "48" == f"{t.host_hits:,}"
        assert totals.values["external_queries"] == f"{t.external_queries:,}"
        figures = totals.query_one("#totals-figures").render().plain
        assert "CPU-tier hits" in figures and "cached GPU+CPU" in figures
        # the block inspector says where a block's hash lives: A's second block, loaded
        # back into a GPU block that the finished r2 left cached-free, is in both tiers
        block = loaded.seqs[0].block_ids[1]
        app.main.action_select_block(block)
        inspector = app.query_one(BlockInspector)
        await wait_until(pilot, lambda: inspector.report is not None
                         and inspector.report.block_id == block)
        body = str(inspector.query_one("#inspector-body").render())
        assert "lives in GPU (cached-free) and CPU tier" in body


def test_the_step_sentence_says_what_the_cpu_tier_did():
    from engine.backends.vllm_v1.scheduler import V1Scheduler
    from engine.replay.serve import ServeReplay

    reqs = [req(i, p, output_len=2, arrival=10.0 * i) for i, p in enumerate((A + [1], B + [2], A + [3]))]
    b = V1Scheduler(EngineSettings(block_size=16, num_blocks=7),
                    ServeSettings(async_scheduling=False, tier=TierSettings(num_cpu_blocks=20)))
    notes = [rec.note for rec in ServeReplay(b, reqs)]
    assert any("r2: loading 3 blocks from the CPU tier" in n for n in notes)
    assert any("CPU tier: 3 loaded, 0 stored, 8 of 20 blocks held" in n for n in notes)
    assert any("CPU tier: 0 loaded, 4 stored" in n for n in notes)
