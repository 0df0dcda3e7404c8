"""Metrics, defined once. Pure functions over engine.records.Totals (no vLLM here: the raw
hit/query counts in Totals are vLLM's own PrefixCacheStats, summed by the adapter).

- sharing fraction  = blocks reused / total blocks, where total blocks is the sum over
  served requests of ceil(prompt_tokens / block_size) and reused blocks are vLLM's
  prefix-cache hit blocks (full blocks only).
- average per-request sharing fraction = mean over served requests of hit / prompt blocks.
- hit rate = vLLM's hits / queries in tokens (PrefixCacheStats), cumulative, and over the
  last 1,000 requests exactly as vLLM's CachingMetrics window computes it.
"""

from __future__ import annotations

from engine.records import RequestResult, Totals, Outcome


def ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def served(t: Totals) -> int:
    return t.requests - t.not_fitted - t.errors


def sharing_fraction(t: Totals) -> float:
    return ratio(t.blocks_reused, t.blocks)


def avg_sharing_fraction(t: Totals) -> float:
    return ratio(t.sum_request_sharing, served(t))


def hit_rate(t: Totals) -> float:
    return ratio(t.hits, t.queries)


def recent_hit_rate(t: Totals) -> float:
    return ratio(t.recent_hits, t.recent_queries)


def add_request(t: Totals, r: RequestResult, **vllm_counts: int) -> Totals:
    """Totals after one more request; ``vllm_counts`` are the adapter's cumulative counters."""
    fitted = r.outcome in (Outcome.OK, Outcome.TRUNCATED)
    return Totals(
        requests=t.requests + 1,
        tokens=t.tokens + (r.prompt_tokens if fitted else 0),
        blocks=t.blocks + (r.prompt_blocks if fitted else 0),
        blocks_reused=t.blocks_reused + (r.hit_blocks if fitted else 0),
        blocks_new=t.blocks_new + (r.new_blocks if fitted else 0),
        sum_request_sharing=t.sum_request_sharing + (r.sharing_fraction if fitted else 0.0),
        evictions=t.evictions + r.evicted_blocks,
        not_fitted=t.not_fitted + (r.outcome in (Outcome.NOT_FITTED, Outcome.TOO_LONG)),
        errors=t.errors + (r.outcome is Outcome.ERROR),
        preemptions=t.preemptions,
        **vllm_counts,
    )


def totals_dict(t: Totals) -> dict:
    """The stable ``totals`` object of the --json export."""
    return {
        "requests": t.requests,
        "tokens": t.tokens,
        "blocks": t.blocks,
        "blocks_reused": t.blocks_reused,
        "blocks_new": t.blocks_new,
        "sharing_fraction": sharing_fraction(t),
        "avg_sharing_fraction": avg_sharing_fraction(t),
        "hit_rate": hit_rate(t),
        "recent_hit_rate": recent_hit_rate(t),
        "hit_tokens": t.hits,
        "query_tokens": t.queries,
        "evictions": t.evictions,
        "not_fitted": t.not_fitted,
        "errors": t.errors,
        "preemptions": t.preemptions,
        "preempted_hit_tokens": t.preempted_hits,
        "preempted_query_tokens": t.preempted_queries,
    }
