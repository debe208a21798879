"""Evidence: the runs the lab makes on its own to judge results soundly, and the judgments they feed.

- The **noise floor**: at the start of a run, for every hardware class of the
  slots that has no estimate yet, the baseline runs K times with seeds it was
  never run with (org.toml `[rigor] noise_runs`, default 5; a run limited to
  few experiments takes at most a third of them, and at least 2, so that it
  still tries ideas). Runs made earlier and interrupted are reused, not
  repeated. Agents start thinking meanwhile; a decision on a class waits for
  that class's floor.
- **Decisions**: a candidate's first run goes to the acceptance policy with the
  incumbent's runs (every run of the incumbent's code on the same hardware
  class, measured as stats.score measures a code) and the noise floor; while
  the policy calls it borderline, whichever side has fewer runs runs again with
  a fresh seed (a sequential test). The evidence, with the confounds next to
  the gain and the incumbent's tree, is stored with the experiment.
- **Verification before merge** (a `verify` process): a candidate for the
  program branch runs again with fresh seeds on the hardware class it was
  measured on; it may merge only if the fresh runs' mean still beats the
  incumbent it was judged against. Each verification is in the ledger, which
  gives the reproduction rate per agent and per role.

Every extra run is an experiment row of its own (kind `noise`, `rerun`,
`incumbent` or `verify`, status `measured`), counted in the run's experiment
budget like any other, since it costs the same compute: `extra_runs`, given by
the runtime, makes them.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from researchorg.config import OrgSpec
from researchorg.engine.messages import PostOffice
from researchorg.ledger import Experiment
from researchorg.stats import confounds
from researchorg.stats.acceptance import Decision, Policy, rerun_incumbent
from researchorg.stats.noise import estimate
from researchorg.stats.score import code_sample, gain
from researchorg.world.protocol import World

LAB = "lab"  # the ledger's agent for runs the lab makes itself (the noise floor)


@dataclass(frozen=True)
class Code:
    """What an extra run measures: a commit (and its tree) beside its parent."""

    commit: str
    parent: str
    tree: str
    description: str
    source: int | None = None  # the experiment it measures again


ExtraRuns = Callable[[str, Code, str, int, "str | None"], Awaitable[list[Experiment]]]


class Evidence:
    def __init__(self, world: World, org: OrgSpec, policy: Policy, post: PostOffice, extra_runs: ExtraRuns,
                 stopped: Callable[[], bool], on_event: Callable[[str, dict[str, Any]], None],
                 hardware_classes: list[str]):
        self.world, self.ledger, self.task = world, world.ledger, world.task
        self.org, self.policy, self.post = org, policy, post
        self.extra_runs, self.stopped, self.on_event = extra_runs, stopped, on_event
        verify = [p for p in org.processes if p.kind == "verify"]
        self.verify_runs = verify[0].runs if verify else 0
        self.hardware_classes = hardware_classes
        self._ready = {hardware: asyncio.Event() for hardware in hardware_classes}  # each class's floor is known
        self._planned: set[str] = set()  # classes whose floor this run measures

    # the noise floor ----------------------------------------------------------------------
    def noise_plan(self, experiments_left: int | None) -> dict[str, int]:
        """How many noise-floor runs each hardware class will take in this run: a class without a floor gets
        one, and a floor smaller than wanted (a short run measured it) is topped up when the budget allows."""
        wanted = self.org.rigor.noise_runs
        if experiments_left is not None:
            wanted = min(wanted, max(2, experiments_left // 3)) if experiments_left >= 2 else 0
        if wanted < 2:
            return {}
        tree = self.world.tree_of(self.ledger.program().baseline_commit)
        plan = {}
        for hardware in self.hardware_classes:
            floor = self.ledger.noise_floor(hardware)
            if floor is not None and len(floor.runs) >= wanted:
                continue
            earlier = [e for e in self.ledger.runs_of(tree, hardware) if e.kind == "noise"]
            more = max(wanted - len(earlier), 0)
            if floor is None or more:
                plan[hardware] = more
        return plan

    async def noise_floors(self, plan: dict[str, int], classes: list[str] | None = None) -> None:
        """Measure the noise floor of every hardware class (of `classes`, default all) in `plan` (noise_plan's);
        decisions on a class wait here."""
        baseline = self.ledger.program().baseline_commit
        code = Code(baseline, baseline, self.world.tree_of(baseline), "baseline (noise floor)")
        self._planned |= set(plan)
        if plan:
            self.ledger.ensure_agent(LAB, LAB, LAB, "", "", baseline)
        for hardware in list(classes or self.hardware_classes):  # a class may join while these run
            try:
                if hardware in plan:
                    await self._measure_floor(code, hardware, plan[hardware])
            finally:
                self._ready[hardware].set()

    async def new_class(self, hardware: str, experiments_left: int | None) -> None:
        """A slot of a hardware class this run had not seen joined (a cluster node): its floor is measured as
        at the start, and its decisions wait for it."""
        if hardware in self._ready:
            return
        self.hardware_classes.append(hardware)
        self._ready[hardware] = asyncio.Event()
        plan = {k: v for k, v in self.noise_plan(experiments_left).items() if k == hardware}
        await self.noise_floors(plan, [hardware])

    async def _measure_floor(self, code: Code, hardware: str, more: int) -> None:
        earlier = [e for e in self.ledger.runs_of(code.tree, hardware) if e.kind == "noise"]
        self.on_event("noise_floor_started", {"hardware": hardware, "runs": more})
        fresh = await self.extra_runs(LAB, code, "noise", more, hardware)
        runs = earlier + [e for e in fresh if e.status == "measured"]
        if self.stopped():
            return
        if len(runs) < 2:
            why = "the experiment budget ran out before its runs" if len(fresh) < more else \
                "fewer than 2 of its runs succeeded"
            self.ledger.log_event("noise_floor_failed", hardware=hardware, runs=[e.id for e in runs], why=why)
            self.on_event("noise_floor_failed", {"hardware": hardware, "why": why})
            return
        floor = estimate([e.metric for e in runs])
        self.ledger.record_noise(hardware, code.commit, [e.id for e in runs], floor.mean, floor.sigma,
                                 floor.sigma_low, floor.sigma_high)
        self.ledger.log_event("noise_floor", hardware=hardware, mean=floor.mean, sigma=floor.sigma, runs=len(runs))
        self.on_event("noise_floor", {"hardware": hardware, "floor": floor})

    def sigma(self, hardware: str) -> tuple[float | None, int]:
        """The noise floor's sigma on `hardware` and its degrees of freedom (None, 0 without one)."""
        floor = self.ledger.noise_floor(hardware)
        return (floor.sigma, len(floor.runs) - 1) if floor else (None, 0)

    # decisions ------------------------------------------------------------------------------
    async def decide(self, agent: str, experiment: Experiment, hardware: str, metric: float,
                     summary: dict[str, Any], incumbent_commit: Callable[[], str]) -> Decision | None:
        """Judge a candidate's first run against the incumbent's unselected runs; while the policy finds it
        borderline, run again whichever side has fewer runs, with a fresh seed. None: the run stopped before the
        noise floor it was to be judged against was measured (no decision without it)."""
        if hardware in self._ready:
            await self._ready[hardware].wait()
            if self.stopped() and hardware in self._planned and self.ledger.noise_floor(hardware) is None:
                return None
        runs, reruns, final = [metric], [], False
        code = Code(experiment.commit, experiment.parent_commit, experiment.tree, experiment.description,
                    experiment.id)
        while True:
            commit = incumbent_commit()
            tree = self.world.tree_of(commit)
            if tree == experiment.tree:
                return Decision(True, {"policy": self.policy.name, "candidate_runs": runs,
                                       "rule": "same code as the incumbent: a re-measurement"})
            incumbent = self.ledger.runs_of(tree, hardware)
            sample = code_sample((e.kind, e.metric) for e in incumbent)  # not the runs that kept it
            sigma, dof = self.sigma(hardware)
            decision = self.policy.decide(self.task.metric, runs, sample, sigma, final or self.stopped(),
                                          sigma_dof=dof)
            if decision.keep is not None:
                break
            if sample and rerun_incumbent(runs, sample):
                measured = Code(commit, commit, tree, f"incumbent of #{experiment.id}", experiment.id)
                extra = await self.extra_runs(agent, measured, "incumbent", 1, hardware)
                final = not (extra and extra[0].status == "measured")
                continue
            extra = await self.extra_runs(agent, code, "rerun", 1, hardware)
            if extra and extra[0].status == "measured":
                runs.append(extra[0].metric)
                reruns.append(extra[0].id)
            else:
                final = True  # no budget, Ctrl-C, or the code failed with another seed: decide on what we have
        evidence = {**decision.evidence, "reruns": reruns, "hardware": hardware, "incumbent_tree": tree}
        if incumbent:
            found = confounds.compare(summary, incumbent[0].summary)
            delta = statistics.fmean(runs) - statistics.fmean(sample)
            evidence.update(confounds=found, text=confounds.describe(self.task.metric.name, delta, found))
        return Decision(decision.keep, evidence)

    # verification before merge -------------------------------------------------------------
    async def verify(self, candidate: Experiment, role: str) -> bool | None:
        """Re-run a kept candidate with fresh seeds; True if it reproduces, None if no run could be made."""
        code = Code(candidate.commit, candidate.parent_commit, candidate.tree, candidate.description, candidate.id)
        runs = [e for e in await self.extra_runs(candidate.agent, code, "verify", self.verify_runs,
                                                 candidate.hardware) if e.status != "interrupted"]
        if not runs:  # no budget, Ctrl-C, or no slot of its class: nothing was measured, nothing is recorded
            return None
        values = [e.metric for e in runs if e.status == "measured"]
        fresh = statistics.fmean(values) if values else None
        evidence = candidate.summary.get("decision", {})
        claimed = evidence.get("candidate_mean", candidate.metric)
        incumbent = evidence.get("incumbent_mean")
        reproduced = fresh is not None and (incumbent is None or gain(self.task.metric, fresh, incumbent) > 0)
        self.ledger.record_verification(candidate.id, candidate.agent, role, [e.id for e in runs], fresh, claimed,
                                        incumbent, reproduced)
        name = self.task.metric.name
        shown = f"{fresh:.6f}" if fresh is not None else "no successful run"
        against = f" against the incumbent's {incumbent:.6f}" if incumbent is not None else ""
        self.post.send("verify", candidate.agent, "verify",
                       f"Verification of #{candidate.id} ({candidate.description}): {len(runs)} fresh-seed runs, "
                       f"{name} {shown} (claimed {claimed:.6f}{against}): "
                       f"{'reproduced' if reproduced else 'did NOT reproduce'}.", candidate.id)
        self.ledger.log_event("verification", experiment=candidate.id, agent=candidate.agent, fresh=fresh,
                              claimed=claimed, incumbent=incumbent, reproduced=reproduced)
        return reproduced
