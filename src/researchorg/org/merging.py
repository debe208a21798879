"""Merging: a kept change reaches the program branch only through the process allowed to merge, never blind.

A kept experiment is a candidate when its code beats the program branch's
(means over every run of each tree; the program's first code is the baseline,
measured by the noise floor). With a `verify` process the runtime re-runs it
with fresh seeds first, and only what reproduces goes on. If the
program branch has not moved since the change was made, it fast-forwards to
the tested commit. If it has moved, the two are merged without a work tree
(`git merge-tree`): a conflict is reported to the agent and nothing merges; a
merge whose tree is the program's own has nothing new; one whose tree is
exactly the tested one merges as it is; any other clean merge is a new,
untested tree, so it is run again on top of the moved branch as an experiment
of its own, and merges only if that run still beats the program's best.
Every merge is recorded in the ledger and announced to everyone.
"""

from __future__ import annotations

import threading

from researchorg.lab.git import Git
from researchorg.lab.program import PROGRAM_BRANCH, Program
from researchorg.ledger import Experiment
from researchorg.org.messages import PostOffice
from researchorg.task.spec import MetricSpec


class Merger:
    def __init__(self, program: Program, post: PostOffice, metric: MetricSpec):
        self.program, self.post, self.metric = program, post, metric
        self.git = Git(program.root)
        self.ledger = program.ledger
        self._lock = threading.Lock()

    def program_best(self) -> float | None:
        """The mean metric of the program branch's code; None while it was never measured."""
        return self.ledger.metric_of(self.git.tree_of(self.git.head_of(PROGRAM_BRANCH)))

    def value(self, experiment: Experiment) -> float | None:
        """The mean metric of an experiment's code over all its runs (re-runs and verifications included)."""
        return self.ledger.metric_of(experiment.tree) if experiment.tree else experiment.metric

    def worth_adopting(self, head: str) -> str | None:
        """The program branch's head, if an agent standing at `head` should continue from it instead:
        the program has a best, the agent is not already on or ahead of it, and it beats the agent's own."""
        main = self.git.head_of(PROGRAM_BRANCH)
        best, mine = self.program_best(), self.ledger.metric_of(self.git.tree_of(head))
        if head == main or best is None or self.git.is_ancestor(main, head):
            return None
        return main if mine is None or self.metric.better(best, mine) else None

    def is_candidate(self, experiment: Experiment) -> bool:
        best, value = self.program_best(), self.value(experiment)
        return experiment.status == "keep" and value is not None and (best is None or self.metric.better(value, best))

    def try_merge(self, experiment: Experiment, by: str) -> str | None:
        """Merge a kept experiment if it fast-forwards; return a merged commit to run again, or None.

        `by` is the process or agent that merges, as recorded and announced."""
        with self._lock:
            main = self.git.head_of(PROGRAM_BRANCH)
            if self.git.is_ancestor(main, experiment.commit):
                self._advance(experiment, main, experiment.commit, "fast-forward", by)
                return None
            tree = self.git.merge_tree(main, experiment.commit)
            if tree is None:
                self.post.send(by, experiment.agent, "merge",
                               f"Experiment #{experiment.id} ({experiment.description}) beat the program's best but "
                               f"conflicts with the program branch, which moved: not merged. Rebase onto "
                               f"`{PROGRAM_BRANCH}` and try again.", experiment.id)
                self.ledger.log_event("merge_conflict", experiment=experiment.id, agent=experiment.agent)
                return None
            if tree == self.git("rev-parse", f"{main}^{{tree}}"):  # the program already has this change
                self.ledger.log_event("merge_nothing_new", experiment=experiment.id, agent=experiment.agent)
                return None
            merged = self.git("commit-tree", tree, "-p", main, "-p", experiment.commit, "-m",
                              f"merge experiment #{experiment.id} of {experiment.agent} onto {PROGRAM_BRANCH}")
            if tree == self.git("rev-parse", f"{experiment.commit}^{{tree}}"):  # exactly the code that was run
                self._advance(experiment, main, merged, "merge of the tested tree", by)
                return None
            return merged

    def accept_rerun(self, rerun: Experiment, source_id: int, by: str) -> bool:
        """Merge a re-run merge commit if it still beats the program's best and the branch did not move again."""
        with self._lock:
            main = self.git.head_of(PROGRAM_BRANCH)
            best, value = self.program_best(), self.value(rerun)
            if value is None or (best is not None and not self.metric.better(value, best)):
                return False
            if not self.git.is_ancestor(main, rerun.commit):
                self.ledger.log_event("merge_stale", experiment=rerun.id, source=source_id)
                return False
            self._advance(rerun, main, rerun.commit, "re-run", by)
            return True

    def _advance(self, experiment: Experiment, before: str, after: str, how: str, by: str) -> None:
        """Move the program branch forward, and the program directory's checkout with it when it is on it."""
        if self.git("symbolic-ref", "-q", "HEAD", check=False) == f"refs/heads/{PROGRAM_BRANCH}":
            self.git("merge", "--ff-only", "-q", after)
        else:
            self.git("update-ref", f"refs/heads/{PROGRAM_BRANCH}", after, before)
        value = self.value(experiment)
        self.ledger.record_merge(experiment.id, experiment.agent, by, how, before, after, value)
        self.post.send(by, None, "merge",
                       f"Merged experiment #{experiment.id} of {experiment.agent} into `{PROGRAM_BRANCH}` ({how}): "
                       f"{self.metric.name} {value:.6f}. {experiment.description}", experiment.id)
