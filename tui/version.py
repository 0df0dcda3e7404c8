"""``prefix-tui --version``: prefix-tui's, vLLM's and Textual's versions.

Read from the installed packages' metadata (importlib.metadata), never by importing them:
importing vLLM takes seconds and loads torch. vLLM 0.10.1.1 for ``--engine v0`` lives in
another venv, so its version is read from that venv's site-packages the same way.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

PACKAGES = (("prefix-tui", "prefix-tui"), ("vLLM", "vllm"), ("Textual", "textual"),
            ("Rich", "rich"))


def installed(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def legacy_vllm() -> str:
    """vLLM's version in the V0 venv (.venv-legacy, or PREFIX_TUI_LEGACY_PYTHON's venv)."""
    from engine.backends.vllm_v0.client import LEGACY_VENV, PYTHON_ENV

    override = os.environ.get(PYTHON_ENV)
    venv = Path(override).absolute().parents[1] if override else LEGACY_VENV
    if not venv.is_dir():
        return f"not built ({venv}; make legacy)"
    site = [str(p) for p in venv.glob("lib/python3*/site-packages")]
    for dist in metadata.distributions(name="vllm", path=site):
        return f"{dist.version} ({venv})"
    return f"not installed in {venv} (make legacy)"


def version_text() -> str:
    width = max(len(label) for label, _ in PACKAGES)
    lines = [f"{label:<{width}}  {installed(dist)}" for label, dist in PACKAGES]
    lines.append(f"{'vLLM V0':<{width}}  {legacy_vllm()}  (--engine v0)")
    return "\n".join(lines)
