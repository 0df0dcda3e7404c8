"""attach --metrics-url: vLLM's own prefix-cache counters from its Prometheus endpoint
(``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits``, tokens, exposed as
``..._total``; summed over engines and models), for the live hit rate beside the events.
The text is untrusted: a line that does not parse is skipped, a missing counter is said."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass

QUERIES = "vllm:prefix_cache_queries_total"
HITS = "vllm:prefix_cache_hits_total"
MAX_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class PrefixCacheCounters:
    queries: float | None  # None: the counter is not in the text
    hits: float | None
    error: str = ""

    @property
    def hit_rate(self) -> float | None:
        if self.queries is None or self.hits is None or self.queries <= 0:
            return None
        return self.hits / self.queries


def parse(text: str) -> PrefixCacheCounters:
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in (QUERIES, HITS):
            continue
        value_text = line.rsplit("}", 1)[-1].split()
        if not value_text:
            continue
        try:
            value = float(value_text[0])
        except ValueError:
            continue
        if math.isfinite(value):
            sums[name] = sums.get(name, 0.0) + value
    missing = [n for n in (QUERIES, HITS) if n not in sums]
    return PrefixCacheCounters(
        sums.get(QUERIES), sums.get(HITS),
        f"no {' or '.join(missing)} in the metrics (is it vLLM's /metrics?)" if missing else "",
    )


def poll(url: str, timeout_s: float = 2.0) -> PrefixCacheCounters:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (user URL)
            body = resp.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return PrefixCacheCounters(None, None, f"{url}: {reason}")
    if len(body) > MAX_BYTES:
        return PrefixCacheCounters(None, None, f"{url}: more than {MAX_BYTES >> 20} MB")
    return parse(body.decode("utf-8", errors="replace"))


def interval_rate(before: PrefixCacheCounters | None, after: PrefixCacheCounters
                  ) -> float | None:
    """Hit rate between two polls (None when either lacks the counters or nothing queried)."""
    if before is None or None in (before.queries, before.hits, after.queries, after.hits):
        return None
    dq = after.queries - before.queries
    return (after.hits - before.hits) / dq if dq > 0 else None
