"""A sweep's points: what each replays (PointSpec), what it found (PointResult), and its
figures, from engine.metrics over vLLM's own counters (never recomputed here).

Pool sizes count vLLM's null block, as ``--num-gpu-blocks-override`` does; a capacity in
tokens is the usable blocks times the block size, so ``--capacity-tokens T`` is a pool of
``T // block_size + 1`` blocks. ``inf`` is a pool that never evicts: sized from the trace
so vLLM never runs out of never-used blocks (checked: vLLM must report no eviction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from collections.abc import Iterable

from engine import metrics
from engine.backends import BuildOptions
from engine.block_reasons import BlockReasons, MissReason
from engine.errors import UserError
from engine.model import RequestResult, Totals
from engine.settings import TierSettings
from engine.sweep.bounds import BoundCounts
from engine.tier_records import TierSummary
from engine.trace.reader import TraceSource

INF_WORDS = ("inf", "infinity", "unbounded")


def parse_list(flag: str, text: str, *, allow_inf: bool, floats: bool = False
               ) -> list[int | None]:
    """"1000,10000,inf" -> [1000, 10000, None]; None is inf. Floats ("1e6") are read as
    whole numbers where ``floats`` (token counts)."""
    out: list[int | None] = []
    for part in str(text).split(","):
        word = part.strip()
        if not word:
            continue
        if word.lower() in INF_WORDS:
            if not allow_inf:
                raise UserError(f"{flag}: {word!r} is not allowed here")
            out.append(None)
            continue
        try:
            value = float(word) if floats else int(word)
        except ValueError:
            kind = "numbers (1e6 is fine)" if floats else "whole numbers"
            raise UserError(f"{flag}: {word!r} is not a number ({kind} or inf, "
                            "comma-separated)") from None
        if not math.isfinite(value) or value != int(value) or value < 1:
            raise UserError(f"{flag}: {word!r} must be a whole number >= 1 or inf")
        out.append(int(value))
    if not out:
        raise UserError(f"{flag}: no value given")
    if len(set(out)) != len(out):
        raise UserError(f"{flag}: a value given twice ({text})")
    return out


def parse_sizes(flag: str, text: str, *, floats: bool) -> list[float] | list[int]:
    """A CPU-tier axis: "0,1,4,16" (GiB, ``floats``) or block counts; 0 is the tier off."""
    out: list = []
    for part in str(text).split(","):
        word = part.strip()
        if not word:
            continue
        try:
            value = float(word) if floats else int(word)
        except ValueError:
            kind = "numbers" if floats else "whole numbers"
            raise UserError(f"{flag}: {word!r} is not a number ({kind} >= 0, "
                            "comma-separated)") from None
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{flag}: {word!r} must be a number >= 0 (0: no CPU tier)")
        out.append(value)
    if not out:
        raise UserError(f"{flag}: no value given")
    if len(set(out)) != len(out):
        raise UserError(f"{flag}: a value given twice ({text})")
    return out


@dataclass(frozen=True)
class PointSpec:
    """One replay of a sweep. ``num_blocks`` None: a pool that never evicts. ``ceiling``:
    an extra run only for the unbounded ceiling (not a point of the curve)."""

    index: int
    engine: str
    mode: str
    options: BuildOptions  # settings.num_blocks is a placeholder when num_blocks is None
    source: TraceSource
    block_size: int
    num_blocks: int | None
    warmup: int  # requests that fill the cache first, left out of the figures
    requests: int  # requests the trace holds (for progress)
    bound: bool = True  # compute prefix-tui's bound at this point (finite) or the reuse bound
    ceiling: bool = False

    @property
    def capacity_tokens(self) -> int | None:
        return None if self.num_blocks is None else (self.num_blocks - 1) * self.block_size

    @property
    def tier(self) -> TierSettings | None:
        """The CPU offloading tier asked for at this point (None: none asked for; a size
        of 0 is a point of a CPU-tier axis with the tier off)."""
        serve = self.options.serve
        if serve is None:
            return None
        t = serve.tier
        return t if t.kv_offloading_size is not None or t.num_cpu_blocks is not None else None

    @property
    def instances(self) -> int:
        return self.options.instances or 1

    @property
    def plain(self) -> bool:
        """One instance and no CPU tier: the runs the ceilings are taken from."""
        return self.instances == 1 and (self.tier is None or not self.tier.enabled)

    @property
    def series(self) -> str:
        """The curve this point belongs to: its block size and the other axes' values."""
        out = f"block {self.block_size}"
        t = self.tier
        if t is not None:
            out += (f", CPU {t.kv_offloading_size:g} GiB" if t.kv_offloading_size is not None
                    else f", CPU {t.num_cpu_blocks:,} blocks")
        if self.options.instances is not None:
            out += f", {self.options.instances}× {self.options.router}"
        return out

    @property
    def label(self) -> str:
        pool = "inf" if self.num_blocks is None else f"{self.num_blocks:,}"
        return f"{self.series}, pool {pool}"


