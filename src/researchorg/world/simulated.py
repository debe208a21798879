"""The simulated world: the simulated task's code as sets of ideas in memory, measured on its hidden landscape.

It answers what the git world answers, in its own terms. A commit is a set of
ideas with its parents; its tree names the set, so equal sets are the same
code, as equal git trees are. Merging two commits unites their ideas and
never conflicts (the task's ideas.py keeps every idea on a line of its own,
apart from the others, so git merges them cleanly too). An agent's ideas.py
is rendered from its commit's set, and a proposal's ideas.py is read back
into one. A run draws the landscape's outcome for the set and the seed, and
takes its simulated training time on the virtual clock. It holds no rule of
the organization: those are the engine's.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from contextlib import nullcontext
from dataclasses import dataclass, fields

from researchorg.config import OrgSpec
from researchorg.harness.landscape import Landscape, Outcome, tree_of
from researchorg.ledger import Experiment, Ledger, MemoryLedger
from researchorg.task import find_task, load_task
from researchorg.world.clock import VirtualClock
from researchorg.world.protocol import RunResult

IDEAS_FILE = "ideas.py"
_IDEA_ON = re.compile(r"(?m)^(IDEA_\d+)\s*=\s*1\b")


@dataclass(frozen=True)
class VirtualSlot:
    name: str

    def hardware(self) -> str:
        return "virtual"


class SimWorld:
    def __init__(self, landscape: Landscape, org: OrgSpec, ledger: Ledger | None = None, exact: bool = False):
        self.landscape, self._org = landscape, org
        self.exact = exact  # runs measure the truth (no noise, no load): the ceiling of any decision rule
        self.task = load_task(find_task("simulated"))
        self.clock = VirtualClock()
        self.ledger = ledger if ledger is not None else MemoryLedger()
        self.ledger.clock = self.clock.now
        self.logs_dir = None
        self._ids = itertools.count(1)
        self._configs: dict[str, frozenset[str]] = {"c0": frozenset()}
        self._parents: dict[str, tuple[str, ...]] = {"c0": ()}
        self._tree_ids: dict[str, str] = {"c0": tree_of(frozenset())}
        self._trees = {self._tree_ids["c0"]: frozenset()}
        self._main = "c0"
        self._landscape_toml = "".join(  # the landscape's parameters, as the task's landscape.toml gives them
            f"{f.name} = {list(v) if isinstance(v := getattr(landscape, f.name), tuple) else v!r}\n"
            for f in fields(landscape) if f.init)
        self.ledger.create_program("virtual", "simulated", self.task.metric.name, self.task.metric.direction, "c0", {})

    def org(self) -> OrgSpec:
        return self._org

    def default_slots(self, count: int = 1) -> list[VirtualSlot]:
        return [VirtualSlot(f"v{i}") for i in range(count)]

    def run_lock(self) -> nullcontext:
        return nullcontext()

    def check_requirements(self, slots: list[VirtualSlot]) -> None:
        """Nothing to install: the landscape is code of researchorg."""

    # versions of the code ----------------------------------------------------------------
    def true_value(self, commit: str) -> float:
        return self.landscape.true_value(self._configs[commit])

    def true_gain(self, tree: str, incumbent_tree: str) -> float:
        """How much the code `tree` truly beats `incumbent_tree` (positive: better)."""
        return self.landscape.true_gain(self._trees[tree], self._trees[incumbent_tree])

    def main(self) -> str:
        return self._main

    def tree_of(self, commit: str) -> str:
        return self._tree_ids[commit]

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        seen, todo = set(), [commit]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(self._parents[current])
        return False

    def merged_tree(self, main: str, commit: str) -> str | None:
        return self._tree(self._configs[main] | self._configs[commit])

    def commit_merge(self, tree: str, main: str, commit: str, message: str) -> str:
        return self._new(self._trees[tree], (main, commit))

    def advance_main(self, before: str, after: str) -> None:
        self._main = after

    def diff(self, parent: str, commit: str) -> str:
        return "".join(f"+{idea} = 1\n" for idea in sorted(self._configs[commit] - self._configs[parent]))

    # agents' places ------------------------------------------------------------------------
    def ensure_agent(self, name: str, role: str, backend: str) -> None:
        self.ledger.ensure_agent(name, role, backend, "", "", "c0")

    def agent_dir(self, name: str) -> None:
        """Simulated agents keep their state in memory."""

    def commit(self, agent: str, parent: str, files: dict[str, str], message: str) -> tuple[str, str | None]:
        text = files.get(IDEAS_FILE)
        config = frozenset(_IDEA_ON.findall(text)) if text is not None else self._configs[parent]
        return self._new(config, (parent,)), None

    def label(self, experiment_id: int, commit: str) -> None:
        """Experiments are the ledger's rows; nothing else names them."""

    def reset(self, agent: str, commit: str) -> None:
        """An agent's files are its head's: nothing to reset."""

    def read(self, agent: str, path: str, commit: str | None = None) -> str:
        if path == "landscape.toml":
            return self._landscape_toml
        if path != IDEAS_FILE:
            return (self.task.root / path).read_text()
        config = self._configs[commit or self.ledger.agent(agent).head_commit]
        return "".join(f"{idea} = 1\n\n" for idea in sorted(config))

    def guard(self, parent: str, commit: str) -> str | None:
        return None  # a proposal is a set of ideas: it cannot touch anything else

    # measuring ---------------------------------------------------------------------------------
    async def run(self, slot: VirtualSlot, experiment: Experiment, cancel: object) -> RunResult:
        config = self._trees[experiment.tree]
        outcome = self.landscape.run(config, experiment.seed, slot.name, self.clock.now(), experiment.fidelity)
        if self.exact and outcome.metric is not None:
            outcome = Outcome(self.landscape.true_value(config, experiment.fidelity), outcome.seconds)
        await asyncio.sleep(outcome.seconds)
        if outcome.metric is None:
            return RunResult("crash", reason=f"simulated crash after {outcome.seconds:.0f} s of training")
        # the machine's other work, as the real runner records it (the base landscape's machine is idle)
        summary = {"loss": outcome.metric, "training_seconds": outcome.seconds, "num_ideas": float(len(config)),
                   "other_cpu_s": outcome.other_cpu_s or 0.0}
        if outcome.steps is not None:
            summary["steps"] = float(outcome.steps)
        return RunResult("ok", metric=outcome.metric, summary=summary)

    def kill_orphan(self, experiment: Experiment) -> None:
        """No process outlives a virtual run."""

    def written(self, experiment: Experiment) -> None:
        """No files to rewrite."""

    def flush(self) -> None:
        """No files to rewrite."""

    def _new(self, config: frozenset[str], parents: tuple[str, ...]) -> str:
        commit = f"c{next(self._ids)}"
        self._configs[commit], self._parents[commit] = config, parents
        self._tree_ids[commit] = self._tree(config)
        return commit

    def _tree(self, config: frozenset[str]) -> str:
        tree = tree_of(config)
        self._trees.setdefault(tree, config)
        return tree
