"""Merging: a kept change reaches the program branch only through the process allowed to merge, never blind.

A kept experiment is a candidate when its code beats the program branch's
(each measured as stats.score measures a code; the program's first code is
the baseline, measured by the noise floor). With a `verify` process the
runtime re-runs it with fresh seeds first, and only what reproduces goes on.
If the program branch has not moved since the change was made, it
fast-forwards to the tested commit. If it has moved, the world merges the two
(git: `git merge-tree`, no work tree; simulated: the union of the ideas): a
conflict is reported to the agent and nothing merges; a merge whose tree is
the program's own has nothing new; one whose tree is exactly the tested one
merges as it is; any other clean merge is a new, untested tree, so it is run
again on top of the moved branch as an experiment of its own, and merges only
if that run is kept against the branch and still beats the program's best.
Every merge is recorded in the ledger and announced to everyone. The merger
also says when an agent should continue from the program branch (adoption).

Two codes are compared on the full budget's runs when both have some, else
on the screening budget's (screen-gate: a branch moves on short runs before
any gate ran it in full); codes with no budget in common are not compared: a
kept change is then a candidate, and the gate, which runs both in full,
decides.
"""

from __future__ import annotations

from researchorg.engine.messages import PostOffice
from researchorg.ledger import Experiment, Ledger
from researchorg.stats.score import UNSELECTED_KINDS, better, code_value, measuring
from researchorg.task.spec import MetricSpec
from researchorg.world.protocol import PROGRAM_BRANCH, World


class Merger:
    def __init__(self, world: World, ledger: Ledger, post: PostOffice, metric: MetricSpec,
                 load_tolerance: float | None = None, screen: float = 1.0):
        self.world, self.ledger, self.post, self.metric = world, ledger, post, metric
        self.load_tolerance = load_tolerance  # set: a code is measured by its runs at its lightest machine load
        self.fidelities = tuple(dict.fromkeys((1.0, screen)))  # the budgets runs train on: full, then screening

    def value(self, tree: str, fidelity: float = 1.0) -> float | None:
        """What the code `tree` scores over its runs on `fidelity` of the budget (at its lightest load, when load
        is matched); None while it was never measured there."""
        return code_value(measuring(self.ledger.runs_of(tree, fidelity=fidelity), self.load_tolerance))

    def program_best(self) -> float | None:
        return self.value(self.world.tree_of(self.world.main()))

    def compared(self, tree: str, other: str) -> tuple[float | None, float | None]:
        """The values of two codes on the budget they were both measured on (the full one first); where they
        share none, the full budget's (one or both None)."""
        for fidelity in self.fidelities:
            a, b = self.value(tree, fidelity), self.value(other, fidelity)
            if a is not None and b is not None:
                return a, b
        return self.value(tree), self.value(other)

    def worth_adopting(self, head: str) -> str | None:
        """The program branch's head, if an agent standing at `head` should continue from it instead: the
        program scores better than the agent's own code (or the agent's code was never measured), and the
        agent is not already on it, nor ahead of it unless a gate's fresh runs found its code no better."""
        main = self.world.main()
        if head == main:
            return None
        best, mine = self.compared(self.world.tree_of(main), self.world.tree_of(head))
        if mine is None and self._measured(self.world.tree_of(head)):
            return None  # measured only on a budget main was not: the gate will judge it against main
        if best is None or (mine is not None and not better(self.metric, best, mine)):
            return None
        if self.world.is_ancestor(main, head):  # built on main: it stays, unless fresh runs found it no better
            return main if self._judged(self.world.tree_of(head)) else None
        return main

    def is_candidate(self, experiment: Experiment) -> bool:
        """Whether a kept experiment may go on to merge: its code beats the program's on a budget both ran on
        (or shares none with it: the gate then runs both in full)."""
        if experiment.status != "keep":
            return False
        value, best = self.compared(experiment.tree, self.world.tree_of(self.world.main()))
        if value is None:
            return self._measured(experiment.tree)
        return best is None or better(self.metric, value, best)

    def _judged(self, tree: str) -> bool:
        """Whether a code was measured on the full budget by runs no keep chose (a gate's fresh runs): then
        its value is sound, and a branch that main beats on it goes back to main."""
        return any(e.kind in UNSELECTED_KINDS for e in self.ledger.runs_of(tree))

    def _measured(self, tree: str) -> bool:
        return any(self.value(tree, fidelity) is not None for fidelity in self.fidelities)

    def try_merge(self, experiment: Experiment, by: str) -> tuple[str, str | None]:
        """Merge a kept experiment into the program branch: ("merged", None), ("conflict", None),
        ("nothing new", None), or ("re-run", merged commit) when the clean merge is untested code."""
        main = self.world.main()
        if self.world.is_ancestor(main, experiment.commit):
            self._advance(experiment, main, experiment.commit, "fast-forward", by)
            return "merged", None
        tree = self.world.merged_tree(main, experiment.commit)
        if tree is None:
            self.post.send(by, experiment.agent, "merge",
                           f"Experiment #{experiment.id} ({experiment.description}) beat the program's best but "
                           f"conflicts with the program branch, which moved: not merged. Rebase onto "
                           f"`{PROGRAM_BRANCH}` and try again.", experiment.id)
            self.ledger.log_event("merge_conflict", experiment=experiment.id, agent=experiment.agent)
            return "conflict", None
        if tree == self.world.tree_of(main):  # the program already has this change
            self.ledger.log_event("merge_nothing_new", experiment=experiment.id, agent=experiment.agent)
            return "nothing new", None
        merged = self.world.commit_merge(tree, main, experiment.commit,
                                         f"merge experiment #{experiment.id} of {experiment.agent} onto "
                                         f"{PROGRAM_BRANCH}")
        if tree == experiment.tree:  # exactly the code that was run
            self._advance(experiment, main, merged, "merge of the tested tree", by)
            return "merged", None
        return "re-run", merged

    def accept_rerun(self, rerun: Experiment, by: str) -> bool:
        """Merge a kept merge re-run if it still beats the program's best and the branch did not move again."""
        best, value = self.program_best(), self.value(rerun.tree)
        if rerun.status != "keep" or value is None or (best is not None and not better(self.metric, value, best)):
            return False
        main = self.world.main()
        if not self.world.is_ancestor(main, rerun.commit):
            self.ledger.log_event("merge_stale", experiment=rerun.id, source=rerun.rerun_of)
            return False
        self._advance(rerun, main, rerun.commit, "re-run", by)
        return True

    def _advance(self, experiment: Experiment, before: str, after: str, how: str, by: str) -> None:
        self.world.advance_main(before, after)
        value = self.value(experiment.tree)
        self.ledger.record_merge(experiment.id, experiment.agent, by, how, before, after, value)
        self.post.send(by, None, "merge",
                       f"Merged experiment #{experiment.id} of {experiment.agent} into `{PROGRAM_BRANCH}` ({how}): "
                       f"{self.metric.name} {value:.6f}. {experiment.description}", experiment.id)
