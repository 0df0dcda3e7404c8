# Every target creates .venv on first use; later runs reuse it.
# vLLM 0.33.0 needs Python >= 3.11: take the first such interpreter on PATH (or PY=...).
# PY is expanded only when .venv has to be made, so other runs never pay for these probes.
PY ?= $(firstword $(foreach p,python3.13 python3.12 python3.11 python3,$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo $(p))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The venv's own interpreter once it exists, else PY: either must be >= 3.11.
VENV_PY = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY))
PY_OK = $(if $(VENV_PY),$(shell $(VENV_PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo yes))
NEED_PY := prefix-tui needs Python >= 3.11 (vLLM 0.33.0 requires it): install python3.11 or set PY=/path/to/python3.11
OLD_VENV := $(VENV) was made with Python < 3.11 (vLLM 0.33.0 requires >= 3.11): run make clean and retry

.PHONY: demo test lint bench clean legacy test-legacy

$(STAMP): pyproject.toml
	$(if $(PY_OK),,$(error $(if $(wildcard $(BIN)/python),$(OLD_VENV),$(NEED_PY))))
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prefix-tui traces/multi_turn.jsonl --num-gpu-blocks-override 256

# The layer rules in pyproject.toml ([tool.importlinter]); `make test` runs them first.
lint: $(STAMP)
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run

# .venv-legacy: vLLM 0.10.1.1 (the V0 block manager, --engine v0) beside .venv, which it
# never touches. torch first (LEGACY_TORCH: the CPU build pip finds for Python 3.11 here;
# vLLM pins 2.7.1, whose CUDA build the block manager does not need), then vLLM and what its
# block manager imports, pinned, without their dependencies (requirements-legacy.txt).
LEGACY := .venv-legacy
LEGACY_STAMP := $(LEGACY)/.installed
LEGACY_TORCH ?= torch==2.13.0

legacy: $(LEGACY_STAMP)

$(LEGACY_STAMP): requirements-legacy.txt
	$(if $(PY),,$(error $(NEED_PY)))
	test -x $(LEGACY)/bin/python || $(PY) -m venv $(LEGACY)
	$(LEGACY)/bin/pip install -q --upgrade pip
	$(LEGACY)/bin/pip install -q '$(LEGACY_TORCH)'
	$(LEGACY)/bin/pip install -q --no-deps -r requirements-legacy.txt
	touch $(LEGACY_STAMP)

# The V0 tests (tests/legacy): the main venv's pytest drives .venv-legacy's worker.
test-legacy: $(STAMP) $(LEGACY_STAMP)
	PREFIX_TUI_LEGACY_TESTS=1 $(BIN)/python -m pytest -q tests/legacy

clean:
	rm -rf $(VENV) $(LEGACY)
