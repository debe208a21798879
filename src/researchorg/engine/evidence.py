"""Evidence: the runs the lab makes on its own to judge results soundly, and the judgments they feed.

- The **noise floor**: at the start of a run, for every hardware class of the
  slots that has no estimate yet, the baseline runs K times with seeds it was
  never run with (org.toml `[rigor] noise_runs`, default 5; a run limited to
  few experiments takes at most a third of them, and at least 2, so that it
  still tries ideas). Runs made earlier and interrupted are reused, not
  repeated. Agents start thinking meanwhile; a decision on a class waits for
  that class's floor. A policy that screens (screen-gate) also runs the
  baseline K times on the screening budget: the spread of short runs, and
  what the first proposals are compared with.
- **Decisions**: a candidate's first run goes to the acceptance policy with the
  incumbent's runs (every run of the incumbent's code on the same hardware
  class, measured as stats.score measures a code) and the noise floor; while
  the policy calls it borderline, whichever side has fewer runs runs again with
  a fresh seed (a sequential test). The evidence, with the confounds next to
  the gain and the incumbent's tree, is stored with the experiment.
- **Verification before merge** (a `verify` process, and always with
  explore-gate): a candidate for the program branch runs again with fresh
  seeds on the hardware class it was measured on; it may merge only if the
  fresh runs' mean still beats the incumbent it was judged against, or, with
  explore-gate, if they pass its gate against main (the noise-aware test,
  under matched machine load). One the budget cannot pay for in full does
  not merge. Each verification is in the ledger, which gives the reproduction
  rate per agent and per role.
- **Machine load** (explore-gate): runs are compared only under matching
  load (stats/load.py), and the noise floor is amortized per load (`sigma`).
- **Fidelity** (screen-gate): a run on a fraction of the task's budget is
  compared only with runs on the same fraction (a short run's metric is not a
  full run's); when the incumbent never ran on it, it runs first. Its noise
  floor is amortized from the unselected runs on that budget. Verifications
  and the gate run on the full budget.

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
from researchorg.stats.acceptance import Decision, Policy, pooled_sigma, rerun_incumbent
from researchorg.stats.load import at_load, lightest, load_of
from researchorg.stats.noise import estimate, spreads
from researchorg.stats.score import UNSELECTED_KINDS, code_sample, gain
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
    fidelity: float = 1.0  # the fraction of the task's budget its runs train for


ExtraRuns = Callable[[str, Code, str, int, "str | None"], Awaitable[list[Experiment]]]


class Evidence:
    def __init__(self, world: World, org: OrgSpec, policy: Policy, post: PostOffice, extra_runs: ExtraRuns,
                 stopped: Callable[[], bool], on_event: Callable[[str, dict[str, Any]], None],
                 hardware_classes: list[str], experiments_left: Callable[[], int | None] = lambda: None):
        self.world, self.ledger, self.task = world, world.ledger, world.task
        self.org, self.policy, self.post = org, policy, post
        self.extra_runs, self.stopped, self.on_event = extra_runs, stopped, on_event
        self.experiments_left = experiments_left  # what the experiment budget allows (None: no limit)
        verify = [p for p in org.processes if p.kind == "verify"]
        # a gating policy verifies every merge (2 fresh runs unless a verify process says how many)
        self.verify_runs = verify[0].runs if verify else 2 if policy.gate is not None else 0
        self.hardware_classes = hardware_classes
        self._ready = {hardware: asyncio.Event() for hardware in hardware_classes}  # each class's floor is known
        self._planned: set[str] = set()  # classes whose floor this run measures
        self._floor_runs = 0  # runs a floor takes in this run (noise_plan's)
        # (class, fidelity) -> tree -> (load, metric) of its unselected runs
        self._unselected: dict[tuple[str, float], dict[str, list[tuple[float | None, float]]]] = {}
        self._observed = 0  # unselected runs observed: the amortized floors' cache is valid until it moves
        self._sigmas: dict[tuple[str, float | None, float], tuple[int, tuple[float | None, int]]] = {}
        if policy.matched:
            for e in self.ledger.experiments(status="measured"):
                self.observe(e)

    # the noise floor ----------------------------------------------------------------------
    def noise_plan(self, experiments_left: float | None) -> dict[str, int]:
        """How many noise-floor runs each hardware class will take in this run: a class without a floor gets
        one, and a floor smaller than wanted (a short run measured it) is topped up when the budget allows."""
        wanted = self.org.rigor.noise_runs
        if experiments_left is not None:
            wanted = min(wanted, max(2, int(experiments_left) // 3)) if experiments_left >= 2 else 0
        self._floor_runs = wanted  # a screening policy's floor on its short budget takes as many
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
                if self.policy.screen < 1.0 and self._floor_runs >= 2 and not self.stopped():
                    await self._screen_floor(code, hardware, self._floor_runs)
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
        spread = spreads([e.summary for e in runs])  # start-up apart from training: not the same noise
        self.ledger.log_event("noise_floor", hardware=hardware, mean=floor.mean, sigma=floor.sigma, runs=len(runs),
                              spread=spread)
        self.on_event("noise_floor", {"hardware": hardware, "floor": floor, "spread": spread})

    async def _screen_floor(self, baseline: Code, hardware: str, wanted: int) -> None:
        """The baseline's runs on the screening budget: `wanted` of them in all (earlier ones count). They are
        noise-floor runs of that budget, and its amortized sigma starts from them."""
        screen = Code(baseline.commit, baseline.parent, baseline.tree, "baseline (noise floor, screening budget)",
                      fidelity=self.policy.screen)
        earlier = [e for e in self.ledger.runs_of(screen.tree, hardware, screen.fidelity) if e.kind == "noise"]
        if wanted - len(earlier) > 0:
            await self.extra_runs(LAB, screen, "noise", wanted - len(earlier), hardware)
        sigma, dof = self.sigma(hardware, None, screen.fidelity)
        self.ledger.log_event("screen_floor", hardware=hardware, fidelity=screen.fidelity, sigma=sigma, dof=dof)

    async def confirm(self, candidate: Experiment) -> list[Experiment]:
        """Fresh-seed runs of a kept candidate on the budget it was screened on (as many as a verification),
        before its gate: they measure it without the luck that kept it, for a fraction of a full run each."""
        code = Code(candidate.commit, candidate.parent_commit, candidate.tree, candidate.description, candidate.id,
                    candidate.fidelity)
        return await self.extra_runs(candidate.agent, code, "verify", self.verify_runs, candidate.hardware)

    def sigma(self, hardware: str, load: float | None = None, fidelity: float = 1.0) -> tuple[float | None, int]:
        """The noise floor's sigma on `hardware` and its degrees of freedom (None, 0 without one).

        With a `load` (a policy that matches load), the floor is the one of that load, amortized: the pooled
        spread of every code's unselected runs made under it (the noise floor's own runs, when they ran under
        it, incumbent re-runs, verifications), once they give 2 degrees of freedom. A floor measured on a
        loaded machine does not judge runs made on an idle one: until idle runs give a spread, such a
        decision has no sigma (the policy then estimates it from the runs compared, or reads the sign).
        Runs on a fraction of the budget (`fidelity` < 1) have no floor of their own: theirs is amortized
        alike, from the unselected runs on that budget (under any load when `load` is None)."""
        floor = self.ledger.noise_floor(hardware)
        own = (floor.sigma, len(floor.runs) - 1) if floor else (None, 0)
        if load is None and fidelity == 1.0:
            return own
        key = (hardware, load, fidelity)
        cached = self._sigmas.get(key)
        if cached is not None and cached[0] == self._observed:
            return cached[1]
        tolerance = self.org.rigor.load_tolerance
        groups = [[v for x, v in runs if x is None or load is None or abs(x - load) <= tolerance]
                  for runs in self._unselected.get((hardware, fidelity), {}).values()]
        dof = sum(len(g) - 1 for g in groups if len(g) > 1)
        found = (pooled_sigma(groups), dof) if dof >= 2 else (None, 0)
        if len(self._sigmas) > 4096:
            self._sigmas.clear()
        self._sigmas[key] = (self._observed, found)  # until the next unselected run
        return found

    def observe(self, done: Experiment) -> None:
        """A run was recorded: an unselected one joins its code's runs for the amortized noise floor."""
        if done.kind in UNSELECTED_KINDS and done.status == "measured" and done.metric is not None:
            self._unselected.setdefault((done.hardware, done.fidelity), {}).setdefault(done.tree, []).append(
                (load_of(done.summary), done.metric))
            self._observed += 1

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
        code = Code(experiment.commit, experiment.parent_commit, experiment.tree, experiment.description,
                    experiment.id, experiment.fidelity)
        # a merge re-run (untested code bound for main) passes the gate of a policy that has one
        gate = experiment.kind == "merge" and self.policy.gate is not None
        decision = await self._judge(self.policy.gate if gate else self.policy, agent, code, [metric], [],
                                     [load_of(summary)], summary, incumbent_commit, hardware, "rerun", gate=gate)
        if code.fidelity < 1.0:  # judged on a fraction of the budget: the evidence says which
            decision.evidence["fidelity"] = code.fidelity
        return decision

    async def _judge(self, policy: Policy, agent: str, code: Code, runs: list[float], run_ids: list[int],
                     loads: list[float | None], summary: dict[str, Any], incumbent_commit: Callable[[], str],
                     hardware: str, rerun_kind: str, gate: bool = False) -> Decision:
        """The sequential test: `policy` on the candidate's `runs` (made under machine `loads`, one each) against
        the incumbent's unselected runs,
        re-running (with fresh seeds) whichever side has fewer runs while it is borderline.

        With a policy that matches load, both sides count only their runs made under the same machine load
        (other cores busy, within `rigor.load_tolerance`), at the lighter of the two sides' loads: a run slowed
        by other work measures the machine as much as the code. When the candidate ran busier than every run of
        the incumbent, the candidate runs again (at most BUSIER_RERUNS times); when it ran idler (the incumbent
        was measured on a loaded machine), the incumbent runs again, now (at most MATCHING_TRIES times); with no
        matched pair after them the candidate is not kept. A `gate` whose main never ran on this hardware class
        runs main first (no free pass), and so does any incumbent that never ran on the candidate's fraction of
        the budget (`code.fidelity`: runs are compared only within one). However the loads fall, a decision
        makes at most 2 * max_runs + MATCHING_TRIES extra runs, then decides on what it has."""
        final, matching, unmatched, level, spent = False, 0, 0, None, 0
        limit = 2 * self.org.rigor.max_runs + MATCHING_TRIES  # extra runs at most, whatever the loads do
        loads = list(loads)  # the load of each of the candidate's runs, in order (more join as it re-runs)
        load = next((x for x in loads if x is not None), None)  # None: the runs do not say (no matching)

        async def incumbent_again(commit: str, tree: str, why: str) -> bool:
            """Run the incumbent once more; False if no run could be measured (then decide on what there is)."""
            measured = Code(commit, commit, tree, why, code.source, code.fidelity)
            extra = await self.extra_runs(agent, measured, "incumbent", 1, hardware)
            return bool(extra and extra[0].status == "measured")

        async def candidate_again() -> bool:
            """Run the candidate once more; False if no run could be measured."""
            extra = await self.extra_runs(agent, code, rerun_kind, 1, hardware)
            if not (extra and extra[0].status == "measured"):
                return False
            runs.append(extra[0].metric)
            loads.append(load_of(extra[0].summary))
            run_ids.append(extra[0].id)
            return True

        while True:
            commit = incumbent_commit()
            tree = self.world.tree_of(commit)
            if tree == code.tree:
                return Decision(True, {"policy": policy.name, "candidate_runs": runs,
                                       "rule": "same code as the incumbent: a re-measurement"})
            incumbent = self.ledger.runs_of(tree, hardware, code.fidelity)
            usable, compared = incumbent, runs
            if spent >= limit:
                final = True  # decide on what there is: re-runs under changing load need not converge
            if not incumbent and (gate or code.fidelity < 1.0) and not final and not self.stopped():
                spent += 1  # main never ran on this hardware class (or the incumbent on this budget): now it does
                final = not await incumbent_again(commit, tree, f"main, for the gate of #{code.source}" if gate
                                                  else f"incumbent of #{code.source} (on its budget)")
                continue
            if policy.matched and load is not None and incumbent:
                tolerance = self.org.rigor.load_tolerance
                level = common_load([x for x in loads if x is not None], incumbent, tolerance)
                if level is None:  # no run of the candidate has a run of the incumbent under its load
                    idler = min(x for x in loads if x is not None) < lightest(incumbent)
                    if matching >= (MATCHING_TRIES if idler else BUSIER_RERUNS) or final or self.stopped():
                        return Decision(False, {"policy": policy.name, "candidate_runs": runs, "load": loads,
                                                "incumbent_tree": tree, "reruns": run_ids, "hardware": hardware,
                                                "rule": "no runs of both under matching machine load: not kept "
                                                        "on unmatched evidence"})
                    matching += 1
                    spent += 1
                    if idler:  # the incumbent was measured only on a busier machine: measure it now
                        final = not await incumbent_again(commit, tree, f"incumbent of #{code.source} (matched load)")
                    else:  # the candidate ran busier than any run of the incumbent: run it again
                        final = not await candidate_again()
                    continue
                usable = at_load(incumbent, level, tolerance)
                compared = [v for v, x in zip(runs, loads, strict=True) if x is None or abs(x - level) <= tolerance]
                unmatched = len(incumbent) - len(usable) + len(runs) - len(compared)
            sample = code_sample((e.kind, e.metric) for e in usable)  # not the runs that kept it
            sigma, dof = self.sigma(hardware, level if policy.matched and load is not None and incumbent else None,
                                    code.fidelity)
            decision = policy.decide(self.task.metric, compared, sample, sigma, final or self.stopped(),
                                     sigma_dof=dof)
            if decision.keep is not None:
                break
            spent += 1
            if sample and rerun_incumbent(compared, sample):
                final = not await incumbent_again(commit, tree, f"incumbent of #{code.source}")
                continue
            # no budget, Ctrl-C, or the code failed with another seed: then decide on what there is
            final = not await candidate_again()
        evidence = {**decision.evidence, "reruns": run_ids, "hardware": hardware, "incumbent_tree": tree}
        if policy.matched and load is not None:
            evidence.update(load=[None if x is None else round(x, 3) for x in loads], unmatched_runs=unmatched)
        if usable:
            found = confounds.compare(summary, usable[0].summary)
            delta = statistics.fmean(compared) - statistics.fmean(sample)
            evidence.update(confounds=found, text=confounds.describe(self.task.metric.name, delta, found))
        return Decision(decision.keep, evidence)

    # verification before merge -------------------------------------------------------------
    async def verify(self, candidate: Experiment, role: str) -> bool | None:
        """Re-run a kept candidate with fresh seeds; True if it reproduces, None if it could not be verified in
        full (the budget, Ctrl-C, or no slot of its class cut its runs short: a part-paid verification does not
        merge). With a policy that gates (explore-gate) the fresh runs must pass its test against main's runs;
        otherwise their mean must beat the incumbent the candidate was judged against."""
        code = Code(candidate.commit, candidate.parent_commit, candidate.tree, candidate.description, candidate.id)
        left = self.experiments_left()
        if left is not None and left < self.verify_runs:  # it cannot be paid in full: spend nothing on it
            self.ledger.log_event("verification_cut", experiment=candidate.id, runs=[], wanted=self.verify_runs)
            return None
        runs = [e for e in await self.extra_runs(candidate.agent, code, "verify", self.verify_runs,
                                                 candidate.hardware) if e.status != "interrupted"]
        if len(runs) < self.verify_runs:
            if runs:
                self.ledger.log_event("verification_cut", experiment=candidate.id, runs=[e.id for e in runs],
                                      wanted=self.verify_runs)
            return None
        measured = [e for e in runs if e.status == "measured"]
        values = [e.metric for e in measured]
        evidence = candidate.summary.get("decision", {})
        claimed = evidence.get("candidate_mean", candidate.metric)
        incumbent = evidence.get("incumbent_mean")
        gate = self.policy.gate
        if gate is not None and self.stopped():
            return None  # Ctrl-C before the gate judged: it runs again on resume
        reproduced = False  # with a gate and no successful fresh run: the code fails with other seeds
        if gate is not None and values:
            main = self.world.main
            decision = await self._judge(gate, candidate.agent, code, values, [e.id for e in measured],
                                         [load_of(e.summary) for e in measured], measured[0].summary, main,
                                         candidate.hardware, "verify", gate=True)
            rule = decision.evidence.get("rule", "")
            if self.stopped() or rule.startswith(("no runs of both under matching", "undecided")):
                return None  # Ctrl-C, no fresh run under main's load, or the budget cut it: not judged
            reproduced = bool(decision.keep)
            incumbent = decision.evidence.get("incumbent_mean", incumbent)
            runs = runs + [self.ledger.experiment(i) for i in decision.evidence.get("reruns", [])
                           if i not in {e.id for e in runs}]
            values = [e.metric for e in runs if e.status == "measured"]
            self.ledger.log_event("gate", experiment=candidate.id, keep=reproduced, z=decision.evidence.get("z"),
                                  rule=decision.evidence.get("rule"))
        fresh = statistics.fmean(values) if values else None
        if gate is None:
            reproduced = fresh is not None and (incumbent is None or gain(self.task.metric, fresh, incumbent) > 0)
        self.ledger.record_verification(candidate.id, candidate.agent, role, [e.id for e in runs], fresh, claimed,
                                        incumbent, reproduced)
        name = self.task.metric.name
        shown = f"{fresh:.6f}" if fresh is not None else "no successful run"
        judged_main = gate is not None and values and "incumbent_mean" in decision.evidence
        against = (f" against main's {incumbent:.6f}" if judged_main else
                   f" against the incumbent's {incumbent:.6f}") if incumbent is not None else ""
        claim = f"claimed {claimed:.6f}" if candidate.fidelity == 1.0 else \
            f"screened at {candidate.fidelity:.0%} of the budget: {claimed:.6f}"
        self.post.send("verify", candidate.agent, "verify",
                       f"Verification of #{candidate.id} ({candidate.description}): {len(runs)} fresh-seed runs, "
                       f"{name} {shown} ({claim}{against}): "
                       f"{'reproduced' if reproduced else 'did NOT reproduce'}.", candidate.id)
        self.ledger.log_event("verification", experiment=candidate.id, agent=candidate.agent, fresh=fresh,
                              claimed=claimed, incumbent=incumbent, reproduced=reproduced)
        return reproduced


MATCHING_TRIES = 2  # incumbent runs a decision makes to match an idler candidate's load
BUSIER_RERUNS = 2  # candidate runs a decision makes when the candidate ran busier than any incumbent run


def common_load(loads: list[float], incumbent: list[Experiment], tolerance: float) -> float | None:
    """The lightest load among the candidate's `loads` that some run of the incumbent matches; None if none."""
    for level in sorted(loads):
        if at_load(incumbent, level, tolerance):
            return level
    return None
