"""engine/ must stay importable without the UI, and cheap to import: a subprocess imports
every engine module and looks at sys.modules. The static rules (who may import whom) are
import-linter contracts in pyproject.toml; these check what only running code shows."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = ROOT / "engine" / "backends" / "vllm_v1"
# The V0 worker side (runs under vLLM 0.10.1.1); its client is held to no vLLM below.
V0_WORKER = {ROOT / "engine" / "backends" / "vllm_v0" / f"{m}.py"
             for m in ("worker", "sequential", "internals")}
# --engine v1@0.10's worker side, also under vLLM 0.10.1.1; its client holds to no vLLM.
V0_WORKER |= {ROOT / "engine" / "backends" / "vllm_v1_010" / f"{m}.py"
              for m in ("worker", "manager", "imports")}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


ENGINE_MODULES = sorted(_module(p) for p in (ROOT / "engine").rglob("*.py"))


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
    assert len(ENGINE_MODULES) >= 25 and "engine.backends.vllm_v1.scheduler" in ENGINE_MODULES
    ui = sorted(m for m in loaded if m.split(".")[0] in ("textual", "rich"))
    assert ui == []


def test_engine_imports_no_vllm_or_torch_until_asked():
    # vLLM takes seconds to import; the TUI's first frame must not wait for it. Every
    # engine module, the adapter's included, imports vLLM only when a backend is built.
    loaded = _modules_after_import(ENGINE_MODULES)
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("vllm", "torch", "transformers"))
    assert heavy == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_adapter_package_imports_vllm():
    # Lazy imports inside functions count too (import-linter sees them as well).
    offenders = [
        str(p.relative_to(ROOT))
        for root in (ROOT / "engine", ROOT / "tui")
        for p in root.rglob("*.py")
        if ADAPTER not in p.parents and p not in V0_WORKER and _imports(p) & {"vllm", "torch"}
    ]
    assert offenders == []


def test_records_and_settings_are_stdlib_python_3_10():
    """A V0 worker under an older vLLM (and Python) imports these to build records."""
    allowed = set(sys.stdlib_module_names) | {"engine"}
    for name in ("model.py", "columns.py", "settings.py", "errors.py", "block_reasons.py"):
        path = ROOT / "engine" / name
        ast.parse(path.read_text(), feature_version=(3, 10))  # raises on newer syntax
        assert _imports(path) <= allowed, name


def test_no_source_file_is_over_about_500_lines():
    # Files stay small and named for what they hold; a file growing past this is split.
    root = Path(__file__).resolve().parents[1]
    sizes = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("engine", "tui", "bench", "tests") for path in (root / folder).rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 520} == {}
