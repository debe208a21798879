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
either, the first kept run). Only runs on the task's full budget measure a
code: a screening run (on a fraction of it, screen-gate) is counted, and a
code it kept is named by the full runs its gate made, if any.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
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
    runs: dict[str, list[float]] = field(default_factory=dict)  # tree -> the metrics that measure the code, for
    # the codes a summary can name (the baseline's, each kept one's)
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


def summarize(experiments: Iterable[Experiment], metric: MetricSpec, baseline_commit: str | None = None) -> Summary:
    """Summarize a program's experiments (in id order). `baseline_commit` is the program's starting code; without
    it the first kept run stands for the baseline."""
    experiments = list(experiments)
    by_tree: dict[str, list[Experiment]] = {}
    for e in experiments:
        if e.tree:
            by_tree.setdefault(e.tree, []).append(e)
    tally = Tally(metric, lambda tree: by_tree.get(tree, []), baseline_commit)
    for e in experiments:
        tally.add(e)
    named = {e.id: e for e in experiments}
    return tally.summary(named.__getitem__)


class Tally:
    """`summarize` one finished experiment at a time, for a run that goes on for days. It holds nothing per
    experiment: only counts, and the runs of the codes a summary can name (the baseline's and each kept one's),
    which `runs_of(tree)` gives when a code is first named and each later run of it adds to; the experiments a
    summary names are looked up by id when one is made."""

    def __init__(self, metric: MetricSpec, runs_of: Callable[[str], Iterable[Experiment]],
                 baseline_commit: str | None = None):
        self.metric, self.runs_of, self.baseline_commit = metric, runs_of, baseline_commit
        self.total = 0
        self.by_status: Counter[str] = Counter()
        self._pairs: dict[str, dict[int, tuple[str, float]]] = {}  # named tree -> id -> (kind, metric) of its runs
        self._runs: dict[str, list[float]] = {}  # named tree -> code_sample of those (replaced, never changed)
        self._keeps: list[tuple[int, str, float | None]] = []  # (id, tree, metric) of each keep, in order (a
        # screening run's metric is None: it does not measure its code on the full budget)
        self._baseline_tree: str | None = None  # the tree of the first run of the baseline commit
        self._unchanged_tree: str | None = None  # else of the first unchanged run on top of it

    def add(self, e: Experiment) -> None:
        """Count one finished experiment (each once, in id order for the summary of a finished program)."""
        self.total += 1
        self.by_status[e.status] += 1
        if e.status not in FINISHED_OK or e.metric is None:
            return
        full = e.fidelity == 1.0
        if e.tree:
            if self.baseline_commit is not None:
                if self._baseline_tree is None and e.commit == self.baseline_commit:
                    self._baseline_tree = e.tree
                    self._name(e.tree)
                if self._unchanged_tree is None and e.parent_commit == self.baseline_commit and not e.diff.strip():
                    self._unchanged_tree = e.tree
                    self._name(e.tree)
            if e.status == "keep":
                self._name(e.tree)
            pairs = self._pairs.get(e.tree)
            if pairs is not None and e.id not in pairs and full:
                pairs[e.id] = (e.kind, e.metric)
                self._runs[e.tree] = code_sample([pairs[i] for i in sorted(pairs)])
        if e.status == "keep":
            self._keeps.append((e.id, e.tree, e.metric if full else None))

    def _name(self, tree: str) -> None:
        """Follow the runs of `tree`, a code a summary can name, from those the ledger already has."""
        if tree not in self._pairs:
            pairs = self._pairs[tree] = {r.id: (r.kind, r.metric) for r in self.runs_of(tree)
                                         if r.status in FINISHED_OK and r.metric is not None and r.fidelity == 1.0}
            self._runs[tree] = code_sample([pairs[i] for i in sorted(pairs)])

    def summary(self, experiment: Callable[[int], Experiment], steps: bool = True) -> Summary:
        """The summary so far; `experiment(id)` gives the experiments it names (the step line's only with
        `steps`). The baseline is the first run of the starting code: a run of that commit (the noise floor),
        else an unchanged first run on top of it (an agent's baseline), else the first keep."""
        runs = dict(self._runs)

        def value(tree: str, metric: float | None) -> float | None:
            return statistics.fmean(runs[tree]) if tree and runs.get(tree) else metric

        keeps = [(id_, v) for id_, tree, metric in self._keeps if (v := value(tree, metric)) is not None]
        tree = self._baseline_tree or self._unchanged_tree
        if tree is not None and self._pairs[tree]:
            baseline: tuple[int, float] | None = (min(self._pairs[tree]), value(tree, 0.0))
        else:
            baseline = keeps[0] if keeps else None
        best: tuple[int, float] | None = None
        line = [baseline] if baseline is not None else []
        for id_, v in keeps:
            if best is None or better(self.metric, v, best[1]):
                best = id_, v
                if not line or better(self.metric, v, line[-1][1]):
                    line.append((id_, v))
        if best is not None and baseline is not None and not better(self.metric, best[1], baseline[1]):
            best, line = baseline, line[:1]  # nothing beat the starting code
        return Summary(total=self.total, by_status=dict(self.by_status),
                       baseline=experiment(baseline[0]) if baseline else None,
                       best=experiment(best[0]) if best else None, runs=runs,
                       steps=[(experiment(i), v) for i, v in line] if steps else [])
