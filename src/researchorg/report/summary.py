"""Summary figures of a program's experiments: counts, baseline, best, improvement."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from researchorg.ledger import Experiment
from researchorg.task.spec import MetricSpec


@dataclass
class Summary:
    total: int
    by_status: dict[str, int]
    baseline: Experiment | None  # the first kept run: the unchanged code
    best: Experiment | None  # the best kept run

    @property
    def improvement(self) -> float | None:
        """How much the best beats the baseline, in the metric's good direction (positive is better)."""
        if self.baseline is None or self.best is None:
            return None
        return abs(self.best.metric - self.baseline.metric)


def summarize(experiments: list[Experiment], metric: MetricSpec) -> Summary:
    kept = [e for e in experiments if e.status == "keep" and e.metric is not None]
    best = None
    for e in kept:
        if best is None or metric.better(e.metric, best.metric):
            best = e
    return Summary(total=len(experiments), by_status=dict(Counter(e.status for e in experiments)),
                   baseline=kept[0] if kept else None, best=best)
