"""Capacity sweeps: one replay on vLLM's real manager per point (pool size, block size),
each in its own process, and the ceilings beside them.

- points.py    the sweep's axes, a point's spec and its figures (engine.metrics)
- keys.py      prefix-tui's own block-chain keys, for the bounds only
- bounds.py    ceilings computed by prefix-tui (reuse bound, farthest-next-use bound)
- run_point.py run one point in this process (vLLM through the backend registry)
- executors.py local worker processes or Ray tasks, one process per point
"""
