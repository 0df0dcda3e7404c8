"""The inspector on a model with several KV cache groups (--hf-config): one block table
per group with vLLM's null block shown as such, the pool map's group marks, the totals'
line per group."""

from __future__ import annotations

from dataclasses import replace

from engine.hf_config import layers_from_config
from engine.layout_metrics import group_rows
from engine.model import BlockState
from engine.settings import KVLayout
from tests.test_tui_support import CHAT, chat_trace, drawn_glyph, goto_step, inspector_app
from tui.widgets.group_lines import GroupLines, group_entries
from tui.widgets.legend import Legend
from tui.widgets.pool_map import PoolMap

# gpt-oss-like: even layers slide over 8 tokens (two blocks of 4), odd layers are full.
MODEL = layers_from_config("gpt-oss-like.json", {
    "model_type": "gpt_oss", "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 4,
    "sliding_window": 8})
HYBRID = replace(CHAT, layout=KVLayout(model=MODEL))


def rendered(widget, y: int) -> str:
    return "".join(segment.text for segment in widget.render_line(y))


async def test_block_table_per_group_null_blocks_and_group_marks():
    app = inspector_app(HYBRID, requests=chat_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        trace = chat_trace()
        # The longest prompt hits far past the window: the sliding group leaves null places.
        step = max(range(len(trace)), key=lambda i: trace[i].num_prompt_tokens)
        await goto_step(pilot, app, step)
        main = app.main
        rec = main.history.current
        assert [g.kind for g in main.kv_groups] == ["sliding_window", "full"]
        sliding, full = rec.seqs[0].tables
        assert BlockState.SKIPPED in sliding.states and BlockState.SKIPPED not in full.states
        table = main.block_table
        letters = table.letters.split("|")
        assert letters == ["".join(s.letter for s in t.states) for t in (sliding, full)]
        assert "-" in letters[0] and "-" not in letters[1]
        assert rendered(table, 0).startswith("group 0 · sliding 8 · 1 layer")
        # The null block is not a place to walk to: every block [ / ] visits is real.
        assert main.history.pool is not None and 0 not in table.block_ids
        # The pool map marks a cached-free block with the group its hash was cached for.
        pool_map = app.query_one(PoolMap)
        lit = main.lit_blocks(rec)
        cached = [b for b, s in enumerate(main.history.pool)
                  if s.block_hash is not None and s.ref_cnt == 0 and b not in lit]
        assert cached
        assert {drawn_glyph(pool_map, b) for b in cached} <= {"0", "1"}
        assert all(drawn_glyph(pool_map, b) == str(main.history.pool[b].group) for b in cached)
        # Totals: one entry per group, from the record's Totals.
        lines = app.query_one(GroupLines)
        assert lines.display and lines.entries == group_entries(rec.totals, main.kv_groups)
        assert [r[2] for r in group_rows(rec.totals, main.kv_groups)] == list(
            rec.totals.group_hit_blocks)
        assert app.query_one(Legend).groups


async def test_serve_view_has_a_row_per_sequence_and_group():
    from tests.test_tui_support import at_serve_step, serve_trace, wait_until

    app = inspector_app(HYBRID, mode="serve", requests=serve_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.main.feed.replay_done and len(app.main.history) > 1)
        main = app.main
        step = next(i for i, r in enumerate(main.history.records) if len(r.seqs) >= 2)
        main.goto(step)
        await wait_until(pilot, at_serve_step(app, step))
        rec = main.history.current
        rows = main.running.rows()
        assert len(rows) == 2 * len(rec.seqs)
        assert [s.request_id for s in main.running.seqs][:2] == [
            f"{rec.seqs[0].request_id} · g0", f"{rec.seqs[0].request_id} · g1"]
        for (_sid, glyphs, ids), table in zip(rows, [t for s in rec.seqs for t in s.tables]):
            assert ids == table.block_ids and len(glyphs) == len(ids)
        # The totals' line per group, as in sequential mode (serve rows carry groups now).
        lines = app.query_one(GroupLines)
        assert len(rec.totals.group_hit_blocks) == 2
        assert lines.display and lines.entries == group_entries(rec.totals, main.kv_groups)
