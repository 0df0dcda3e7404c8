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
