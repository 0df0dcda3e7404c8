"""The sweep screen, driven by a stand-in executor that reports hand-made points: bars
fill, rows and the curve appear as points arrive, the bounds are labelled prefix-tui's.
(The executors themselves are tested against vLLM in tests/test_sweep.py.)"""

from __future__ import annotations

from engine.backends import BuildOptions
from engine.model import Totals
from engine.settings import EngineSettings
from engine.sweep.bounds import BoundCounts
from engine.sweep.executors import ExecutorChoice
from engine.sweep.plan import plan_sweep
from engine.sweep.points import PointResult
from engine.trace.reader import TraceSource
from tests.test_tui_support import wait_until
from tui.sweep_app import SweepApp
from tui.widgets.sweep_chart import SweepChart


def _plan(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join('{"prompt_token_ids": [1, 2, 3]}\n' for _ in range(10)))
    return plan_sweep(engine="v1", mode="sequential", options=BuildOptions(EngineSettings()),
                      source=TraceSource(str(p)), block_sizes=[16],
                      pools=[100, 1000, None])


def _result(index: int, hits: int, bound: int, blocks: int) -> PointResult:
    end = Totals(requests=10, tokens=1000, blocks=70, blocks_reused=hits // 16,
                 queries=1000, hits=hits, evictions=5 * (index == 0))
    return PointResult(index, blocks, end, Totals(), bound=BoundCounts(bound, 1000, 10))


def fake_runner(specs, choice, on_result, on_progress, cancel):
    done = []
    for spec, (hits, bound, blocks) in zip(specs, [(300, 400, 100), (500, 550, 1000),
                                                   (600, 700, 4242)]):
        on_progress(spec.index, "replay", 5, 10)
        r = _result(spec.index, hits, bound, blocks)
        on_result(r)
        done.append(r)
    return done


async def test_sweep_screen_fills_as_points_arrive(tmp_path):
    app = SweepApp(_plan(tmp_path), ExecutorChoice("local", jobs=1), runner=fake_runner)
    async with app.run_test(size=(120, 48)) as pilot:
        screen = app.main
        await wait_until(pilot, lambda: screen.finished)
        assert screen.finished and len(screen.results) == 3
        await pilot.pause()
        table = screen.query_one("#sweep-table")
        assert table.row_count == 3
        first = [str(c) for c in table.get_row_at(0)]
        assert first[3] == "30.00 %" and first[4] == "40.00 %"
        last = [str(c) for c in table.get_row_at(2)]
        assert last[1] == "inf (4,242)" and last[4] == "–"  # inf has no farthest-next-use bound
        chart = screen.query_one(SweepChart)
        lines = [chart.render_line(y).text for y in range(chart.size.height)]
        text = "\n".join(lines[1:])  # below the legend
        assert "bound (prefix-tui's)" in lines[0] and "reuse bound (prefix-tui's)" in lines[0]
        assert text.count("●") == 2 and text.count("×") == 2  # the two finite points
        assert "─" in text and "┄" in text  # unbounded 60 %, reuse bound 70 %
        assert all(screen.query_one(f"#bar-{i}").percentage == 1.0 for i in range(3))
        await pilot.press("q")
    assert app.main.cancel.is_set()


