"""The original experiment's failure: traces/v0_eviction_assert.jsonl (`prefix-tui gen
--kind multi-turn --num-requests 20 --seed 0`), block size 16, 120 blocks.

In the experiment's order (allocate -> get_num_cached_tokens -> free) V0 raises
`assert content_hash_to_evict in self._cached_blocks` at request 16; in the scheduler's
order the same trace completes (README: "Why the experiment's V0 replay raised")."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.model import Outcome
from engine.settings import EngineSettings, V0Settings
from engine.trace.reader import TraceSource
from tests.conftest import ROOT
from tests.legacy.conftest import replay

TRACE = ROOT / "traces" / "v0_eviction_assert.jsonl"
SETTINGS = EngineSettings(block_size=16, num_blocks=120)
ASSERTION = "prefix_caching_block.py:336 (_maybe_allocate_evicted_block_id): assert " \
    "content_hash_to_evict in self._cached_blocks"


def test_experiment_order_raises_the_assertion_at_its_step(v0_backend_factory):
    backend = v0_backend_factory(SETTINGS, V0Settings(call_order="experiment"))
    records = replay(backend, TraceSource(str(TRACE)).reader())
    assert len(records) == 17
    assert all(r.error is None and r.request.outcome is Outcome.OK for r in records[:16])
    failed = records[16]
    assert failed.request.outcome is Outcome.ERROR
    assert ASSERTION in failed.error.message
    assert "AssertionError" in failed.error.traceback
    # The pool is shown as it was before the step; the block and hash vLLM held are named.
    assert failed.pool_delta == () and failed.evicted == ()
    assert failed.v0.error_block is not None and failed.v0.error_hash is not None
    # The hash V0 tried to evict is one that block lost at an earlier eviction: a stale
    # heap entry, taken for live because every access time is the same -1.
    block, stale = failed.v0.error_block, failed.v0.error_hash
    assert any((block, stale) == tuple(e) for r in records[:16] for e in r.evicted)
    held = {c.block_id: c.after for r in records[:16] for c in r.pool_delta}
    assert held[block].block_hash != stale
    assert {e.last_accessed for r in records[:16] for e in r.v0.evictor} == {-1}


def test_scheduler_order_replays_the_same_trace_to_the_end(v0_backend_factory):
    backend = v0_backend_factory(SETTINGS)
    records = replay(backend, TraceSource(str(TRACE)).reader())
    assert len(records) == 20
    assert all(r.error is None for r in records)
    assert sum(r.request.evicted_blocks for r in records) > 0  # eviction did run
    assert not any(e.stale for r in records for e in r.v0.evictor)


def test_headless_reports_the_steps_before_and_exits_1(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tui", str(TRACE), "--headless", "--no-progress",
         "--engine", "v0", "--v0-call-order", "experiment", "--num-gpu-blocks-override",
         "120", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("prefix-tui:")]
    assert len(lines) == 1 and "step 16" in lines[0] and "content_hash_to_evict" in lines[0]
    assert "Traceback" not in proc.stderr
    assert "PREFIX SHARING METRICS" in proc.stdout  # the report of the 16 steps before
    doc = json.loads(out.read_text())
    assert doc["status"]["state"] == "vllm_error"
    assert doc["requests"][-1]["outcome"] == "error"
    assert [r["outcome"] for r in doc["requests"][:-1]] == ["ok"] * 16
    assert doc["settings"]["engine"] == "v0"
    assert doc["settings"]["v0"]["call_order"] == "experiment"
