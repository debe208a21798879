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

One story: where the org merges kept changes into the program branch `main`
(a merge process, or a role that merges), `main` is what the program has
established, and every report leads with it: its value, its improvement over
the baseline. A kept run whose code is not on main is a candidate, named
apart with what the lab decided about it (not yet verified, did not
reproduce, not better than main). Without merging, main never moves and the
best kept code is the result. Every value is read as the decisions read it
(`Reading`): where they match machine load, a code's runs at its lightest
load (stats.score.measuring), so a report never states another baseline than
the gate's.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from researchorg.config import OrgSpec
from researchorg.ledger import Experiment, Ledger
from researchorg.ledger.records import FINISHED_OK
from researchorg.stats.acceptance import make_policy
from researchorg.stats.score import better, code_sample, gain, measuring
from researchorg.task.spec import MetricSpec


@dataclass(frozen=True)
class Reading:
    """How the lab reads a program's runs, so that every report reads them the same way: `merged`, the runs
    whose code each merge put on main (in order); `merging`, whether the org merges at all (else main never
    moves); `load_tolerance`, set where decisions match machine load."""
    merged: tuple[int, ...] = ()
    merging: bool = False
    load_tolerance: float | None = None

    @classmethod
    def of(cls, ledger: Ledger, org: OrgSpec | None) -> Reading:
        merged = tuple(m.experiment_id for m in ledger.merges())
        if org is None:
            return cls(merged, bool(merged))
        matched = make_policy(org.policy).matched
        return cls(merged, org.merging or bool(merged), org.rigor.load_tolerance if matched else None)


@dataclass(frozen=True)
class _Run:
    """What a summary keeps of one run of a code it can name: enough to measure the code as decisions do."""
    id: int
    kind: str
    metric: float
    summary: dict


def _load_keys(summary: dict) -> dict:
    return {k: summary[k] for k in ("other_cpu_s", "slot_seconds") if k in summary}


@dataclass
class Summary:
    total: int
    by_status: dict[str, int]
    baseline: Experiment | None  # the first run of the starting code
    best: Experiment | None  # the kept run whose code has the best mean
    runs: dict[str, list[float]] = field(default_factory=dict)  # tree -> the metrics that measure the code, for
    # the codes a summary can name (the baseline's, each kept one's)
    steps: list[tuple[Experiment, float]] = field(default_factory=list)  # each kept run that set a new best
    # (where the org merges: the baseline, then each merge)
    main: Experiment | None = None  # the run whose code the program branch holds (its last merge); None: baseline
    merging: bool = False  # the org merges: main is the result, and a better kept run is only a candidate
    candidate: Experiment | None = None  # the best kept run, where it is better than the result and not on main
    metric: MetricSpec | None = None

    def value(self, e: Experiment) -> float:
        """The mean metric of `e`'s code over the runs that measure it (just its own metric without a tree)."""
        runs = self.runs.get(e.tree) if e.tree else None
        return statistics.fmean(runs) if runs else e.metric

    def count(self, e: Experiment) -> int:
        return len(self.runs.get(e.tree, [])) if e.tree else 1

    def describe(self, e: Experiment, digits: int = 6) -> str:
        """`e`'s value as every report shows it: `4.355012 (mean of 5 runs, #1)`."""
        n = self.count(e)
        return f"{self.value(e):.{digits}f} ({'mean of ' + str(n) + ' runs, ' if n > 1 else ''}#{e.id})"

    @property
    def result(self) -> Experiment | None:
        """What the program has established: where the org merges, the code on main (the baseline until a
        merge); else the best kept code."""
        if self.merging:
            return self.main or self.baseline
        return self.best

    @property
    def improvement(self) -> float | None:
        """How much the result beats the baseline, in the metric's good direction (positive is better)."""
        if self.baseline is None or self.result is None:
            return None
        if self.metric is None:
            return abs(self.value(self.result) - self.value(self.baseline))
        return gain(self.metric, self.value(self.result), self.value(self.baseline))

    def headline(self, name: str) -> str:
        """The result in one line, as every report leads with it: `main 3.4497 (#17), 4.5% better than the
        baseline 3.6107 (mean of 5 runs, #1)`."""
        if self.baseline is None:
            return f"{name}: no result yet"
        base = f"the baseline {self.describe(self.baseline, 4)}"
        result = self.result
        where = "main" if self.merging else "best"
        if result is None or result.tree == self.baseline.tree or not self.improvement:
            return f"{where}: {base}" + (", nothing merged yet" if self.merging and self.main is None else "")
        pct = 100 * self.improvement / abs(self.value(self.baseline)) if self.value(self.baseline) else 0.0
        return f"{where} {self.describe(result, 4)}: {pct:.1f}% better than {base}"


