"""--engine v1@0.10: prefix-tui's V1 adapter on vLLM 0.10.1.1's V1, in the legacy worker.

- Per-request hits, outcomes and evictions equal a plain loop driving 0.10.1.1's
  KVCacheManager directly, token by token, on ShareGPT-made traces (../shared/data).
- A hand-worked case where the two releases evict differently (block size 4, 4 usable
  blocks): 0.33 puts a freed block without a hash at the free queue's head
  (block_pool.py:837-847), 0.10.1.1 appends every freed block at its tail (250-255).
  Prompts of 5 tokens: one full block (cached) and one partial.
    0.10.1.1: A takes 1,2 -> queue 3,4,2,1; B takes 3,4 -> 2,1,4,3; C takes 2 and 1,
      evicting A's block; A again misses and takes 4 and 3, evicting B's block.
    0.33:     A takes 1,2 -> queue 2,3,4,1; B takes 2,3 -> 3,4,1,2; C takes 3,4 (nothing
      evicted); A again hits its first block (4 tokens).
- compare --engines v1@0.10,v1 names that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine.backends import BuildOptions, lookup
from engine.backends.vllm_v0.client import close_idle_workers, legacy_python
from engine.settings import EngineSettings
from engine.trace.generate import generate, write_jsonl
from engine.trace.reader import TraceSource
from tests.conftest import ROOT, req, shared
from tests.legacy.conftest import replay

PLAIN = Path(__file__).with_name("plain_v1_010.py")
A, B, C = [1, 2, 3, 4, 5], [11, 12, 13, 14, 15], [21, 22, 23, 24, 25]


@pytest.fixture(scope="module")
def build(v0_backend_factory):
    """Backends by (engine, settings); v1@0.10 workers are pooled like V0's."""
    made: dict = {}

    def make(engine: str, settings: EngineSettings):
        if (engine, settings) not in made:
            made[engine, settings] = lookup(engine, "sequential").build(BuildOptions(settings))
        return made[engine, settings]

    yield make
    close_idle_workers()


def test_the_two_releases_queue_freed_blocks_differently(build):
    settings = EngineSettings(block_size=4, num_blocks=5)
    trace = [req(0, A), req(1, B), req(2, C), req(3, A)]
    old = replay(build("v1@0.10", settings), trace)
    new = replay(build("v1", settings), trace)
    assert build("v1@0.10", settings).version == "0.10.1.1"
    assert [r.request.hit_tokens for r in old] == [0, 0, 0, 0]
    assert [r.request.evicted_blocks for r in old] == [0, 0, 1, 1]
    assert [r.seqs[0].block_ids for r in old] == [(1, 2), (3, 4), (2, 1), (4, 3)]
    assert [r.request.hit_tokens for r in new] == [0, 0, 0, 4]
    assert [r.request.evicted_blocks for r in new] == [0, 0, 0, 0]
    assert [r.seqs[0].block_ids for r in new] == [(1, 2), (2, 3), (3, 4), (1, 4)]
    # Both keep block 0 as the null block; records carry 0.10.1.1's sha256 as 32 bytes.
    cached = [c.after.block_hash for r in old for c in r.pool_delta if c.after.block_hash]
    assert cached and all(len(h) == 32 for h in cached)
    # The free queues while B runs: A's partial block at the tail (0.10) or reused (0.33).
    assert (old[1].free_head, new[1].free_head) == ((2, 1), (4, 1))


def plain_rows(requests, block_size: int, num_blocks: int, tmp_path: Path) -> list:
    spec = tmp_path / "plain.json"
    spec.write_text(json.dumps({
        "block_size": block_size, "num_blocks": num_blocks,
        "requests": [[list(r.prompt_token_ids), list(r.output_token_ids or ())]
                     for r in requests],
    }))
    out = subprocess.run([str(legacy_python()), str(PLAIN), str(spec)], capture_output=True,
                         text=True, check=True,
                         env={"PYTHONHASHSEED": "0", "VLLM_LOGGING_LEVEL": "ERROR"})
    return json.loads(out.stdout)


@pytest.mark.parametrize("kind,num_blocks", [("multi-turn", 300), ("single-turn", 1800)])
def test_hits_equal_a_plain_v1_010_loop(kind, num_blocks, tmp_path, build):
    sharegpt = shared("sharegpt", "sharegpt_v3_first1000.jsonl")
    path = tmp_path / "trace.jsonl"
    write_jsonl(generate(kind, num_requests=60, seed=1, sharegpt=str(sharegpt)), str(path))
    requests = list(TraceSource(str(path)).reader())
    if kind == "single-turn":  # no shared prefix: send it again, newest first
        requests += [replace(r, index=60 + k, request_id=f"again-{r.request_id}")
                     for k, r in enumerate(reversed(requests))]
    settings = EngineSettings(block_size=16, num_blocks=num_blocks)
    records = replay(build("v1@0.10", settings), requests, detail=False)
    got = [[r.request.outcome.value, r.request.hit_tokens, r.request.evicted_blocks]
           for r in records]
    want = plain_rows(requests, 16, num_blocks, tmp_path)
    assert got == want
    assert sum(row[2] for row in want) > 0, "the pool should be small enough to evict"
    assert sum(row[1] for row in want) > 0


def test_compare_engines_across_releases_names_the_queue_rule(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"prompt_token_ids": p, "output_len": 0}) + "\n"
                             for p in (A, B, C, A)))
    out = tmp_path / "c.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "compare", str(trace), "--engines", "v1@0.10,v1",
         "--no-progress", "--block-size", "4", "--num-gpu-blocks-override", "5",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [r["settings"]["vllm_version"] for r in doc["runs"]] == ["0.10.1.1", "0.33.0"]
    diffs = doc["differences"]
    assert [(d["index"], d["v1@0.10_evicted_blocks"], d["v1_evicted_blocks"])
            for d in diffs] == [(2, 1, 0), (3, 1, 0)]
    assert "block_pool.py:250-255" in diffs[0]["reason"]
    assert (diffs[1]["v1@0.10_hit_tokens"], diffs[1]["v1_hit_tokens"]) == (0, 4)
