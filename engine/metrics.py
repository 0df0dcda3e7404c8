"""Every figure prefix-tui shows, defined and computed once, as numbers. The report, the
JSON export, compare and the TUI format these; none computes a figure of its own.

- sharing fraction  = blocks reused / total blocks, where total blocks is the sum over
  served requests of ceil(prompt_tokens / block_size) and reused blocks are vLLM's
  prefix-cache hit blocks (full blocks only).
- average per-request sharing fraction = mean over served requests of hit / prompt blocks.
- hit rate = vLLM's hits / queries in tokens (PrefixCacheStats), cumulative, and over the
  last 1,000 requests exactly as vLLM's CachingMetrics window computes it.

The raw hit/query counts in Totals are vLLM's own PrefixCacheStats, summed by the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.layout_metrics import by_group_list, group_sums
from engine.model import Outcome, RequestResult, ServeSummary, Totals
from engine.tier_records import TierSummary


def ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def served(t: Totals) -> int:
    return t.requests - t.not_fitted - t.errors


def outcomes(t: Totals) -> dict[str, int]:
    """Requests by outcome (engine.model.Outcome's values); they add up to t.requests."""
    return {
        Outcome.OK.value: served(t) - t.truncated,
        Outcome.TRUNCATED.value: t.truncated,
        Outcome.NOT_FITTED.value: t.not_fitted - t.too_long,
        Outcome.TOO_LONG.value: t.too_long,
        Outcome.ERROR.value: t.errors,
    }


def sharing_fraction(t: Totals) -> float:
    return ratio(t.blocks_reused, t.blocks)


def avg_sharing_fraction(t: Totals) -> float:
    return ratio(t.sum_request_sharing, served(t))


def hit_rate(t: Totals) -> float:
    return ratio(t.hits, t.queries)


def recent_hit_rate(t: Totals) -> float:
    return ratio(t.recent_hits, t.recent_queries)


def preempted_hit_rate(t: Totals) -> float:
    return ratio(t.preempted_hits, t.preempted_queries)


def mean_queue_wait(s: ServeSummary) -> float:
    return ratio(s.queue_wait_sum_s, s.timed)


def mean_ttft(s: ServeSummary) -> float:
    return ratio(s.ttft_sum_s, s.timed)


def peak_kv_usage(s: ServeSummary) -> float:
    return ratio(s.peak_kv_blocks, s.usable_blocks)


def token_hit_counts(t: Totals, r: RequestResult, caching: bool) -> dict[str, int]:
    """Cumulative hit / queried tokens where vLLM keeps no PrefixCacheStats (V0): hit
    tokens are V0's own num_cached_tokens of each served request, queried tokens its
    prompt tokens (V1's PrefixCacheStats counts the same way: one query per admission)."""
    if not caching or not r.outcome.served:
        return {"hits": t.hits, "queries": t.queries}
    return {"hits": t.hits + r.hit_tokens, "queries": t.queries + r.prompt_tokens}


def add_request(t: Totals, r: RequestResult, **vllm_counts) -> Totals:
    """Totals after one more request; ``vllm_counts`` are the adapter's cumulative counters."""
    fitted = r.outcome.served
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
        too_long=t.too_long + (r.outcome is Outcome.TOO_LONG),
        truncated=t.truncated + (r.outcome is Outcome.TRUNCATED),
        preemptions=t.preemptions,
        **group_sums(t, r, fitted),
        **vllm_counts,
    )



# -- figures, for every view --------------------------------------------------------------------
class Unit(Enum):
    COUNT = "count"
    RATIO = "ratio"  # shown as a percentage
    SECONDS = "seconds"
    TEXT = "text"  # a setting, not a figure (never divided)


@dataclass(frozen=True, slots=True)
class Figure:
    section: str
    key: str  # stable name (JSON, compare)
    label: str
    value: float | int | str
    unit: Unit
    second: int | None = None  # COUNT: shown as "value / second" (hits / queries)
    share: float | None = None  # COUNT: a ratio shown beside it, e.g. of the pool


SEC_REQUESTS = "Request statistics"
SEC_REUSE = "Block reuse statistics"
SEC_HITS = "Cache hit rate (vLLM PrefixCacheStats)"
SEC_HITS_V0 = "Cache hit rate (vLLM V0: num_cached_tokens)"
SEC_SERVE = "Serve mode (vLLM Scheduler)"
SEC_TIER = "CPU offloading tier (vLLM OffloadingConnector)"


