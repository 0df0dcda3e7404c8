"""Miss reason ``cpu_hit``: a prompt block the GPU prefix cache missed and vLLM loaded
from its CPU offloading tier (serve mode). The pool of tests/test_cpu_tier.py: block size
16, 7 GPU blocks (6 usable) hold one 65-token request with its output, so the next one
evicts it from the GPU; A, B are four full blocks each."""

from __future__ import annotations

import json

import pytest

from engine.backends.vllm_v1.scheduler import V1Scheduler
from engine.block_reasons import BlockReasons
from engine.replay.serve import ServeReplay
from engine.settings import EngineSettings, ServeSettings, TierSettings
from tests.conftest import req

BS = 16
A = list(range(1000, 1064))
B = list(range(5000, 5064))


def reasons(tier: TierSettings | None, *, async_sched: bool, detail: bool = True):
    serve = ServeSettings(async_scheduling=async_sched, tier=tier or TierSettings())
    b = V1Scheduler(EngineSettings(block_size=BS, num_blocks=7), serve)
    reqs = [req(i, p, output_len=2, arrival=10.0 * i)
            for i, p in enumerate((A + [1], B + [2], A + [3]))]
    out: dict[str, tuple[BlockReasons, int, int | None]] = {}
    for rec in ServeReplay(b, reqs, detail=detail):
        assert rec.error is None
        for row in rec.rows:
            if row.reasons is not None:
                out[row.request_id] = (row.reasons, row.prompt_blocks, row.hit_blocks)
    return out


@pytest.mark.parametrize("async_sched,latency,detail",
                         [(False, 0, True), (True, 0, False), (False, 3, True)],
                         ids=["sync", "async-headless", "latency-3"])
def test_blocks_loaded_back_from_the_cpu_tier_are_cpu_hit(async_sched, latency, detail):
    """r2 = A again: B took five of the six GPU blocks, so A's first block still hits on
    the GPU and its other three load from the CPU tier (vLLM: 16 local + 48 external
    tokens, tests/test_cpu_tier.py). Its 65th token is a partial block."""
    got = reasons(TierSettings(num_cpu_blocks=20, latency=latency), async_sched=async_sched,
                  detail=detail)
    why, prompt_blocks, hit_blocks = got["r2"]
    assert why.counts() == dict(cold=0, evicted=0, partial=1, last_token=0, after_miss=0,
                                salt=0, lora=0, cpu_hit=3)
    gpu_hit_blocks = 1
    assert why.missed == prompt_blocks - gpu_hit_blocks == 4
    assert hit_blocks == 4  # vLLM's num_cached_tokens: GPU and CPU tier together
    assert sum(s.blocks for s in why.hit_sources) == hit_blocks  # all first stored by r0
    assert [s.request_id for s in why.hit_sources] == ["r0"]
    for first in ("r0", "r1"):
        assert got[first][0].counts()["cpu_hit"] == 0 and got[first][0].cold == 4


@pytest.mark.parametrize("async_sched", [False, True], ids=["sync", "async"])
def test_without_a_tier_the_same_blocks_are_evicted_and_cpu_hit_never_appears(async_sched):
    got = reasons(None, async_sched=async_sched)
    why, prompt_blocks, hit_blocks = got["r2"]
    assert (why.evicted, why.partial, hit_blocks) == (3, 1, 1)
    assert all(w.cpu_hit is None and "cpu_hit" not in w.counts() for w, _p, _h in got.values())


def _cli(tmp_path, *flags: str) -> tuple[dict, str]:
    from tui.cli import main

    lines = [{"request_id": f"r{i}", "prompt_token_ids": p, "output_len": 2,
              "arrival_time": 10.0 * i} for i, p in enumerate((A + [1], B + [2], A + [3]))]
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / f"out{len(flags)}.json"
    code = main([str(trace), "--headless", "--no-progress", "--json", str(out), "--mode",
                 "serve", "--num-gpu-blocks-override", "7", *flags])
    assert code == 0
    return json.loads(out.read_text()), out.name


def test_json_and_report_carry_cpu_hit_only_with_a_tier(tmp_path, capsys):
    doc, _ = _cli(tmp_path, "--num-cpu-blocks", "20")
    rows = {x["request_id"]: x for x in doc["requests"]}
    assert rows["r2"]["miss_blocks"]["cpu_hit"] == 3 == rows["r2"]["cpu_hit_tokens"] // BS
    assert doc["reasons"]["miss_blocks"]["cpu_hit"] == 3
    # Every GPU miss once: prompt blocks - GPU hit blocks, summed.
    gpu_missed = sum(x["prompt_blocks"] - x["gpu_hit_tokens"] // BS for x in doc["requests"])
    assert sum(doc["reasons"]["miss_blocks"].values()) == gpu_missed
    assert "loaded from the CPU tier" in capsys.readouterr().out
    plain, _ = _cli(tmp_path)
    assert "cpu_hit" not in plain["reasons"]["miss_blocks"]
    assert all("cpu_hit" not in x["miss_blocks"] for x in plain["requests"])
    assert "loaded from the CPU tier" not in capsys.readouterr().out


def test_the_request_pane_line_names_the_cpu_tier():
    from tui.widgets.reasons_text import reasons_line

    line = reasons_line(BlockReasons(partial=1, cpu_hit=3))
    assert line.startswith("missed 4: 1 partial · 3 from the CPU tier")
    assert "CPU" not in reasons_line(BlockReasons(partial=1))
