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
matter, measured the same way, so a person can compare and adopt it
(`git branch -f main pruned`); `main` itself never moves.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from researchorg.lab.git import Git
from researchorg.lab.program import PROGRAM_BRANCH, Program
from researchorg.org.evidence import _Code
from researchorg.org.runtime import Runtime
from researchorg.rigor.acceptance import gain, incumbent_sample, pooled_sigma

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


class Ablation:
    def __init__(self, program: Program, runtime: Runtime, repeats: int = 3):
        self.program, self.runtime, self.repeats = program, runtime, repeats
        self.ledger, self.metric = program.ledger, program.task.metric
        self.git = Git(program.root)

    def changes(self) -> list[Change]:
        found = []
        for merge in self.ledger.merges():
            experiment = self.ledger.experiment(merge["experiment_id"])
            found.append(Change(merge["id"], experiment.id, experiment.description, merge["before"], merge["after"],
                                threshold=self.runtime.org.rigor.sigmas))
        return found

    def run(self, prune: bool = False) -> AblationReport:
        main = self.git.head_of(PROGRAM_BRANCH)
        changes = self.changes()
        baseline = self.ledger.program()["baseline_commit"]
        self.ledger.ensure_agent(AGENT, AGENT, AGENT, "", "", baseline)
        for change in changes:
            message = f"ablation: main without merge {change.merge_id} (#{change.experiment_id})"
            change.commit, *parts = self.git.without(main, [(change.before, change.after)], message)
            change.parts = (parts[0], parts[1])
        # main is the reference of every comparison: its error is common to all of them, so it gets
        # sqrt(k) times the runs of each of the k variants (the allocation that minimizes the total variance)
        main_repeats = self.repeats * max(1, math.ceil(math.sqrt(sum(c.commit is not None for c in changes))))
        main_runs = self._measure(main, f"ablation: {PROGRAM_BRANCH} as it is", main_repeats)
        for change in changes:
            if change.commit is not None:
                change.runs = self._measure(change.commit, f"ablation: without #{change.experiment_id} "
                                                           f"{change.description}")
        sigma = self._sigma([main_runs, *[c.runs for c in changes]])
        for change in changes:
            if change.runs and main_runs:
                change.contribution = gain(self.metric, statistics.fmean(main_runs), statistics.fmean(change.runs))
                change.se = (sigma or 0.0) * math.sqrt(1 / len(main_runs) + 1 / len(change.runs))
        report = AblationReport(main, main_runs, sigma, changes)
        if prune:
            drop = [(c.before, c.after) for c in changes if c.matters is False]
            if drop:
                pruned, _, _ = self.git.without(main, drop, f"pruned: main without {len(drop)} changes that did not "
                                                            "matter")
                if pruned is not None:
                    self.git("branch", "-f", PRUNED_BRANCH, pruned)
                    report.pruned = pruned
                    report.pruned_runs = self._measure(pruned, "ablation: the pruned program")
        self.ledger.log_event("ablation", main=main, sigma=sigma, pruned=report.pruned, changes=[
            {"merge": c.merge_id, "experiment": c.experiment_id, "contribution": c.contribution, "se": c.se,
             "matters": c.matters, "removable": c.commit is not None, "parts": list(c.parts)} for c in changes])
        return report

    def _measure(self, commit: str, description: str, repeats: int | None = None) -> list[float]:
        """`repeats` fresh-seed runs of `commit` beside the unselected runs already made of its code on this
        hardware (not the runs that got it kept: they overstate it)."""
        tree = self.git.tree_of(commit)
        code = _Code(commit, self.git.head_of(PROGRAM_BRANCH), tree, description)
        hardware = self.runtime.scheduler.slots[0].hardware()
        earlier = self.ledger.runs_of(tree, hardware)
        fresh = [e for e in self.runtime.evidence.extra_runs(AGENT, code, "ablation", repeats or self.repeats,
                                                                     hardware)
                 if e.status == "measured"]
        return incumbent_sample([(e.kind, e.metric) for e in earlier + fresh])

    def _sigma(self, groups: list[list[float]]) -> float | None:
        floor = self.ledger.noise_floor(self.runtime.scheduler.slots[0].hardware())
        return floor["sigma"] if floor else pooled_sigma([g for g in groups if g])


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