def figures(t: Totals, serve: ServeSummary | None = None) -> list[Figure]:
    """The report's figures, in order; compare lines them up by ``key``."""
    C, R = Unit.COUNT, Unit.RATIO
    hits = SEC_HITS if t.v0_hit_rate is None else SEC_HITS_V0
    out = [
        Figure(SEC_REQUESTS, "requests", "Requests replayed", t.requests, C),
        Figure(SEC_REQUESTS, "served", "Requests served (got blocks)", served(t), C),
        Figure(SEC_REQUESTS, "truncated", "  of which output truncated", t.truncated, C),
        Figure(SEC_REQUESTS, "pool_not_fitted", "Requests not fitted (pool too small)",
               t.not_fitted - t.too_long, C),
        Figure(SEC_REQUESTS, "too_long", "Requests too long (max_model_len)", t.too_long, C),
        Figure(SEC_REQUESTS, "errors", "Requests vLLM raised on", t.errors, C),
        Figure(SEC_REQUESTS, "tokens", "Prompt tokens, served requests", t.tokens, C),
        Figure(SEC_REQUESTS, "blocks", "Prompt blocks, served requests", t.blocks, C),
        Figure(SEC_REUSE, "blocks_reused", "Blocks reused (prefix-cache hits)", t.blocks_reused, C),
        Figure(SEC_REUSE, "blocks_new", "Blocks newly allocated", t.blocks_new, C),
        Figure(SEC_REUSE, "sharing_fraction", "Overall sharing fraction", sharing_fraction(t), R),
        Figure(SEC_REUSE, "avg_sharing_fraction", "Average per-request sharing fraction",
               avg_sharing_fraction(t), R),
        Figure(SEC_REUSE, "evictions", "Evictions (cached blocks)", t.evictions, C),
        Figure(hits, "hit_rate", "Hit rate, cumulative", hit_rate(t), R),
    ]
    if t.v0_hit_rate is None:  # V0 has no CachingMetrics window
        out.append(Figure(hits, "recent_hit_rate", "Hit rate, last 1,000 requests",
                          recent_hit_rate(t), R))
    else:
        out.append(Figure(hits, "v0_hit_rate", "V0 hit rate (get_prefix_cache_hit_rate, "
                          "blocks)", t.v0_hit_rate, R))
    out.append(Figure(hits, "hit_tokens", "Hit tokens / queried tokens", t.hits, C,
                      second=t.queries))
    if t.preemptions or t.preempted_queries:
        out.append(Figure(hits, "preempted_hit_tokens", "Preempted: hit / queried tokens",
                          t.preempted_hits, C, second=t.preempted_queries))
    if serve is not None:
        i = serve.info
        chunked = "on" if i.enable_chunked_prefill else "off"
        out += [
            Figure(SEC_SERVE, "scheduler", "Scheduler",
                   f"{i.scheduler} (chunked prefill {chunked})", Unit.TEXT),
            Figure(SEC_SERVE, "batch_limits", "max_num_seqs / max_num_batched_tokens",
                   f"{i.max_num_seqs:,} / {i.max_num_batched_tokens:,}", Unit.TEXT),
            Figure(SEC_SERVE, "finished", "Requests finished / rejected", serve.finished, C,
                   second=serve.rejected),
            Figure(SEC_SERVE, "iterations", "Scheduler iterations (simulated)",
                   serve.iterations, C),
            Figure(SEC_SERVE, "simulated_time_s", "Simulated time", serve.simulated_time_s,
                   Unit.SECONDS),
            Figure(SEC_SERVE, "iteration_time_s", "Simulated time per iteration",
                   i.iteration_time_s, Unit.SECONDS),
            Figure(SEC_SERVE, "preemptions", "Preemptions", t.preemptions, C),
            Figure(SEC_SERVE, "peak_kv_blocks", "Peak KV usage (blocks)", serve.peak_kv_blocks,
                   C, share=peak_kv_usage(serve)),
            Figure(SEC_SERVE, "output_tokens", "Output tokens", serve.output_tokens, C),
            Figure(SEC_SERVE, "arrivals", "Arrivals",
                   f"closed loop: {serve.delayed_turns:,} turns sent after the reply"
                   if serve.closed_loop else "open loop: at trace times", Unit.TEXT),
            Figure(SEC_SERVE, "mean_queue_wait_s", "Mean queue wait (simulated)",
                   mean_queue_wait(serve), Unit.SECONDS),
            Figure(SEC_SERVE, "mean_ttft_s", "Mean time to first token (simulated)",
                   mean_ttft(serve), Unit.SECONDS),
        ]
        if serve.tier is not None:
            out += tier_figures(t, serve.tier)
    return out


