"""prefix-tui's engine: settings, step records and metrics (plain data), trace reading, the
replays, and the backend registry with vLLM's adapter beneath it.

Nothing here imports textual or rich, and only engine.backends.vllm_v1 imports vLLM, lazily
(import-linter contracts in pyproject.toml, checked by `make test`).
"""