SUMMARY_DIFF_CHARS = 80  # all summarize reads of a diff (whether a run changed anything): what a scan loads


def summarize(experiments: Iterable[Experiment], metric: MetricSpec, baseline_commit: str | None = None,
              reading: Reading = Reading()) -> Summary:
    """Summarize a program's experiments (in id order). `baseline_commit` is the program's starting code; without
    it the first kept run stands for the baseline. `reading`: how the lab reads them (merges, load)."""
    experiments = list(experiments)
    by_tree: dict[str, list[Experiment]] = {}
    for e in experiments:
        if e.tree:
            by_tree.setdefault(e.tree, []).append(e)
    tally = Tally(metric, lambda tree: by_tree.get(tree, []), baseline_commit, reading)
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
                 baseline_commit: str | None = None, reading: Reading = Reading()):
        self.metric, self.runs_of, self.baseline_commit = metric, runs_of, baseline_commit
        self.reading = reading
        self.total = 0
        self.by_status: Counter[str] = Counter()
        self._pairs: dict[str, dict[int, _Run]] = {}  # named tree -> id -> its runs
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
                pairs[e.id] = _Run(e.id, e.kind, e.metric, _load_keys(e.summary))
                self._measure(e.tree)
        if e.status == "keep":
            self._keeps.append((e.id, e.tree, e.metric if full else None))

    def _name(self, tree: str) -> None:
        """Follow the runs of `tree`, a code a summary can name, from those the ledger already has."""
        if tree not in self._pairs:
            self._pairs[tree] = {r.id: _Run(r.id, r.kind, r.metric, _load_keys(r.summary)) for r in self.runs_of(tree)
                                 if r.status in FINISHED_OK and r.metric is not None and r.fidelity == 1.0}
            self._measure(tree)

    def _measure(self, tree: str) -> None:
        pairs = self._pairs[tree]
        self._runs[tree] = code_sample(measuring([pairs[i] for i in sorted(pairs)], self.reading.load_tolerance))

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
        main: tuple[int, float] | None = None
        candidate: tuple[int, float] | None = None
        if self.reading.merging:  # main is the result: its line is the baseline, then each merge
            valued = dict(keeps)
            merges = [(i, valued[i]) for i in self.reading.merged if i in valued]
            line = ([baseline] if baseline is not None else []) + merges
            main = merges[-1] if merges else None
            result = main or baseline
            if best is not None and (result is None or better(self.metric, best[1], result[1])):
                candidate = best
        return Summary(total=self.total, by_status=dict(self.by_status),
                       baseline=experiment(baseline[0]) if baseline else None,
                       best=experiment(best[0]) if best else None, runs=runs,
                       steps=[(experiment(i), v) for i, v in line] if steps else [],
                       main=experiment(main[0]) if main else None, merging=self.reading.merging,
                       candidate=experiment(candidate[0]) if candidate else None, metric=self.metric)


def merge_outcome(ledger: Ledger, experiment_id: int) -> str | None:
    """What the lab last decided about merging a kept run ("not merged: it did not reproduce with fresh
    seeds"), without its "not merged: " prefix; None where it never decided."""
    for event in reversed(ledger.events()):
        if event.kind == "merge_decided" and event.data.get("experiment") == experiment_id:
            outcome = str(event.data.get("outcome", ""))
            return outcome.removeprefix("not merged: ")
    return None


def program_summary(ledger: Ledger, metric: MetricSpec, org: OrgSpec | None,
                    experiments: Iterable[Experiment] | None = None) -> Summary:
    """The summary every report of a program shows: its experiments read as the lab reads them."""
    return summarize(ledger.experiments() if experiments is None else experiments, metric,
                     ledger.program().baseline_commit, Reading.of(ledger, org))
