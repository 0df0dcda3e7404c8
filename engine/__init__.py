"""prefix-tui's engine: trace reading, the vLLM adapter, step records and metrics.

Nothing here imports textual or rich (tests/test_layering.py enforces it), and nothing
here imports vLLM at module import time: only engine.vllm_v1 touches vLLM, lazily.
"""