def cpu_hit_rate(t: Totals) -> float:
    """vLLM's external prefix-cache hit rate: tokens loaded from the CPU tier over tokens
    queried past the GPU hit (external_prefix_cache_hits / _queries)."""
    return ratio(t.external_hits, t.external_queries)


def cached_rate(t: Totals) -> float:
    """Prompt tokens cached in either tier (GPU hits + CPU-tier hits) over tokens queried."""
    return ratio(t.hits + t.host_hits, t.queries)


def tier_figures(t: Totals, tier: TierSummary) -> list[Figure]:
    C, R = Unit.COUNT, Unit.RATIO
    return [
        Figure(SEC_TIER, "cpu_blocks", "CPU blocks (vLLM's chunks) / GiB",
               f"{tier.num_blocks:,} / {tier.size_gib:.6g} GiB "
               f"({tier.bytes_per_block:,} B a block)", Unit.TEXT),
        Figure(SEC_TIER, "cpu_policy", "Eviction policy / stand-in latency",
               f"{tier.eviction_policy} / {tier.latency} iterations", Unit.TEXT),
        Figure(SEC_TIER, "gpu_hit_tokens", "GPU hit tokens / queried", t.hits, C,
               second=t.queries),
        Figure(SEC_TIER, "cpu_hit_tokens", "CPU-tier hit tokens / queried past the GPU hit",
               t.host_hits, C, second=t.external_queries),
        Figure(SEC_TIER, "cpu_hit_rate", "CPU-tier hit rate (vLLM external prefix cache)",
               cpu_hit_rate(t), R),
        Figure(SEC_TIER, "cached_rate", "Prompt tokens cached, GPU + CPU", cached_rate(t), R),
        Figure(SEC_TIER, "cpu_jobs", "Jobs started: loads / stores", tier.load_jobs, C,
               second=tier.store_jobs),
        Figure(SEC_TIER, "cpu_jobs_finished", "Jobs reported finished (once each) / started",
               tier.jobs_finished, C, second=tier.jobs_started),
        Figure(SEC_TIER, "cpu_blocks_moved", "Blocks loaded / stored", tier.blocks_loaded, C,
               second=tier.blocks_stored),
        Figure(SEC_TIER, "cpu_bytes_moved", "Bytes loaded / stored (vLLM's counters)",
               tier.bytes_loaded, C, second=tier.bytes_stored),
        Figure(SEC_TIER, "cpu_evictions", "CPU-tier evictions (BlockRemoved, medium CPU)",
               tier.cpu_removed_hashes, C),
        Figure(SEC_TIER, "cpu_peak_stored", "Peak CPU blocks holding KV", tier.peak_stored, C,
               share=ratio(tier.peak_stored, tier.num_blocks)),
    ]


def tier_dict(t: Totals, tier: TierSummary) -> dict:
    """``status.serve.tier`` of the --json export."""
    return {
        **{k: getattr(tier, k) for k in tier.__dataclass_fields__},
        "cpu_hit_rate": cpu_hit_rate(t),
        "cached_rate": cached_rate(t),
    }


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
        "served": served(t),
        "outcomes": outcomes(t),
        "preemptions": t.preemptions,
        "preempted_hit_tokens": t.preempted_hits,
        "preempted_query_tokens": t.preempted_queries,
        # The GPU prefix cache's hits (vLLM's PrefixCacheStats, as hit_tokens) and the CPU
        # offloading tier's (its connector stats' hits_by_source "host"; 0 without a tier).
        "gpu_hit_tokens": t.hits,
        "cpu_hit_tokens": t.host_hits,
        "external_query_tokens": t.external_queries,
        "external_hit_tokens": t.external_hits,
        **({"v0_hit_rate": t.v0_hit_rate} if t.v0_hit_rate is not None else {}),
        **({"by_group": by_group_list(t)} if t.group_hit_blocks else {}),
    }


