"""--engine v0 in the main suite, where .venv-legacy need not exist: the one-line
"how to build it" error, the registry entry, and V0's figures. The V0 replays themselves
are tests/legacy (make test-legacy)."""

from __future__ import annotations

import os
import subprocess
import sys

from engine import metrics
from engine.backends import lookup
from engine.model import Totals
from engine.replay.protocol import Pacing, View
from tests.conftest import ROOT

TRACE = str(ROOT / "traces" / "v0_eviction_assert.jsonl")


def test_engine_v0_without_legacy_venv_is_one_line_naming_make_legacy(tmp_path):
    env = dict(os.environ, PREFIX_TUI_LEGACY_PYTHON=str(tmp_path / "no-python"))
    for extra in (["--headless"], []):
        proc = subprocess.run([sys.executable, "-m", "tui", TRACE, "--engine", "v0", *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("prefix-tui: --engine v0 needs vLLM 0.10.1.1")
        assert "make legacy" in lines[0] and "Traceback" not in proc.stderr


def test_v0_registry_entry_uses_the_sequential_screen():
    entry = lookup("v0", "sequential")
    assert (entry.view, entry.pacing, entry.uses_scheduler) == (
        View.SEQUENTIAL, Pacing.PER_REQUEST, False)
    assert entry.precheck is not None


def test_v0_figures_show_v0s_own_hit_rate_instead_of_the_window():
    keys = [f.key for f in metrics.figures(Totals(hits=8, queries=21, v0_hit_rate=0.5))]
    assert "v0_hit_rate" in keys and "recent_hit_rate" not in keys
    assert "v0_hit_rate" not in [f.key for f in metrics.figures(Totals())]
    assert metrics.totals_dict(Totals(v0_hit_rate=0.25))["v0_hit_rate"] == 0.25
    assert "v0_hit_rate" not in metrics.totals_dict(Totals())


def test_the_assertion_trace_is_what_the_generator_makes(tmp_path):
    from engine.trace.generate import generate, write_jsonl

    out = tmp_path / "t.jsonl"
    write_jsonl(generate("multi-turn", num_requests=20, seed=0), out)
    assert out.read_bytes() == (ROOT / "traces" / "v0_eviction_assert.jsonl").read_bytes()


def _row(rid, prompt, hit, evicted=0, outcome="ok", message=""):
    return {"request_id": rid, "outcome": outcome, "prompt_tokens": prompt, "hit_tokens": hit,
            "evicted_blocks": evicted, "message": message}


def test_request_differences_name_a_reason_for_each():
    from engine.differences import request_differences

    v0 = [_row("a", 32, 0), _row("b", 32, 32), _row("c", 40, 16, evicted=2),
          _row("d", 50, 0, outcome="not_fitted", message="V0's can_allocate said NEVER"),
          _row("e", 40, 32)]
    v1 = [_row("a", 32, 0), _row("b", 32, 16), _row("c", 40, 16, evicted=3),
          _row("d", 50, 0), _row("e", 40, 16)]
    diffs = request_differences(v0, v1, ("v0", "v1"), 16)
    assert [d.index for d in diffs] == [1, 2, 3, 4]
    assert "v0 counts the whole prompt" in diffs[0].reason
    assert "caps a hit at prompt length - 1" in diffs[0].reason
    assert "evicted 2 (v0) vs 3 (v1)" in diffs[1].reason
    assert diffs[2].reason == "v0: not_fitted (V0's can_allocate said NEVER)"
    assert "v0 had evicted 2, v1 3 cached blocks before it" in diffs[3].reason


def test_v1_at_010_entry_runs_in_the_legacy_worker_with_a_null_block(tmp_path):
    entry = lookup("v1@0.10", "sequential")
    assert (entry.view, entry.null_block_id) == (View.SEQUENTIAL, 0)
    env = dict(os.environ, PREFIX_TUI_LEGACY_PYTHON=str(tmp_path / "no-python"))
    proc = subprocess.run([sys.executable, "-m", "tui", TRACE, "--engine", "v1@0.10",
                           "--headless"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prefix-tui: --engine v1@0.10 needs vLLM 0.10.1.1 in "
        f"PREFIX_TUI_LEGACY_PYTHON={tmp_path / 'no-python'}, which is not there: build it "
        "with `make legacy` (1 to 7 minutes, 2.4 GB: vLLM 0.10.1.1 on a CPU torch)"]


def test_v1_at_010_refuses_a_hash_algorithm_0_10_lacks():
    import pytest

    from engine.backends.vllm_v1_010.client import check_hash_algo
    from engine.errors import UserError
    from engine.settings import EngineSettings

    check_hash_algo(EngineSettings())  # sha256, the default: bridged
    with pytest.raises(UserError, match="xxhash does not exist in vLLM 0.10.1.1"):
        check_hash_algo(EngineSettings(hash_algo="xxhash"))


def test_differences_between_two_v1_releases_name_their_queue_rules():
    from engine.differences import request_differences

    a = [_row("a", 20, 0), _row("b", 20, 0, evicted=1), _row("c", 20, 0, evicted=1)]
    b = [_row("a", 20, 0), _row("b", 20, 0), _row("c", 20, 16)]
    diffs = request_differences(a, b, ("v1@0.10", "v1"), 4)
    assert [d.index for d in diffs] == [1, 2]
    assert "the eviction orders differ" in diffs[0].reason
    assert "null block" not in diffs[0].reason  # both keep one
    assert "block_pool.py:250-255" in diffs[0].reason
    assert "v1@0.10 had evicted 1, v1 0 cached blocks before it" in diffs[1].reason