async def test_the_screen_shows_the_cpu_tier_and_replica_axes(tmp_path):
    # A plan with both other axes (the CLI takes one at a time; the screen handles both):
    # the table gets their columns, each bar its point's label, each curve its own series.
    from dataclasses import replace

    from engine.settings import ServeSettings, TierSettings
    from engine.tier_records import TierSummary

    p = tmp_path / "t.jsonl"
    p.write_text("".join('{"prompt_token_ids": [1, 2, 3]}\n' for _ in range(10)))
    plan = plan_sweep(engine="v1", mode="serve",
                      options=BuildOptions(EngineSettings(), ServeSettings(),
                                           router="prefix-aware"),
                      source=TraceSource(str(p)), block_sizes=[16], pools=[100],
                      tiers=[TierSettings(num_cpu_blocks=0), TierSettings(num_cpu_blocks=64)],
                      instances=[1, 2], ceilings=False)
    assert [s.label for s in plan.specs] == [
        "block 16, CPU 0 blocks, 1× prefix-aware, pool 100",
        "block 16, CPU 64 blocks, 1× prefix-aware, pool 100",
        "block 16, CPU 0 blocks, 2× prefix-aware, pool 100",
        "block 16, CPU 64 blocks, 2× prefix-aware, pool 100"]

    def runner(specs, choice, on_result, on_progress, cancel):
        done = []
        for spec in specs:
            n, cpu = spec.instances, spec.tier.num_cpu_blocks
            end = Totals(requests=10, tokens=1000, blocks=70, queries=1000,
                         hits=200 + 100 * spec.index,
                         external_queries=600, external_hits=60 * bool(cpu),
                         host_hits=60 * bool(cpu))
            part = replace(end, requests=10 // n, hits=end.hits // n)
            r = PointResult(spec.index, 100, end, Totals(), replicas_end=(part,) * n,
                            tier=TierSummary(cpu, 0.0, 4096, "lru", 0) if cpu else None)
            on_result(r)
            done.append(r)
        return done

    app = SweepApp(plan, ExecutorChoice("local", jobs=1), runner=runner)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main
        await wait_until(pilot, lambda: screen.finished)
        await pilot.pause()
        table = screen.query_one("#sweep-table")
        heads = [str(c.label) for c in table.columns.values()]
        assert heads[:3] == ["block", "replicas", "CPU tier"]
        assert heads[5:10] == ["GPU hit rate (vLLM)", "bound (prefix-tui)", "CPU-tier hits",
                               "CPU-tier hit rate", "cached GPU+CPU"]
        assert table.row_count == 4
        row = dict(zip(heads, (str(c) for c in table.get_row_at(3))))
        assert (row["replicas"], row["CPU tier"], row["CPU-tier hits"]) == (
            "2 × prefix-aware", "64", "60")
        assert (row["CPU-tier hit rate"], row["cached GPU+CPU"]) == ("10.00 %", "56.00 %")
        assert row["hit rate per replica"] == "25.0 · 25.0 %"  # 250 of 1,000 each
        assert dict(zip(heads, (str(c) for c in table.get_row_at(0))))["CPU tier"] == "off"
        chart = screen.query_one(SweepChart)
        lines = [chart.render_line(y).text for y in range(chart.size.height)]
        # The legend wraps: a line per curve that does not fit beside the others.
        assert any("● vLLM hit rate, block 16, CPU 64 blocks, 2× prefix-aware" in line
                   for line in lines[:4])
        # Four GPU hit-rate curves and, for the two points with a tier, the share cached in
        # either tier (its own curve): a legend entry and one point each.
        assert sum(line.count("●") for line in lines) == 6 + 6
        text = "\n".join(lines)
        assert "● vLLM hit rate, block 16, CPU 64 blocks, 2× prefix-aware · GPU+CPU" in text
        await pilot.press("q")


async def test_rows_keep_the_sweeps_order_whichever_point_finishes_first(tmp_path):
    def backwards(specs, choice, on_result, on_progress, cancel):
        done = [_result(s.index, 100 * (s.index + 1), 400, 100) for s in specs]
        for r in reversed(done):
            on_result(r)
        return done

    app = SweepApp(_plan(tmp_path), ExecutorChoice("local", jobs=1), runner=backwards)
    async with app.run_test(size=(120, 48)) as pilot:
        screen = app.main
        await wait_until(pilot, lambda: screen.finished)
        await pilot.pause()
        table = screen.query_one("#sweep-table")
        assert [str(table.get_row_at(i)[1]) for i in range(3)] == ["100", "1,000", "inf (100)"]