def serve_dict(s: ServeSummary, t: Totals) -> dict:
    """The ``status.serve`` object of the --json export (keys as before the reshape)."""
    i = s.info
    return {
        "mode": "serve",
        "scheduler": i.scheduler,
        "async_scheduling": i.async_scheduling,
        "max_num_seqs": i.max_num_seqs,
        "max_num_batched_tokens": i.max_num_batched_tokens,
        "enable_chunked_prefill": i.enable_chunked_prefill,
        "max_model_len": i.max_model_len,
        "model_runner": i.model_runner,
        "iteration_time_s": i.iteration_time_s,
        "requests": s.submitted + s.rejected,
        "submitted": s.submitted,
        "finished": s.finished,
        "rejected": s.rejected,
        "iterations": s.iterations,
        "model_iterations": s.model_iterations,
        "simulated_time_s": s.simulated_time_s,
        "hit_rate": hit_rate(t),
        "hit_tokens": t.hits,
        "query_tokens": t.queries,
        "preemptions": t.preemptions,
        "resumed_lookups": s.resumed_lookups,
        "preempted_hit_tokens": t.preempted_hits,
        "preempted_query_tokens": t.preempted_queries,
        "peak_kv_blocks": s.peak_kv_blocks,
        "peak_kv_usage": peak_kv_usage(s),
        "output_tokens": s.output_tokens,
        "evictions": t.evictions,
        "cached_token_mismatches": s.cached_token_mismatches,
        "closed_loop": s.closed_loop,
        "delayed_turns": s.delayed_turns,
        "mean_queue_wait_s": mean_queue_wait(s),
        "mean_ttft_s": mean_ttft(s),
        **({"tier": tier_dict(t, s.tier)} if s.tier is not None else {}),
    }


# -- breakdowns: per tenant, per adapter, per request type -----------------------------------
@dataclass(slots=True)
class GroupCounts:
    """Sums of per-request rows for one tenant (cache_salt), adapter or request type. Hits
    are vLLM's per-request prefix-cache hits (get_computed_blocks, or the scheduler's
    cached tokens at admission), over served requests."""

    requests: int = 0
    served: int = 0
    prompt_tokens: int = 0
    hit_tokens: int = 0
    prompt_blocks: int = 0
    hit_blocks: int = 0

    @property
    def hit_rate(self) -> float:
        return ratio(self.hit_tokens, self.prompt_tokens)

    @property
    def sharing_fraction(self) -> float:
        return ratio(self.hit_blocks, self.prompt_blocks)

    def plus(self, o: GroupCounts) -> GroupCounts:
        return GroupCounts(self.requests + o.requests, self.served + o.served,
                           self.prompt_tokens + o.prompt_tokens, self.hit_tokens + o.hit_tokens,
                           self.prompt_blocks + o.prompt_blocks, self.hit_blocks + o.hit_blocks)


# (dimension, the section's words, a group's word, the words for no value); a request
# without a value is a group of its own.
DIMENSIONS = (
    ("cache_salt", "tenant (cache_salt)", "salt", "no salt"),
    ("lora_name", "LoRA adapter", "adapter", "no adapter"),
    ("request_type", "request type", "type", "no type"),
)


class Breakdown:
    """Per-request rows summed by tenant, adapter and request type. ``add`` takes a step's
    rows (every request has exactly one row), so the groups add up to the totals."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str | None, GroupCounts]] = {d[0]: {} for d in DIMENSIONS}
        self.last_step = -1  # the record whose rows were added last
        # prefix-tui's chat-template check (engine.trace.chat), not a vLLM figure: later
        # conversation turns checked, and those whose prompt does not extend the previous.
        self.checked_turns = 0
        self.template_breaks = 0

    def add(self, rows: tuple[RequestResult, ...] | list[RequestResult], step: int = -1) -> None:
        for r in rows:
            req = r.request
            fitted = r.outcome.served
            self.checked_turns += req.template_checked
            self.template_breaks += req.template_break is not None
            for dim, *_ in DIMENSIONS:
                key = getattr(req, dim)
                g = self.groups[dim].get(key)
                if g is None:
                    g = self.groups[dim][key] = GroupCounts()
                g.requests += 1
                if fitted:
                    g.served += 1
                    g.prompt_tokens += r.prompt_tokens
                    g.hit_tokens += r.hit_tokens
                    g.prompt_blocks += r.prompt_blocks
                    g.hit_blocks += r.hit_blocks
        self.last_step = step

    def copy(self) -> Breakdown:
        other = Breakdown()
        other.groups = {d: {k: GroupCounts().plus(g) for k, g in gs.items()}
                        for d, gs in self.groups.items()}
        other.last_step = self.last_step
        other.checked_turns, other.template_breaks = self.checked_turns, self.template_breaks
        return other

    def split(self, dim: str) -> list[tuple[str | None, GroupCounts]]:
        """A dimension's groups, most requests first; empty when every request is in one
        group without a value (a trace with no salts has no tenant breakdown)."""
        groups = self.groups[dim]
        if not groups or list(groups) == [None]:
            return []
        return sorted(groups.items(), key=lambda kv: (-kv[1].requests, kv[0] is None, kv[0] or ""))


REPORT_GROUPS = 10  # groups a report lists by name per dimension; the rest are summed


def is_group_key(key: str) -> bool:
    """A breakdown figure's key ("dimension:group"): hits of one tenant, adapter or type."""
    return ":" in key


