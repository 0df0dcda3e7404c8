"""`prefix-tui --version`: the versions in use, read from package metadata without importing
vLLM (which takes seconds and loads torch)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from tests.conftest import ROOT
from tui.cli import main


def test_version_names_prefix_tui_vllm_and_textual(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("vLLM V0"))
    assert lines["prefix-tui"].strip() == metadata.version("prefix-tui")
    assert lines["vLLM"].strip() == metadata.version("vllm") == "0.33.0"
    assert lines["Textual"].strip() == metadata.version("textual")
    assert "vLLM V0" in out  # built or not, it says which


def test_version_does_not_import_vllm():
    code = ("import sys; from tui.cli import main; main(['--version']); "
            "sys.exit(any(m == 'vllm' or m.startswith(('vllm.', 'torch')) for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "vLLM" in done.stdout
