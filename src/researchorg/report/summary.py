"""Summary figures of a program's experiments: counts, baseline, best, improvement.

A result is the mean over the successful runs of the same code (its git
tree) that measure it as the decisions do (stats.score.code_sample):
its unselected runs (noise floor, incumbent re-runs, verifications,
ablations) when it has any, else all of them. So "best" is the kept code with
the best such mean, not the luckiest single run.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from researchorg.ledger import Experiment
from researchorg.ledger.records import FINISHED_OK
from researchorg.stats.score import better, code_sample
from researchorg.task.spec import MetricSpec


@dataclass
class Summary:
    total: int
    by_status: dict[str, int]
    baseline: Experiment | None  # the first kept run: the unchanged code
    best: Experiment | None  # the kept run whose code has the best mean
    runs: dict[str, list[float]] = field(default_factory=dict)  # tree -> the metrics that measure the code

    def value(self, e: Experiment) -> float:
        """The mean metric of `e`'s code over the runs that measure it (just its own metric without a tree)."""
        runs = self.runs.get(e.tree) if e.tree else None
        return statistics.fmean(runs) if runs else e.metric

    def count(self, e: Experiment) -> int:
        return len(self.runs.get(e.tree, [])) if e.tree else 1

    @property
    def improvement(self) -> float | None:
        """How much the best beats the baseline, in the metric's good direction (positive is better)."""
        if self.baseline is None or self.best is None:
            return None
        return abs(self.value(self.best) - self.value(self.baseline))


def summarize(experiments: list[Experiment], metric: MetricSpec) -> Summary:
    found: dict[str, list[tuple[str, float]]] = {}
    for e in experiments:
        if e.tree and e.status in FINISHED_OK and e.metric is not None:
            found.setdefault(e.tree, []).append((e.kind, e.metric))
    runs = {tree: code_sample(pairs) for tree, pairs in found.items()}
    summary = Summary(total=len(experiments), by_status=dict(Counter(e.status for e in experiments)),
                      baseline=None, best=None, runs=runs)
    kept = [e for e in experiments if e.status == "keep" and e.metric is not None]
    for e in kept:
        if summary.best is None or better(metric, summary.value(e), summary.value(summary.best)):
            summary.best = e
    summary.baseline = kept[0] if kept else None
    return summary
