"""The world the engine runs in: where versions of the code live, how one is measured, and whose clock ticks.

Two worlds implement it. The real one (real.py): git commits on a program's
branches, agents' worktrees, and each run a subprocess on a compute slot,
under the wall clock. The simulated one (simulated.py): sets of ideas held in
memory, each run a draw from the simulated task's hidden landscape, under a
virtual clock. The engine's rules (engine/) are written once against this
protocol, so what the simulation measures is what the real lab does.

A world answers the questions the engine asks of code in its own terms: the
tree of a commit (code identity), whether one commit descends from another,
the tree of merging two commits (or None on a conflict).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from researchorg.config import OrgSpec
from researchorg.ledger import Experiment, Ledger
from researchorg.task.spec import TaskSpec

PROGRAM_BRANCH = "main"  # the program branch: where merged changes live, in every world
LOST = "lost"  # a run's status when its slot vanished with it (a cluster node left): its code runs again elsewhere


@dataclass
class RunResult:
    """How one run ended, in any world."""

    status: str  # ok | crash | timeout | interrupted | invalid | lost
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0


class Clock(Protocol):
    """What waiting means in a world (clock.py): wall time or virtual time."""

    virtual: bool

    def new_loop(self) -> asyncio.AbstractEventLoop: ...
    def now(self) -> float: ...
    async def sleep(self, seconds: float, stop: asyncio.Event) -> None: ...


class World(Protocol):
    task: TaskSpec
    ledger: Ledger
    clock: Clock  # the world decides what waiting means
    logs_dir: Path | None  # where run logs go (None: runs leave no log)

    def org(self) -> OrgSpec: ...
    def run_lock(self) -> AbstractContextManager[None]: ...
    def check_requirements(self, slots: list[Any]) -> None: ...

    # versions of the code
    def main(self) -> str: ...
    def tree_of(self, commit: str) -> str: ...
    def is_ancestor(self, ancestor: str, commit: str) -> bool: ...
    def merged_tree(self, main: str, commit: str) -> str | None: ...
    def commit_merge(self, tree: str, main: str, commit: str, message: str) -> str: ...
    def advance_main(self, before: str, after: str) -> None: ...
    def diff(self, parent: str, commit: str) -> str: ...

    # agents' places
    def ensure_agent(self, name: str, role: str, backend: str) -> Path | None: ...
    def agent_dir(self, name: str) -> Path | None: ...
    def default_slots(self) -> list[Any]: ...
    def commit(self, agent: str, parent: str, files: dict[str, str], message: str) -> tuple[str, str | None]: ...
    def label(self, experiment_id: int, commit: str) -> None: ...
    def reset(self, agent: str, commit: str) -> None: ...
    def read(self, agent: str, path: str, commit: str | None = None) -> str: ...
    def guard(self, parent: str, commit: str) -> str | None: ...

    # measuring
    async def run(self, slot: Any, experiment: Experiment, cancel: threading.Event) -> RunResult: ...
    def kill_orphan(self, experiment: Experiment) -> None: ...
    def written(self, experiment: Experiment) -> None:
        """A run was recorded: what the world keeps of the results (results.tsv) may follow, or lag a little."""
    def flush(self) -> None:
        """The run (or plan) is over: bring what the world keeps of the results up to date."""
