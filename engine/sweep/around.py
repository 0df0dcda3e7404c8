"""The inspector's ``c`` key: a capacity sweep of the trace shown, with the inspector's own
settings, at pool sizes around the one shown (a quarter of it to four times it, and a pool
that never evicts), so "what would more or less KV cache do here?" is one key away."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.sweep.plan import SweepPlan, plan_sweep

if TYPE_CHECKING:
    from engine.backends import BackendEntry, BuildOptions
    from engine.trace.reader import TraceSource

FACTORS = (0.25, 0.5, 1, 2, 4)


def pools_around(num_blocks: int) -> list[int | None]:
    """Pool sizes (blocks, vLLM's null block included, as --num-gpu-blocks-override) from a
    quarter of ``num_blocks`` to four times it, then None (inf)."""
    return [*sorted({max(2, round(num_blocks * f)) for f in FACTORS}), None]


def plan_around(entry: BackendEntry, options: BuildOptions, source: TraceSource) -> SweepPlan:
    """The sweep ``prefix-tui sweep`` would run for these settings with
    ``--num-gpu-blocks-override`` set to pools_around() of the pool shown."""
    if entry.engine != "v1":
        raise UserError(f"a capacity sweep runs vLLM V1 (this is --engine {entry.engine})")
    layout = options.settings.layout
    if layout.from_model or len(layout.groups) > 1:
        raise UserError("a capacity sweep of a hybrid KV layout (--hf-config) is not "
                        "supported yet")
    # Each point is a plain replay: no event export, no starting replica of the inspector.
    plain = dataclasses.replace(options, events=None, replica=None, verbose=False)
    return plan_sweep(engine=entry.engine, mode=entry.mode, options=plain, source=source,
                      block_sizes=[options.settings.block_size],
                      pools=pools_around(options.settings.num_blocks),
                      instances=[options.instances] if options.instances is not None
                      else None)
