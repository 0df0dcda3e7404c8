"""The hit rate over a replay, as plotted by ``--plot``: per request (vLLM's hit tokens /
prompt tokens of each served request, at the step its row completes) and cumulative
(vLLM's PrefixCacheStats hits / queries after each step). Numbers only; drawing is the
UI's (tui/plot.py). Kept as arrays of doubles: a million-request trace is a few MB."""

from __future__ import annotations

from array import array

from engine import metrics
from engine.model import StepRecord


class HitRateSeries:
    def __init__(self) -> None:
        self.request_steps = array("l")  # 1-based step of each served request's row
        self.per_request = array("d")
        self.steps = array("l")  # 1-based steps with at least one query so far
        self.cumulative = array("d")

    def add(self, rec: StepRecord) -> None:
        step = rec.index + 1
        for row in rec.rows:
            if row.outcome.served and row.prompt_tokens:
                self.request_steps.append(step)
                self.per_request.append(row.hit_tokens / row.prompt_tokens)
        if rec.totals.queries:
            self.steps.append(step)
            self.cumulative.append(metrics.hit_rate(rec.totals))

    def __len__(self) -> int:
        return len(self.steps)
