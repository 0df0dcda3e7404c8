"""engine/ must stay importable without the UI, and cheap to import: a subprocess imports
every engine module and looks at sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_MODULES = sorted(
    f"engine.{p.stem}" for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__"
)


def _modules_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


def test_engine_never_imports_textual_or_rich():
    loaded = _modules_after_import(ENGINE_MODULES)
    assert len(ENGINE_MODULES) >= 10
    ui = sorted(m for m in loaded if m.split(".")[0] in ("textual", "rich"))
    assert ui == []


def test_engine_imports_no_vllm_or_torch_until_asked():
    # vLLM takes seconds to import; the TUI's first frame must not wait for it.
    loaded = _modules_after_import(ENGINE_MODULES)
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("vllm", "torch", "transformers"))
    assert heavy == []


def test_only_the_adapter_modules_import_vllm():
    offenders = []
    for path in (ROOT / "engine").glob("*.py"):
        if path.stem.startswith("vllm_v1"):
            continue
        text = path.read_text()
        if "import vllm" in text or "from vllm" in text:
            offenders.append(path.name)
    for path in (ROOT / "tui").rglob("*.py"):
        text = path.read_text()
        if "import vllm" in text or "from vllm" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
