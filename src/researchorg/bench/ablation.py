"""Ablation: which of the changes merged into the program branch actually matter.

Each merge into `main` since the baseline is one change (the program branch
before and after it). For every change, the program is rebuilt without what
remains of it (its diff undone hunk by hunk on top of `main`, in a scratch
index: no work tree is touched; a hunk a later change rewrote is not in `main`
any more and stays) and measured with `repeats` fresh seeds beside `main` itself, through
the same scheduler, slots and ledger as any run (kind `ablation`, agent
`ablate`). A change's contribution is how much worse the program is without
it; it matters when that exceeds `sigmas` standard errors (the noise floor's
sigma, or the runs' own when there is none). A change whose every hunk later
changes rewrote is reported as superseded: nothing of it is left to measure.

`prune` proposes a branch `pruned`: `main` without every change that did not
matter, measured the same way, and says whether it is worse than `main`
beyond the noise, so a person can compare and adopt it (`git branch -f main
pruned`); `main` itself never moves.

The measuring is an experiment plan the engine runs (`Runtime.measure_codes`):
the same fresh seeds, budget, scheduler and ledger as every other run, and
Ctrl-C stops it as it stops a run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from researchorg.engine.evidence import Code
from researchorg.engine.runtime import Runtime
from researchorg.ledger import Experiment
from researchorg.stats.acceptance import make_policy, pooled_sigma
from researchorg.stats.score import code_sample, gain
from researchorg.world.git import Git
from researchorg.world.program import PROGRAM_BRANCH, Program

AGENT = "ablate"
PRUNED_BRANCH = "pruned"


@dataclass
class Change:
    merge_id: int
    experiment_id: int
    description: str
    before: str
    after: str
    commit: str | None = None  # main without what remains of this change; None: nothing of it remains
    parts: tuple[int, int] = (0, 0)  # its hunks still in main (undone), of all its hunks
    runs: list[float] = field(default_factory=list)
    contribution: float | None = None  # how much worse the program is without it (positive: it helps)
    se: float | None = None

    @property
    def matters(self) -> bool | None:
        if self.contribution is None or self.se is None:
            return None
        return self.contribution > self.threshold * self.se if self.se > 0 else self.contribution > 0

    threshold: float = 2.0


@dataclass
class AblationReport:
    main: str
    main_runs: list[float]
    sigma: float | None
    changes: list[Change]
    pruned: str | None = None
    pruned_runs: list[float] = field(default_factory=list)
    pruned_z: float | None = None  # the pruned program against main: negative is worse
    pruned_worse: bool | None = None  # worse than main beyond the noise (keep main)
    interrupted: bool = False


class Ablation:
    def __init__(self, program: Program, runtime: Runtime, repeats: int = 3):
        self.program, self.runtime, self.repeats = program, runtime, repeats
        self.ledger, self.metric = program.ledger, program.task.metric
        self.git = Git(program.root)
        self.sigmas = runtime.org.rigor.sigmas
        self.hardware = runtime.scheduler.slots[0].hardware()

    def changes(self) -> list[Change]:
        return [Change(m.id, m.experiment_id, self.ledger.experiment(m.experiment_id).description, m.before, m.after,
                       threshold=self.sigmas) for m in self.ledger.merges()]

    def run(self, prune: bool = False) -> AblationReport:
        main = self.git.head_of(PROGRAM_BRANCH)
        changes = self.changes()
        self.ledger.ensure_agent(AGENT, AGENT, AGENT, "", "", self.ledger.program().baseline_commit)
        for change in changes:
            message = f"ablation: main without merge {change.merge_id} (#{change.experiment_id})"
            change.commit, *parts = self.git.without(main, [(change.before, change.after)], message)
            change.parts = (parts[0], parts[1])
        removable = [c for c in changes if c.commit is not None]
        # main is the reference of every comparison: its error is common to all of them, so it gets
        # sqrt(k) times the runs of each of the k variants (the allocation that minimizes the total variance)
        main_repeats = self.repeats * max(1, math.ceil(math.sqrt(len(removable))))
        measured = self._measure([(main, f"ablation: {PROGRAM_BRANCH} as it is", main_repeats)] + [
            (c.commit, f"ablation: without #{c.experiment_id} {c.description}", self.repeats) for c in removable])
        main_runs = measured[0]
        for change, runs in zip(removable, measured[1:], strict=True):
            change.runs = runs
        sigma = self._sigma([main_runs, *[c.runs for c in changes]])
        for change in changes:
            if change.runs and main_runs:
                change.contribution = gain(self.metric, statistics.fmean(main_runs), statistics.fmean(change.runs))
                change.se = (sigma or 0.0) * math.sqrt(1 / len(main_runs) + 1 / len(change.runs))
        report = AblationReport(main, main_runs, sigma, changes, interrupted=self.runtime.stopped)
        drop = [(c.before, c.after) for c in changes if c.matters is False]
        if prune and drop and not report.interrupted:
            pruned, _, _ = self.git.without(main, drop, f"pruned: main without {len(drop)} changes that did not "
                                                        "matter")
            if pruned is not None:
                self.git("branch", "-f", PRUNED_BRANCH, pruned)
                report.pruned = pruned
                report.pruned_runs = self._measure([(pruned, "ablation: the pruned program", self.repeats)])[0]
                self._judge_pruned(report)
                report.interrupted = self.runtime.stopped
        self.ledger.log_event("ablation", main=main, sigma=sigma, pruned=report.pruned, changes=[
            {"merge": c.merge_id, "experiment": c.experiment_id, "contribution": c.contribution, "se": c.se,
             "matters": c.matters, "removable": c.commit is not None, "parts": list(c.parts)} for c in changes])
        return report

    def _measure(self, plan: list[tuple[str, str, int]]) -> list[list[float]]:
        """Fresh-seed runs of each (commit, description, repeats), all at once, each beside the unselected runs
        already made of its code on this hardware (not the runs that got it kept: they overstate it)."""
        main = self.git.head_of(PROGRAM_BRANCH)
        codes = [(Code(commit, main, self.git.tree_of(commit), description), n) for commit, description, n in plan]
        earlier = [self.ledger.runs_of(code.tree, self.hardware) for code, _ in codes]
        fresh = self.runtime.measure_codes(AGENT, codes, "ablation", self.hardware)
        return [code_sample((e.kind, e.metric) for e in old + _measured(new)) for old, new in zip(earlier, fresh,
                                                                                                   strict=True)]

    def _sigma(self, groups: list[list[float]]) -> float | None:
        floor = self.ledger.noise_floor(self.hardware)
        return floor.sigma if floor else pooled_sigma([g for g in groups if g])

    def _judge_pruned(self, report: AblationReport) -> None:
        """Whether the pruned program is worse than main beyond the noise: the noise-aware test, pruned as the
        candidate and main as the incumbent."""
        if report.pruned_runs and report.main_runs and report.sigma:
            judged = make_policy("noise-aware", self.sigmas).decide(self.metric, report.pruned_runs,
                                                                   report.main_runs, report.sigma, final=True)
            report.pruned_z = judged.evidence["z"]
            report.pruned_worse = report.pruned_z < -self.sigmas


def _measured(runs: list[Experiment]) -> list[Experiment]:
    return [e for e in runs if e.status == "measured"]


def ablation_plot(report: AblationReport, metric_name: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [c for c in report.changes if c.contribution is not None]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.5 * max(len(measured), 1)))
    labels = [f"#{c.experiment_id} {c.description[:50]}" for c in measured]
    values = [c.contribution for c in measured]
    errors = [2 * (c.se or 0.0) for c in measured]
    colors = ["#2ca02c" if c.matters else "#bbbbbb" for c in measured]
    ax.barh(range(len(measured)), values, xerr=errors, color=colors, edgecolor="black", linewidth=0.5, capsize=3)
    ax.set_yticks(range(len(measured)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"{metric_name} lost without the change (bars: ±2 SE; green: it matters)")
    ax.set_title("leave-one-out ablation of the merged changes")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