@dataclass(frozen=True)
class PointResult:
    """What one point found. Totals are vLLM's counts at the end and at the end of the
    warm-up; ``figures`` subtracts them (engine.metrics does every ratio)."""

    index: int
    num_blocks_run: int  # the pool vLLM was built with (the inf point: sized from the trace)
    end: Totals
    warm: Totals
    status: str = "complete"  # complete | vllm_error | bad_input | failed
    message: str = ""
    seconds: float = 0.0
    bound: BoundCounts | None = None  # farthest-next-use (finite) / reuse bound (inf)
    vllm_version: str = ""
    # Missed prompt blocks by reason, summed over the requests the figures count (after the
    # warm-up); None when the replay gives no reasons (prefix caching off).
    reasons: BlockReasons | None = None
    # vLLM's CPU offloading tier as built (serve mode with a tier; its run figures are
    # not windowed: only its size is read here).
    tier: TierSummary | None = None
    # --instances: each replica's totals at the end and at the end of the warm-up.
    replicas_end: tuple[Totals, ...] = ()
    replicas_warm: tuple[Totals, ...] = ()

    @property
    def totals(self) -> Totals:
        """The counted part: the end less the warm-up."""
        return totals_minus(self.end, self.warm)

    @property
    def replica_totals(self) -> tuple[Totals, ...]:
        warm = self.replicas_warm or (Totals(),) * len(self.replicas_end)
        return tuple(totals_minus(e, w) for e, w in zip(self.replicas_end, warm))


_COUNTED = ("requests", "tokens", "blocks", "blocks_reused", "blocks_new",
            "sum_request_sharing", "evictions", "not_fitted", "errors", "too_long",
            "truncated", "queries", "hits", "preempted_queries", "preempted_hits",
            "preemptions", "external_queries", "external_hits", "host_hits")


def totals_minus(a: Totals, b: Totals) -> Totals:
    """The counts between two points of a replay (vLLM's windowed figures are dropped)."""
    return Totals(**{f.name: getattr(a, f.name) - getattr(b, f.name)
                     for f in fields(Totals) if f.name in _COUNTED})


# The reasons every point has; cpu_hit only with vLLM's CPU offloading tier (a tier axis).
MISS_KEYS = tuple(m.value for m in MissReason if m is not MissReason.CPU_HIT)
CSV_MISS_KEYS = tuple(m.value for m in MissReason)  # cpu_hit's column empty without a tier


def add_reasons(total: BlockReasons, results: Iterable[RequestResult]) -> BlockReasons:
    """``total`` plus the miss reasons of the served ``results`` (counts only)."""
    counts = None
    for r in results:
        if r.reasons is None or not r.outcome.served:
            continue
        if counts is None:
            counts = total.counts()
        for k, v in r.reasons.counts().items():
            counts[k] = counts.get(k, 0) + v  # cpu_hit: only with a CPU tier
    return total if counts is None else BlockReasons(**counts)


