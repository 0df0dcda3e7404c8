"""Per-request hit tokens (and outcomes, evictions) of a V0 replay equal a plain loop that
drives V0's block manager directly, token by token, on traces made from real ShareGPT
conversations (../shared/data). The pools are small enough that eviction runs."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from engine.backends.vllm_v0.client import legacy_python
from engine.settings import EngineSettings
from engine.trace.generate import generate, write_jsonl
from engine.trace.reader import TraceSource
from tests.conftest import shared
from tests.legacy.conftest import replay

PLAIN = Path(__file__).with_name("plain_v0.py")


def plain_rows(requests, block_size: int, num_blocks: int, tmp_path: Path) -> list:
    spec = tmp_path / "plain.json"
    spec.write_text(json.dumps({
        "block_size": block_size, "num_blocks": num_blocks,
        "requests": [[list(r.prompt_token_ids), list(r.output_token_ids or ())]
                     for r in requests],
    }))
    out = subprocess.run([str(legacy_python()), str(PLAIN), str(spec)], capture_output=True,
                         text=True, check=True, env={"PYTHONHASHSEED": "0"})
    return json.loads(out.stdout)


@pytest.mark.parametrize("kind,num_blocks", [("multi-turn", 300), ("single-turn", 1800)])
def test_hits_equal_a_plain_v0_loop(kind, num_blocks, tmp_path, v0_backend_factory):
    sharegpt = shared("sharegpt", "sharegpt_v3_first1000.jsonl")
    path = tmp_path / "trace.jsonl"
    write_jsonl(generate(kind, num_requests=60, seed=1, sharegpt=str(sharegpt)), str(path))
    requests = list(TraceSource(str(path)).reader())
    if kind == "single-turn":  # no shared prefix: send it again, newest first, so the hits
        # depend on what LRU kept (in file order a cyclic pattern would never hit)
        requests += [replace(r, index=60 + k, request_id=f"again-{r.request_id}")
                     for k, r in enumerate(reversed(requests))]
    # Traces made from ShareGPT have every reply; a replay feeds them as decode tokens.
    assert all(r.output_token_ids for r in requests)
    settings = EngineSettings(block_size=16, num_blocks=num_blocks)
    records = replay(v0_backend_factory(settings), requests, detail=False)
    got = [[r.request.outcome.value, r.request.hit_tokens, r.request.evicted_blocks]
           for r in records]
    want = plain_rows(requests, 16, num_blocks, tmp_path)
    assert got == want
    assert sum(row[2] for row in want) > 0, "the pool should be small enough to evict"
    assert sum(row[1] for row in want) > 0
