# Every target creates .venv on first use; later runs reuse it.
# vLLM 0.33.0 needs Python >= 3.11: take the first such interpreter on PATH (or PY=...).
PY ?= $(firstword $(foreach p,python3.13 python3.12 python3.11 python3,$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $(p))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "prefix-tui needs Python >= 3.11 (vLLM 0.33.0 requires it): install python3.11 or newer, or run make PY=/path/to/python3.11"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prefix-tui traces/multi_turn.jsonl --num-gpu-blocks-override 256

lint: $(STAMP)
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV)
