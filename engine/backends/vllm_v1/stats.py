"""vLLM's PrefixCacheStats summed over a run (tokens), plus vLLM's own CachingMetrics window
over the last 1,000 requests, as its logger reports it. Both backends use it."""

from __future__ import annotations

from typing import Any

from engine.backends.vllm_v1.imports import V

RECENT_REQUESTS = 1000  # vLLM's logger window


class CacheTally:
    def __init__(self) -> None:
        self.recent = V.CachingMetrics(max_recent_requests=RECENT_REQUESTS)
        self.requests = self.queries = self.hits = 0
        self.preempted_requests = self.preempted_queries = self.preempted_hits = 0
        # The KV connector's PrefixCacheStats (serve mode with a CPU offloading tier).
        self.external_queries = self.external_hits = self.host_hits = 0

    def observe(self, stats: Any) -> None:
        self.recent.observe(stats)
        self.requests += stats.requests
        self.queries += stats.queries
        self.hits += stats.hits
        self.preempted_requests += stats.preempted_requests
        self.preempted_queries += stats.preempted_queries
        self.preempted_hits += stats.preempted_hits

    def observe_connector(self, stats: Any) -> None:
        """vLLM's connector_prefix_cache_stats: tokens queried past the GPU hit, hits, and
        hits_by_source (the CPU tier is vLLM's CacheHitSource "host")."""
        if stats is None:
            return
        self.external_queries += stats.queries
        self.external_hits += stats.hits
        for source, n in stats.hits_by_source.items():
            if getattr(source, "value", source) == "host":
                self.host_hits += n

    def totals_fields(self) -> dict[str, int]:
        """The vLLM-sourced fields of engine.model.Totals."""
        return dict(
            queries=self.queries,
            hits=self.hits,
            recent_queries=self.recent.aggregated_query_total,
            recent_hits=self.recent.aggregated_query_hit,
            preempted_queries=self.preempted_queries,
            preempted_hits=self.preempted_hits,
            external_queries=self.external_queries,
            external_hits=self.external_hits,
            host_hits=self.host_hits,
        )