def point_row(spec: PointSpec, result: PointResult) -> dict:
    """A point as --json and --csv write it (stable keys)."""
    t = result.totals
    bound = result.bound if spec.num_blocks is not None else None
    tier = result.tier
    return {
        "num_gpu_blocks": spec.num_blocks,
        "num_gpu_blocks_run": result.num_blocks_run,
        "capacity_tokens": spec.capacity_tokens,
        "block_size": spec.block_size,
        "instances": spec.instances,
        "router": spec.options.router if spec.options.instances is not None else None,
        # vLLM's CPU offloading tier as it built it (0: none), per replica: each replica
        # has its own tier of the point's size (the run's summary sums them)
        "num_cpu_blocks": tier.num_blocks // spec.instances if tier is not None else 0,
        "kv_offloading_size_gib": tier.size_gib / spec.instances if tier is not None else 0.0,
        "hit_rate": metrics.hit_rate(t),
        "sharing_fraction": metrics.sharing_fraction(t),
        "avg_sharing_fraction": metrics.avg_sharing_fraction(t),
        "evictions": t.evictions,
        "not_fitted": t.not_fitted,
        "requests": t.requests,
        "tokens": t.tokens,
        "hit_tokens": t.hits,
        "query_tokens": t.queries,
        # The GPU prefix cache's hits (as hit_tokens) and the CPU tier's (vLLM's connector
        # stats: tokens queried past the GPU hit, hit there, of those from the CPU tier).
        "gpu_hit_tokens": t.hits,
        "cpu_hit_tokens": t.host_hits,
        "external_query_tokens": t.external_queries,
        "external_hit_tokens": t.external_hits,
        "cpu_hit_rate": metrics.cpu_hit_rate(t),
        "cached_rate": metrics.cached_rate(t),
        "prompt_blocks": t.blocks,
        "hit_blocks": t.blocks_reused,
        # Why the other prompt blocks missed (engine.replay.miss_reasons; they add up to
        # prompt_blocks - hit_blocks); null without reasons.
        "miss_blocks": result.reasons.counts() if result.reasons is not None else None,
        "status": result.status,
        "message": result.message,
        "seconds": round(result.seconds, 3),
        # prefix-tui's, not vLLM's (engine.sweep.bounds)
        "farthest_next_use_bound_prefix_tui": bound.hit_rate if bound else None,
        # --instances: each replica's figures (the point's are over all replicas)
        "replicas": [replica_row(k, rt) for k, rt in enumerate(result.replica_totals)]
        if spec.options.instances is not None else None,
    }


def replica_row(k: int, t: Totals) -> dict:
    return {"replica": k, "requests": t.requests, "tokens": t.tokens,
            "hit_rate": metrics.hit_rate(t), "hit_tokens": t.hits, "query_tokens": t.queries,
            "sharing_fraction": metrics.sharing_fraction(t), "evictions": t.evictions,
            "not_fitted": t.not_fitted}


CSV_KEYS = ("num_gpu_blocks", "num_gpu_blocks_run", "capacity_tokens", "block_size",
            "instances", "router", "num_cpu_blocks", "kv_offloading_size_gib",
            "hit_rate", "sharing_fraction", "avg_sharing_fraction", "evictions",
            "not_fitted", "requests", "tokens", "hit_tokens", "query_tokens",
            "gpu_hit_tokens", "cpu_hit_tokens", "external_query_tokens",
            "external_hit_tokens", "cpu_hit_rate", "cached_rate", "prompt_blocks", "hit_blocks",
            *(f"miss_blocks_{k}" for k in CSV_MISS_KEYS),
            "status", "message", "seconds", "farthest_next_use_bound_prefix_tui")


def csv_row(spec: PointSpec, result: PointResult) -> dict:
    """A point as --csv writes it: point_row with miss_blocks flattened, one column per
    reason (empty without reasons)."""
    row = point_row(spec, result)
    del row["replicas"]  # per replica: --json only
    miss = row.pop("miss_blocks") or {}
    row.update({f"miss_blocks_{k}": miss.get(k, "") for k in CSV_MISS_KEYS})
    return row


@dataclass(frozen=True)
class Ceiling:
    """The ceilings of one block size: vLLM's unbounded pool, prefix-tui's reuse bound."""

    block_size: int
    unbounded: PointResult | None
    reuse: BoundCounts | None

    def as_dict(self) -> dict:
        u = self.unbounded
        return {
            "block_size": self.block_size,
            "unbounded": None if u is None else {
                "source": "vLLM: its real manager with a pool that never evicts",
                "num_gpu_blocks_run": u.num_blocks_run,
                "hit_rate": metrics.hit_rate(u.totals),
                "sharing_fraction": metrics.sharing_fraction(u.totals),
                "evictions": u.totals.evictions,
                "status": u.status,
            },
            "reuse_bound": None if self.reuse is None else {
                "source": "prefix-tui's bound: prompt tokens in full blocks whose whole "
                          "prefix appeared earlier (no capacity limit, no last-token rule)",
                "hit_rate": self.reuse.hit_rate,
                "hit_tokens": self.reuse.hit_tokens,
                "query_tokens": self.reuse.query_tokens,
            },
        }
