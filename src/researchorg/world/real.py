"""The real world: a program's git repository, its agents' worktrees, and runs as subprocesses on slots.

Each agent works on branch `agents/<name>` in its own worktree; a proposal's
files are written there and committed as a child of the agent's head (no
branch moves until a decision keeps it). Every experiment stays reachable as
`refs/experiments/<id>`. A run checks the commit out in the slot's own
checkout, hash-checks the protected files, and runs the task's command in a
worker thread (runner.py), so the engine's loop goes on while it trains. A
slot on a Ray cluster (cluster.py) gets the commit as an archive and does the
same on its node.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from contextlib import AbstractContextManager
from pathlib import Path

from researchorg.config import OrgSpec
from researchorg.harness.graph import sketch_similarity
from researchorg.harness.sealed import machine_key
from researchorg.ledger import Experiment
from researchorg.world.clock import WallClock
from researchorg.world.cluster import RaySlot, sweep_cluster, task_hash
from researchorg.world.git import Git, restore_gitfile
from researchorg.world.guard import check_changes, check_protected
from researchorg.world.program import PROGRAM_BRANCH, Program
from researchorg.world.protocol import RunResult
from researchorg.world.runner import group_members, kill_group, run_command
from researchorg.world.slots import Slot, detect_slots

SAME_WEIGHTS = 0.9  # the cosine of two runs' weights sketches past which they started from the same weights


class GitWorld:
    def __init__(self, program: Program):
        self.program = program
        self.task = program.task
        self.ledger = program.ledger
        self.clock = WallClock()
        self.logs_dir: Path | None = program.logs_dir
        self.git = program.git
        self._gits: dict[str, Git] = {}
        self._protected = self.ledger.program().protected_hashes
        self._swept = False

    def org(self) -> OrgSpec:
        return self.program.org()

    def run_lock(self) -> AbstractContextManager[None]:
        return self.program.run_lock()

    def check_requirements(self, slots: list[Slot]) -> None:
        self.program.ensure_prepared()
        gpus = [s for s in slots if s.gpu is not None]
        if gpus:
            self.program.check_gpu_build(len(gpus))

    # versions of the code ----------------------------------------------------------------
    def main(self) -> str:
        return self.git.head_of(PROGRAM_BRANCH)

    def tree_of(self, commit: str) -> str:
        return self.git.tree_of(commit)

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        return self.git.is_ancestor(ancestor, commit)

    def merged_tree(self, main: str, commit: str) -> str | None:
        return self.git.merge_tree(main, commit)

    def commit_merge(self, tree: str, main: str, commit: str, message: str) -> str:
        return self.git("commit-tree", tree, "-p", main, "-p", commit, "-m", message)

    def advance_main(self, before: str, after: str) -> None:
        """Move the program branch, and the program directory's checkout with it when it is on it."""
        if self.git("symbolic-ref", "-q", "HEAD", check=False) == f"refs/heads/{PROGRAM_BRANCH}":
            self.git("merge", "--ff-only", "-q", after)
        else:
            self.git("update-ref", f"refs/heads/{PROGRAM_BRANCH}", after, before)

    def diff(self, parent: str, commit: str) -> str:
        return self.git.diff(parent, commit)

    # agents' places ------------------------------------------------------------------------
    def ensure_agent(self, name: str, role: str, backend: str) -> Path | None:
        worktree = self.program.ensure_agent(name, role, backend)
        self._gits[name] = Git(worktree)
        return worktree

    def agent_dir(self, name: str) -> Path:
        return self.program.agent_dir(name)

    def default_slots(self) -> list[Slot]:
        return detect_slots()

    def commit(self, agent: str, parent: str, files: dict[str, str], message: str) -> tuple[str, str | None]:
        """Write a proposal's files in the agent's worktree and commit them as a child of `parent`; a path
        outside the worktree is not written, and makes the experiment invalid."""
        git = self._gits[agent]
        restore_gitfile(self.program.root, git.cwd)
        invalid = None
        for path, content in files.items():
            target = (git.cwd / path).resolve()
            if not target.is_relative_to(git.cwd.resolve()):
                invalid = f"proposal writes {path}, outside the worktree"
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_text() != content:
                target.write_text(content)
        return git.commit_detached(parent, message), invalid

    def label(self, experiment_id: int, commit: str) -> None:
        self.git("update-ref", f"refs/experiments/{experiment_id}", commit)  # readable, safe from git gc

    def reset(self, agent: str, commit: str) -> None:
        git = self._gits.get(agent)
        if git is None:
            worktree = self.ledger.agent(agent).worktree
            if not worktree or not Path(worktree, ".git").exists():
                return
            git = Git(Path(worktree))
        restore_gitfile(self.program.root, git.cwd)
        git.remove_stale_lock()  # the run lock is ours: no other git of ours runs in this worktree
        git.reset_hard(commit)

    def read(self, agent: str, path: str, commit: str | None = None) -> str:
        if commit is None:
            return (self._gits[agent].cwd / path).read_text()
        return self.git("show", f"{commit}:{path}")

    def guard(self, parent: str, commit: str) -> str | None:
        return check_changes(self.task, self.git, parent, commit)

    # measuring ---------------------------------------------------------------------------------
    async def run(self, slot: Slot, experiment: Experiment, cancel: threading.Event) -> RunResult:
        return await asyncio.get_running_loop().run_in_executor(None, self._run, slot, experiment, cancel)

    def _run(self, slot: Slot | RaySlot, experiment: Experiment, cancel: threading.Event) -> RunResult:
        result = self._measure(slot, experiment, cancel)
        return self._own_seed(experiment, result) if self.task.seed_check else result

    def _own_seed(self, experiment: Experiment, result: RunResult) -> RunResult:
        """`result`, or `invalid` where an earlier run of the same code under another seed handed over the same
        weights: the code picked its seed itself, so fresh seeds would verify nothing (harness/graph.py)."""
        mine = result.summary.get("weights_sketch")
        if result.status != "ok" or not mine or not experiment.tree:
            return result
        for other in self.ledger.runs_of(experiment.tree, fidelity=None):
            theirs = other.summary.get("weights_sketch")
            similar = sketch_similarity(mine, theirs) if other.seed != experiment.seed and theirs else None
            if similar is not None and similar > SAME_WEIGHTS:
                return RunResult("invalid", summary=result.summary, returncode=result.returncode,
                                 wall_seconds=result.wall_seconds,
                                 reason=f"its weights do not depend on the lab's seed: run #{other.id} of the same "
                                        f"code under seed {other.seed} handed over the same weights (similarity "
                                        f"{similar:.2f}; seed {experiment.seed} here): the code sets its own seed")
        return result

    def _measure(self, slot: Slot | RaySlot, experiment: Experiment, cancel: threading.Event) -> RunResult:
        if isinstance(slot, RaySlot):
            job = {"program": self.program.key, "experiment": experiment.id, "seed": experiment.seed,
                   "fidelity": experiment.fidelity,
                   "protected": self._protected, "task_hash": task_hash(self._protected),
                   "env": {k: os.environ[k] for k in self.task.pass_env if k in os.environ},  # the head's secrets
                   "seal_key": machine_key()}  # every node scores the same private copy of the sealed data
            return slot.run(job, self.git.archive(experiment.commit), Path(experiment.log_path), cancel)
        checkout = self.program.checkout_for_run(slot.name, experiment.commit)
        invalid = check_protected(checkout, self._protected)
        if invalid:
            return RunResult("invalid", reason=invalid)
        try:
            return run_command(self.task.at_fidelity(experiment.fidelity), checkout, Path(experiment.log_path),
                               seed=experiment.seed, slot=slot,
                               on_start=lambda pid: self.ledger.set_pid(experiment.id, pid), cancel=cancel,
                               scratch=self._scratch(experiment))
        finally:  # what the run wrote in its checkout goes now, not at the slot's next run (it may be gigabytes)
            self.program.clean_checkout(checkout)

    def kill_orphan(self, experiment: Experiment) -> None:
        """The processes of a run whose lab died, if they still run in this program's checkouts (its group
        outlives its leader: the harness may be gone and its training go on), and the run's scratch directory. A
        run on a Ray slot is looked for on every node of the cluster (once per program)."""
        if experiment.slot.startswith("ray-") and not self._swept:
            self._swept = True
            sweep_cluster(self.program.key)
        if experiment.pid and any(_is_ours(pid, self.program.state_dir) for pid in group_members(experiment.pid)):
            kill_group(experiment.pid)
        shutil.rmtree(self._scratch(experiment), ignore_errors=True)

    def _scratch(self, experiment: Experiment) -> Path:
        return self.program.state_dir / "tmp" / str(experiment.id)

    def written(self, experiment: Experiment) -> None:
        self.program.write_results(lag=True)

    def flush(self) -> None:
        self.program.write_results()


def _is_ours(pid: int, state_dir: Path) -> bool:
    """Whether `pid` still runs in one of this program's checkouts (and is not a recycled pid)."""
    try:
        return Path(f"/proc/{pid}/cwd").resolve().is_relative_to(state_dir.resolve())
    except OSError:
        return False
