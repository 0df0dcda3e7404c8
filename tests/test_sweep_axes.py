"""`prefix-tui sweep`'s other axes: a CPU offloading tier per point (serve mode) and N
replicas behind a router per point. Each point (run in its own spawned process, as the
sweep runs it) equals the same replay done directly with the inspector's headless
`--json` in this process, figure for figure.

Tiny traces: the CPU tier's is tests/test_cpu_tier.py's (block size 16, a GPU pool of 7
blocks holds one 65-token request, so the next one evicts it to the CPU tier); the
replicas' is tests/test_replicas.py's conversations (block size 4).
"""

from __future__ import annotations

import csv
import json

import pytest

from tests.test_replicas import conversations
from tui.cli import main

A = list(range(1000, 1064))  # four full blocks of 16
B = list(range(5000, 5064))
C = list(range(9000, 9064))


def write(path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return str(path)


def headless(trace: str, out, *flags: str) -> dict:
    assert main([trace, "--headless", "--no-progress", "--json", str(out), *flags]) == 0
    return json.loads(out.read_text())


def sweep(trace: str, out, *flags: str) -> dict:
    code = main(["sweep", trace, "--no-progress", "--no-plot", "--no-ceilings", "--jobs",
                 "2", "--json", str(out), *flags])
    assert code == 0
    return json.loads(out.read_text())


def test_a_cpu_tier_axis_equals_serve_mode_run_directly(tmp_path, capsys):
    prompts = [A + [1], B + [2], A + [3], C + [4], B + [5], A[:32] + C[:32] + [6]]
    trace = write(tmp_path / "t.jsonl", [
        {"prompt_token_ids": p, "output_len": 2, "arrival_time": 10.0 * i}
        for i, p in enumerate(prompts)])
    common = ["--mode", "serve", "--block-size", "16", "--num-gpu-blocks-override", "7"]
    doc = sweep(trace, tmp_path / "s.json", *common, "--num-cpu-blocks", "0,20")
    table = capsys.readouterr().out
    assert "CPU-tier hit rate" in table and "cached GPU+CPU" in table
    assert doc["settings"]["cpu_tier_axis"]["values"] == [0, 20]
    points = doc["points"]
    assert [p["num_cpu_blocks"] for p in points] == [0, 20]
    for point, cpu in zip(points, (0, 20)):
        direct = headless(trace, tmp_path / f"h{cpu}.json", *common, "--num-cpu-blocks",
                          str(cpu))
        t = direct["totals"]
        for key in ("gpu_hit_tokens", "cpu_hit_tokens", "external_query_tokens",
                    "external_hit_tokens", "hit_tokens", "query_tokens", "hit_rate",
                    "evictions", "requests"):
            assert point[key] == t[key], (cpu, key)
        if cpu:
            tier = direct["status"]["serve"]["tier"]
            assert point["num_cpu_blocks"] == tier["num_blocks"] == cpu
            assert (point["cpu_hit_rate"], point["cached_rate"]) == (
                tier["cpu_hit_rate"], tier["cached_rate"])
        # The missed blocks by reason add up in serve mode too; with a tier, cpu_hit blocks
        # are GPU misses that vLLM's hit_blocks (num_cached_tokens) counts as hits.
        miss = point["miss_blocks"]
        assert ("cpu_hit" in miss) == bool(cpu)
        assert (sum(miss.values()) - miss.get("cpu_hit", 0)
                == point["prompt_blocks"] - point["hit_blocks"])
    off, on = points
    # The trace brings evicted prefixes back: the tier turns GPU misses into CPU hits.
    assert off["cpu_hit_tokens"] == 0 and on["cpu_hit_tokens"] > 0
    assert on["cached_rate"] > off["cached_rate"] == off["hit_rate"]


def test_an_instances_axis_equals_each_routed_replay_run_directly(tmp_path, capsys):
    trace = write(tmp_path / "t.jsonl", [
        {"request_id": q.request_id, "prompt_token_ids": list(q.prompt_token_ids),
         "output_len": 1, "conversation_id": q.conversation_id}
        for q in conversations(3, 3)])
    common = ["--block-size", "4", "--num-gpu-blocks-override", "8", "--router",
              "prefix-aware"]
    doc = sweep(trace, tmp_path / "s.json", *common, "--instances", "1,2")
    assert "hit rate per replica" in capsys.readouterr().out
    assert (doc["settings"]["instances"], doc["settings"]["router"]) == ([1, 2], "prefix-aware")
    points = doc["points"]
    assert [(p["instances"], p["router"], p["num_gpu_blocks"]) for p in points] == [
        (1, "prefix-aware", 8), (2, "prefix-aware", 8)]
    for point in points:
        n = point["instances"]
        direct = headless(trace, tmp_path / f"h{n}.json", *common, "--instances", str(n))
        t = direct["totals"]
        for key in ("hit_tokens", "query_tokens", "hit_rate", "sharing_fraction",
                    "evictions", "not_fitted", "requests", "tokens"):
            assert point[key] == t[key], (n, key)
        reps = [{k: r[k] for k in ("hit_tokens", "query_tokens", "requests", "evictions")}
                for r in direct["status"]["replicas"]]
        assert [{k: r[k] for k in reps[0]} for r in point["replicas"]] == reps
        assert [r["replica"] for r in point["replicas"]] == list(range(n))
    # Prefix-aware routing keeps conversations apart: two replicas evict less.
    assert points[1]["evictions"] < points[0]["evictions"]


def test_replicas_with_a_cpu_tier_axis_equal_each_run_directly(tmp_path, capsys):
    prompts = [A + [1], B + [2], A + [3], C + [4], B + [5], A[:32] + C[:32] + [6]]
    trace = write(tmp_path / "t.jsonl", [
        {"prompt_token_ids": p, "output_len": 2, "arrival_time": 10.0 * i}
        for i, p in enumerate(prompts)])
    common = ["--mode", "serve", "--block-size", "16", "--num-gpu-blocks-override", "7",
              "--router", "round-robin"]
    csv_path = tmp_path / "s.csv"
    doc = sweep(trace, tmp_path / "s.json", *common, "--instances", "1,2",
                "--num-cpu-blocks", "0,20", "--csv", str(csv_path))
    points = doc["points"]
    assert sorted((p["instances"], p["num_cpu_blocks"]) for p in points) == [
        (1, 0), (1, 20), (2, 0), (2, 20)]
    for point in points:
        n, cpu = point["instances"], point["num_cpu_blocks"]
        direct = headless(trace, tmp_path / f"h{n}-{cpu}.json", *common, "--instances",
                          str(n), "--num-cpu-blocks", str(cpu))
        t = direct["totals"]
        for key in ("gpu_hit_tokens", "cpu_hit_tokens", "hit_tokens", "query_tokens",
                    "evictions", "requests"):
            assert point[key] == t[key], (n, cpu, key)
        if cpu:  # every replica has its own tier: the sizes are summed over replicas
            assert direct["status"]["serve"]["tier"]["num_blocks"] == n * cpu
    # The trace brings evicted prefixes back (see the test above): the tier hits.
    one_tier = next(p for p in points if (p["instances"], p["num_cpu_blocks"]) == (1, 20))
    assert one_tier["cpu_hit_tokens"] > 0
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["miss_blocks_cpu_hit"] == "" for r in rows} == {True, False}
    for r in rows:
        assert (r["miss_blocks_cpu_hit"] == "") == (r["num_cpu_blocks"] in ("", "0"))
