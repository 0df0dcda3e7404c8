"""Totals per tenant (cache_salt), adapter and request type: computed once in
engine.metrics from the per-request rows, shown by the report, the JSON and the inspector.
Numbers are hand-worked (block size 4, prompts of three full blocks and a partial one)."""

from __future__ import annotations

import dataclasses
import json

from engine import metrics
from engine.model import Outcome, RequestResult
from tests.conftest import req
from tests.test_tui_support import CHAT, at_step, goto_step, inspector_app, wait_until
from tui.cli import main
from tui.widgets.breakdown import BreakdownLines

TOKENS = tuple(range(100, 113))  # 13 tokens: 3 full blocks of 4 and a partial one


def tenant_trace():
    salts = ["a", "b", "a", None, "a", "b"]
    loras = [None, None, "x", None, None, None]
    return [dataclasses.replace(req(i, TOKENS, output_len=1), cache_salt=s, lora_name=l)
            for i, (s, l) in enumerate(zip(salts, loras))]


# Hand-worked, sequential: salt a (r0) stores 3 blocks; b (r1) misses; a + adapter x (r2)
# misses; no salt (r3) misses; a (r4) hits 12 tokens; b (r5) hits 12.
HITS = [0, 0, 0, 0, 12, 12]


def row(r, hit: int, outcome: Outcome = Outcome.OK) -> RequestResult:
    return RequestResult(request=r, seq_id=str(r.index), outcome=outcome, prompt_tokens=13,
                         hit_tokens=hit, hit_blocks=hit // 4, new_blocks=4 - hit // 4,
                         output_blocks=0, evicted_blocks=0, prompt_blocks=4,
                         recomputed_last_block=False)


def test_breakdown_sums_rows_by_salt_and_adapter():
    b = metrics.Breakdown()
    rows = [row(r, h) for r, h in zip(tenant_trace(), HITS)]
    rows.append(row(dataclasses.replace(req(6, TOKENS), cache_salt="a"), 0, Outcome.NOT_FITTED))
    b.add(rows)
    salts = dict(b.split("cache_salt"))
    assert list(salts) == ["a", "b", None]  # most requests first
    a = salts["a"]
    assert (a.requests, a.served, a.prompt_tokens, a.hit_tokens, a.hit_blocks) == (4, 3, 39, 12, 3)
    assert a.hit_rate == 12 / 39
    assert (salts["b"].hit_tokens, salts["b"].prompt_tokens) == (12, 26)
    loras = dict(b.split("lora_name"))
    assert (loras[None].requests, loras["x"].requests) == (6, 1)
    assert b.split("request_type") == []  # nobody has a type: no breakdown
    # Groups add up to the totals of the same rows.
    assert sum(g.prompt_tokens for _, g in b.split("cache_salt")) == 13 * 6


def test_series_at_any_step_equals_a_fresh_sum():
    rows = [(row(r, h),) for r, h in zip(tenant_trace(), HITS)]
    series = metrics.BreakdownSeries(every=2)
    for step in rows:
        series.append(step)
    for i in range(len(rows)):
        fresh = metrics.Breakdown()
        for step in rows[: i + 1]:
            fresh.add(step)
        assert series.at(i).groups == fresh.groups


def test_report_and_json_by_tenant(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(
        json.dumps({"prompt_token_ids": list(r.prompt_token_ids), "output_len": 1,
                    **({"cache_salt": r.cache_salt} if r.cache_salt else {}),
                    **({"lora_name": r.lora_name} if r.lora_name else {})}) + "\n"
        for r in tenant_trace()))
    out = tmp_path / "o.json"
    code = main([str(trace), "--headless", "--no-progress", "--block-size", "4", "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "By tenant (cache_salt)" in printed.out and "salt 'a', 3 requests" in printed.out
    doc = json.loads(out.read_text())
    assert [r["hit_tokens"] for r in doc["requests"]] == HITS
    salts = {g["cache_salt"]: g for g in doc["by_tenant"]["cache_salt"]}
    assert (salts["a"]["hit_tokens"], salts["a"]["prompt_tokens"]) == (12, 39)
    assert (salts["b"]["hit_tokens"], salts[None]["hit_tokens"]) == (12, 0)
    assert {g["lora_name"]: g["requests"] for g in doc["by_tenant"]["lora_name"]} == {None: 5, "x": 1}
    assert doc["by_type"] == []
    assert [r["cache_salt"] for r in doc["requests"]] == ["a", "b", "a", None, "a", "b"]


async def test_inspector_shows_hits_per_tenant_at_the_cursor():
    app = inspector_app(CHAT, requests=tenant_trace())
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, at_step(app, 0))
        widget = app.query_one(BreakdownLines)
        # Only salted requests so far, no adapter: one line.
        assert widget.display and widget.lines == [("salt", ["a 0.0% (1)"])]
        await goto_step(pilot, app, 5)
        assert widget.lines[0] == ("salt", ["a 30.8% (3)", "b 46.2% (2)", "(no salt) 0.0% (1)"])
        await goto_step(pilot, app, 1)  # back: the figures of step 1 again
        assert widget.lines[0] == ("salt", ["a 0.0% (1)", "b 0.0% (1)"])
