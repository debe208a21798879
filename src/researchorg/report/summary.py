"""What a program has found, in one place: counts, the baseline, the best, and the running best.

The end-of-run summary, `researchorg status`, the live view of a run and
progress.png all describe a program through `summarize`, so they report the
same numbers.

A result is the mean over the successful runs of the same code (its git
tree) that measure it as the decisions do (stats.score.code_sample): its
unselected runs (noise floor, incumbent re-runs, verifications, ablations)
when it has any, else all of them. So "best" is the kept code with the best
such mean, not the luckiest single run. The baseline is the program's
starting code (the ledger's baseline commit): the noise floor's runs measure
it, or an agent's unchanged first run where there is no noise floor (without
either, the first kept run).
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
    baseline: Experiment | None  # the first run of the starting code
    best: Experiment | None  # the kept run whose code has the best mean
    runs: dict[str, list[float]] = field(default_factory=dict)  # tree -> the metrics that measure the code
    steps: list[tuple[Experiment, float]] = field(default_factory=list)  # each kept run that set a new best

    def value(self, e: Experiment) -> float:
        """The mean metric of `e`'s code over the runs that measure it (just its own metric without a tree)."""
        runs = self.runs.get(e.tree) if e.tree else None
        return statistics.fmean(runs) if runs else e.metric

    def count(self, e: Experiment) -> int:
        return len(self.runs.get(e.tree, [])) if e.tree else 1

    def describe(self, e: Experiment) -> str:
        """`e`'s value as every report shows it: `4.355012 (mean of 5 runs, #1)`."""
        n = self.count(e)
        return f"{self.value(e):.6f} ({'mean of ' + str(n) + ' runs, ' if n > 1 else ''}#{e.id})"

    @property
    def improvement(self) -> float | None:
        """How much the best beats the baseline, in the metric's good direction (positive is better)."""
        if self.baseline is None or self.best is None:
            return None
        return abs(self.value(self.best) - self.value(self.baseline))


SUMMARY_DIFF_CHARS = 80  # all summarize reads of a diff (whether a run changed anything): what a scan loads


def summarize(experiments: list[Experiment], metric: MetricSpec, baseline_commit: str | None = None) -> Summary:
    """Summarize a program's experiments (in id order). `baseline_commit` is the program's starting code; without
    it the first kept run stands for the baseline."""
    found: dict[str, list[tuple[str, float]]] = {}
    for e in experiments:
        if e.tree and e.status in FINISHED_OK and e.metric is not None:
            found.setdefault(e.tree, []).append((e.kind, e.metric))
    runs = {tree: code_sample(pairs) for tree, pairs in found.items()}
    summary = Summary(total=len(experiments), by_status=dict(Counter(e.status for e in experiments)),
                      baseline=None, best=None, runs=runs)
    scored = [e for e in experiments if e.status in FINISHED_OK and e.metric is not None]
    summary.baseline = _baseline(scored, baseline_commit)
    if summary.baseline is not None:
        summary.steps.append((summary.baseline, summary.value(summary.baseline)))
    for e in scored:
        if e.status != "keep":
            continue
        if summary.best is None or better(metric, summary.value(e), summary.value(summary.best)):
            summary.best = e
            if not summary.steps or better(metric, summary.value(e), summary.steps[-1][1]):
                summary.steps.append((e, summary.value(e)))
    if summary.best is not None and summary.baseline is not None and not better(
            metric, summary.value(summary.best), summary.value(summary.baseline)):
        summary.best, summary.steps = summary.baseline, summary.steps[:1]  # nothing beat the starting code
    return summary


def _baseline(scored: list[Experiment], commit: str | None) -> Experiment | None:
    """The first run of the starting code: a run of that commit (the noise floor), else an unchanged first
    run on top of it (an agent's baseline)."""
    tree = None if commit is None else next((e.tree for e in scored if e.commit == commit and e.tree), None) or next(
        (e.tree for e in scored if e.parent_commit == commit and not e.diff.strip() and e.tree), None)
    if tree is None:
        return next((e for e in scored if e.status == "keep"), None)
    return next(e for e in scored if e.tree == tree)