def _requests(n: int) -> str:
    return f"{n:,} request{'s' * (n != 1)}"


SEC_TEMPLATE = "Chat template (prefix-tui's check, not vLLM's)"


def breakdown_figures(b: Breakdown, limit: int = REPORT_GROUPS) -> list[Figure]:
    """Per tenant / adapter / type: hit tokens / prompt tokens (their ratio beside it).
    Keys are "dimension:group" (see is_group_key). Then, when the trace has later
    conversation turns, how many break the previous turn's prefix."""
    out: list[Figure] = []
    if b.checked_turns:
        out.append(Figure(SEC_TEMPLATE, "template_breaks",
                          "Later turns not extending the previous one / checked",
                          b.template_breaks, Unit.COUNT, second=b.checked_turns,
                          share=ratio(b.template_breaks, b.checked_turns)))
    for dim, section_words, word, none_words in DIMENSIONS:
        groups = b.split(dim)
        if not groups:
            continue
        section = f"By {section_words}: hit / prompt tokens"
        shown, rest = groups[:limit], groups[limit:]
        for key, g in shown:
            name = f"{word} {key!r}" if key is not None else none_words
            out.append(Figure(section, f"{dim}:{key if key is not None else ''}",
                              f"{name}, {_requests(g.requests)}",
                              g.hit_tokens, Unit.COUNT, second=g.prompt_tokens, share=g.hit_rate))
        if rest:
            total = GroupCounts()
            for _, g in rest:
                total = total.plus(g)
            out.append(Figure(section, f"{dim}:*others",
                              f"{len(rest):,} more, {_requests(total.requests)}",
                              total.hit_tokens, Unit.COUNT, second=total.prompt_tokens,
                              share=total.hit_rate))
    return out


def group_dict(dim: str, key: str | None, g: GroupCounts) -> dict:
    return {
        dim: key,
        "requests": g.requests,
        "served": g.served,
        "prompt_tokens": g.prompt_tokens,
        "hit_tokens": g.hit_tokens,
        "prompt_blocks": g.prompt_blocks,
        "hit_blocks": g.hit_blocks,
        "hit_rate": g.hit_rate,
        "sharing_fraction": g.sharing_fraction,
    }


def by_tenant_dict(b: Breakdown) -> dict:
    """The ``by_tenant`` object of the --json export: every salt and every adapter."""
    return {dim: [group_dict(dim, k, g) for k, g in b.split(dim)]
            for dim in ("cache_salt", "lora_name")}


def chat_template_dict(b: Breakdown) -> dict:
    """The ``chat_template`` object of the --json export (prefix-tui's check)."""
    return {"checked_turns": b.checked_turns, "breaks": b.template_breaks}


def by_type_dict(b: Breakdown) -> list[dict]:
    """The ``by_type`` list of the --json export (production traces with request types)."""
    return [group_dict("request_type", k, g) for k, g in b.split("request_type")]


class BreakdownSeries:
    """The Breakdown at any recorded step (the inspector's cursor moves both ways), without
    a copy per step: a checkpoint every ``every`` steps, and the rows after it re-added."""

    def __init__(self, every: int = 256) -> None:
        self.every = every
        self.latest = Breakdown()  # after the last step appended
        self._rows: list[tuple[RequestResult, ...]] = []  # each step's rows (references)
        self._checkpoints: list[Breakdown] = [Breakdown()]  # before steps 0, every, 2*every, ...

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, rows: tuple[RequestResult, ...]) -> None:
        step = len(self._rows)
        if step and step % self.every == 0:
            self._checkpoints.append(self.latest.copy())
        self._rows.append(rows)
        self.latest.add(rows, step)

    @property
    def empty(self) -> bool:
        """No request so far had a salt, an adapter or a type, or was a later turn."""
        return not self.latest.checked_turns and not any(self.latest.split(d[0]) for d in DIMENSIONS)

    def at(self, step: int) -> Breakdown:
        """After step ``step`` (0-based) was replayed."""
        if step == len(self._rows) - 1:
            return self.latest
        base = step // self.every
        b = self._checkpoints[base].copy()
        for i in range(base * self.every, step + 1):
            b.add(self._rows[i], i)
        return b
