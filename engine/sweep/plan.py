"""A sweep's plan (its points and the ceiling runs) and its outcome (points, ceilings, the
--json document and --csv rows)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace

from engine.backends import BuildOptions
from engine.errors import UserError
from engine.export import SCHEMA_VERSION
from engine.settings import TierSettings
from engine.sweep.points import CSV_KEYS, Ceiling, PointResult, PointSpec, csv_row, point_row
from engine.trace.opener import open_trace
from engine.trace.reader import TraceSource


def count_requests(source: TraceSource) -> int:
    """Requests in the trace (non-blank lines, decompressed, up to --max-requests), for
    progress and the warm-up; read fast, without parsing (a bad line is the replay's to
    report)."""
    n = 0
    with open_trace(source.path) as f:
        for _lineno, raw in f.lines():
            if raw.strip():
                n += 1
                if source.max_requests is not None and n >= source.max_requests:
                    break
    return n


@dataclass(frozen=True)
class SweepPlan:
    specs: tuple[PointSpec, ...]  # the curve's points, then ceiling-only runs
    block_sizes: tuple[int, ...]
    requests: int
    warmup: int
    warmup_fraction: float

    @property
    def points(self) -> tuple[PointSpec, ...]:
        return tuple(s for s in self.specs if not s.ceiling)

    @property
    def tier_axis(self) -> bool:
        """A CPU offloading tier size was given (--kv-offloading-size / --num-cpu-blocks)."""
        return any(s.tier is not None for s in self.points)

    @property
    def replica_axis(self) -> bool:
        """--instances was given: points run N replicas behind a router."""
        return any(s.options.instances is not None for s in self.points)


def plan_sweep(
    *, engine: str, mode: str, options: BuildOptions, source: TraceSource,
    block_sizes: Sequence[int], pools: Sequence[int | None] | None = None,
    capacities: Sequence[int | None] | None = None, warmup_fraction: float = 0.0,
    ceilings: bool = True, tiers: Sequence[TierSettings] | None = None,
    instances: Sequence[int] | None = None,
) -> SweepPlan:
    """Every (instances, block size, CPU tier, pool) combination. ``pools`` are blocks
    (the null block included), ``capacities`` tokens (None: inf); give at most one.
    ``tiers``: serve mode's CPU offloading tier per point (an axis); ``instances``:
    replicas behind ``options.router`` per point (an axis; each replica gets the pool).
    With ``ceilings``, a block size with no plain inf point (one instance, no CPU tier)
    gets an extra never-evicting run for its unbounded ceiling, and finite points with
    one instance compute prefix-tui's farthest-next-use bound (a bound for one cache)."""
    if pools is not None and capacities is not None:
        raise UserError("give --num-gpu-blocks-override or --capacity-tokens, not both")
    if not 0.0 <= warmup_fraction < 1.0:
        raise UserError(f"--warmup-fraction must be in [0, 1) (got {warmup_fraction})")
    if tiers is not None and options.serve is None:
        raise UserError("a CPU-tier axis (--kv-offloading-size / --num-cpu-blocks) needs "
                        "--mode serve")
    requests = count_requests(source)
    warmup = int(warmup_fraction * requests)
    specs: list[PointSpec] = []
    for n_inst in (instances if instances is not None else [options.instances]):
        inst_options = replace(options, instances=n_inst)
        for bs in block_sizes:
            if capacities is not None:
                blocks = [None if c is None else c // bs + 1 for c in capacities]
            else:
                blocks = list(pools) if pools is not None else [options.settings.num_blocks]
            for tier in (tiers if tiers is not None else [None]):
                opts = inst_options if tier is None else replace(
                    inst_options, serve=replace(inst_options.serve, tier=tier))
                for n in dict.fromkeys(blocks):  # two capacities may round to one pool
                    if n is not None and n < 2:
                        raise UserError(f"a pool of {n} blocks at block size {bs}: vLLM "
                                        "needs 2 (its null block and one more)")
                    specs.append(_spec(len(specs), engine, mode, opts, source, bs, n, warmup,
                                       requests, ceilings and (n_inst or 1) == 1, False))
    if ceilings:
        plain = replace(options, instances=None, serve=options.serve and replace(
            options.serve, tier=TierSettings()))
        for bs in block_sizes:
            if not any(s.block_size == bs and s.num_blocks is None and s.plain
                       for s in specs):
                specs.append(_spec(len(specs), engine, mode, plain, source, bs, None,
                                   warmup, requests, True, True))
    return SweepPlan(tuple(specs), tuple(block_sizes), requests, warmup, warmup_fraction)


def _spec(index, engine, mode, options, source, bs, n, warmup, requests, bound, ceiling):
    settings = replace(options.settings, block_size=bs, num_blocks=n if n is not None else 2)
    settings.validate()
    return PointSpec(index=index, engine=engine, mode=mode,
                     options=replace(options, settings=settings), source=source,
                     block_size=bs, num_blocks=n, warmup=warmup, requests=requests,
                     bound=bound, ceiling=ceiling)


@dataclass(frozen=True)
class SweepOutcome:
    plan: SweepPlan
    results: tuple[PointResult, ...]  # in spec order; missing ones were not run

    def result(self, spec: PointSpec) -> PointResult | None:
        for r in self.results:
            if r.index == spec.index:
                return r
        return None

    def point_pairs(self) -> list[tuple[PointSpec, PointResult]]:
        return [(s, r) for s in self.plan.points if (r := self.result(s)) is not None]

    def ceilings(self) -> list[Ceiling]:
        out = []
        for bs in self.plan.block_sizes:
            unbounded = next((r for s in self.plan.specs
                              if s.block_size == bs and s.num_blocks is None and s.plain
                              and (r := self.result(s)) is not None), None)
            reuse = unbounded.bound if unbounded is not None else None
            out.append(Ceiling(bs, unbounded, reuse))
        return out

    def document(self, settings: dict) -> dict:
        """The --json document (README: "Capacity sweeps" names its keys)."""
        pairs = self.point_pairs()
        ceilings = []
        for c in self.ceilings():
            d = c.as_dict()
            # One per GPU pool (a CPU-tier axis repeats pools: the bound is the same).
            bounds = {s.num_blocks: (s, r) for s, r in reversed(pairs)
                      if s.block_size == c.block_size and s.num_blocks is not None and r.bound}
            d["farthest_next_use_prefix_tui"] = [
                {"num_gpu_blocks": s.num_blocks, "capacity_tokens": s.capacity_tokens,
                 "hit_rate": r.bound.hit_rate, "hit_tokens": r.bound.hit_tokens,
                 "query_tokens": r.bound.query_tokens}
                for s, r in sorted(bounds.values(), key=lambda p: p[0].index)
            ]
            ceilings.append(d)
        return {
            "schema_version": SCHEMA_VERSION,
            "settings": settings,
            "points": [point_row(s, r) for s, r in pairs],
            "ceilings": ceilings,
        }

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_KEYS, lineterminator="\n")
        w.writeheader()
        for s, r in self.point_pairs():
            w.writerow(csv_row(s, r))
        return buf.getvalue()
