"""The V0 tests: vLLM 0.10.1.1 in .venv-legacy, driven through the V0 worker.

They run under `make test-legacy` (PREFIX_TUI_LEGACY_TESTS=1), where a missing
.venv-legacy is an error. In the main suite (`make test`) they are skipped with the reason:
that suite's machine need not have the second vLLM, and CI runs them right after it.
"""

from __future__ import annotations

import os

import pytest

from engine.backends.vllm_v0.client import (
    LEGACY_VENV,
    PYTHON_ENV,
    V0SequentialBackend,
    close_idle_workers,
    legacy_python,
)
from engine.errors import UserError
from engine.settings import EngineSettings, V0Settings

ENABLED = os.environ.get("PREFIX_TUI_LEGACY_TESTS") == "1"


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(reason=f"V0 tests need vLLM 0.10.1.1 in {LEGACY_VENV.name}: "
                            "they run under `make test-legacy` (after `make legacy`)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def v0_backend_factory():
    """Backends by settings; they share idle workers (vLLM's import in a worker is the slow
    part; a worker builds a fresh block manager per replay)."""
    try:
        legacy_python()
    except UserError as err:
        pytest.fail(f"make test-legacy needs {LEGACY_VENV}: {err} (from another work tree: "
                    f"{PYTHON_ENV}=/path/to/.venv-legacy/bin/python)")
    made: dict = {}

    def make(settings: EngineSettings, v0: V0Settings = V0Settings()) -> V0SequentialBackend:
        key = (settings, v0)
        if key not in made:
            made[key] = V0SequentialBackend(settings, v0)
        return made[key]

    yield make
    close_idle_workers()


def replay(backend, requests, detail=True):
    return list(backend.replay(requests, detail=detail))
