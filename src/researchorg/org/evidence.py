"""Evidence: the runs the lab makes on its own to judge results soundly, and the judgments they feed.

- The **noise floor**: at the start of a run, for every hardware class of the
  slots that has no estimate yet, the baseline runs K times with seeds it was
  never run with (org.toml `[rigor] noise_runs`, default 5). Runs made earlier
  and interrupted are reused, not repeated.
- **Decisions**: a candidate's first run goes to the acceptance policy with the
  incumbent's runs (every run of the incumbent's code on the same hardware
  class) and the noise floor; while the policy calls it borderline the
  candidate runs again with a fresh seed (a sequential test). The evidence,
  with the confounds next to the gain, is stored with the experiment.
- **Verification before merge** (a `verify` process): a candidate for the
  program branch runs again with fresh seeds on the hardware class it was
  measured on; it may merge only if the fresh runs' mean still beats the
  incumbent it was judged against. Each verification is in the ledger, which
  gives the reproduction rate per agent and per role.

Every extra run is an experiment row of its own (kind `noise`, `rerun` or
`verify`, status `measured`), counted in the run's experiment budget like any
other, since it costs the same compute.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from researchorg.ledger import Experiment
from researchorg.rigor import confounds
from researchorg.rigor.acceptance import Decision, gain, incumbent_sample, rerun_incumbent
from researchorg.rigor.noise import estimate, fresh_seed

if TYPE_CHECKING:
    from collections.abc import Callable

    from researchorg.org.runtime import Runtime

LAB = "lab"  # the ledger's agent for runs the lab makes itself (the noise floor)


@dataclass
class _Code:
    """What an extra run measures: a commit (and its tree) beside its parent."""

    commit: str
    parent: str
    tree: str
    description: str
    source: int | None = None  # the experiment it measures again


class Evidence:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.ledger = runtime.ledger
        self.task = runtime.task
        self._seed_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        verify = [p for p in runtime.org.processes if p.kind == "verify"]
        self.verify_runs = verify[0].runs if verify else 0

    # extra runs -------------------------------------------------------------------------
    def extra_runs(self, agent: str, code: _Code, kind: str, n: int, hardware: str | None) -> list[Experiment]:
        """Run `code` n more times with fresh seeds, at once on as many slots; each run takes one experiment of
        the budget (fewer runs when it runs out). Return the recorded runs."""
        rows = []
        with self._seed_lock:  # seeds are chosen and rows inserted together: concurrent callers never share one
            used = self.ledger.seeds_of(code.tree)
            for _ in range(n):
                budget = self.rt._budget
                if self.rt._stop.is_set() or (budget is not None and not budget.reserve()):
                    break
                seed = fresh_seed(self.task.seed, used)
                used.add(seed)
                rows.append(self.ledger.start_experiment(
                    agent, code.parent, code.commit, diff="", description=code.description, hypothesis="",
                    proposal={}, seed=seed, slot="", hardware="", log_dir=self.rt.program.logs_dir, kind=kind,
                    rerun_of=code.source, tree=code.tree))
        done: list[Experiment] = []
        threads = [threading.Thread(target=self._run_one, args=(agent, row, hardware, done), daemon=True,
                                    name=f"{kind}-{row.id}") for row in rows]
        self._threads.extend(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(done, key=lambda e: e.id)

    def _run_one(self, agent: str, row: Experiment, hardware: str | None, done: list[Experiment]) -> None:
        counted = False
        try:
            member = self.rt._members_by_name.get(agent)
            status, reason, metric, summary = self.rt.measure(agent, member.role.priority if member else 1.0,
                                                              row, hardware)
            self.ledger.finish_experiment(row.id, "measured" if status == "ok" else status, reason=reason,
                                          metric=metric, summary=summary)
            counted = status != "interrupted"
            finished = self.ledger.experiment(row.id)
            done.append(finished)
            with self.rt._lock:
                self.rt._report.ran.append(finished)
            self.rt.written(finished)
        except Exception as err:  # the lab failed (git, disk): the run is recorded as a crash, the caller goes on
            self.ledger.finish_experiment(row.id, "crash", reason=f"the lab failed: {type(err).__name__}: {err}")
            counted = True
        finally:
            if self.rt._budget is not None:
                self.rt._budget.settle(counted=counted)

    def settle_interrupted(self) -> None:
        """After Ctrl-C: wait for the extra runs in flight to be killed and recorded."""
        for thread in self._threads:
            thread.join()

    # the noise floor ----------------------------------------------------------------------
    def noise_floors(self) -> None:
        """Measure the noise floor of every hardware class of the slots that has none yet."""
        wanted = self.rt.org.rigor.noise_runs
        if wanted < 2:
            return
        baseline = self.ledger.program()["baseline_commit"]
        code = _Code(baseline, baseline, self.rt.program.git.tree_of(baseline), "baseline (noise floor)")
        self.ledger.ensure_agent(LAB, LAB, LAB, "", "", baseline)
        for hardware in sorted({slot.hardware() for slot in self.rt.scheduler.slots}):
            if self.ledger.noise_floor(hardware) is not None:
                continue
            earlier = [e for e in self.ledger.runs_of(code.tree, hardware) if e.kind == "noise"]
            self.rt.on_event("noise_floor_started", {"hardware": hardware, "runs": wanted - len(earlier)})
            runs = earlier + [e for e in self.extra_runs(LAB, code, "noise", wanted - len(earlier), hardware)
                              if e.status == "measured"]
            if self.rt._stop.is_set():
                return
            if len(runs) < 2:
                self.ledger.log_event("noise_floor_failed", hardware=hardware, runs=[e.id for e in runs])
                self.rt.on_event("noise_floor_failed", {"hardware": hardware})
                continue
            floor = estimate([e.metric for e in runs])
            self.ledger.record_noise(hardware, baseline, [e.id for e in runs], floor.mean, floor.sigma,
                                     floor.sigma_low, floor.sigma_high)
            self.ledger.log_event("noise_floor", hardware=hardware, mean=floor.mean, sigma=floor.sigma, runs=len(runs))
            self.rt.on_event("noise_floor", {"hardware": hardware, "floor": floor})

    def sigma(self, hardware: str) -> tuple[float | None, int]:
        """The noise floor's sigma on `hardware` and its degrees of freedom (None, 0 without one)."""
        floor = self.ledger.noise_floor(hardware)
        return (floor["sigma"], len(floor["runs"]) - 1) if floor else (None, 0)

    # decisions ------------------------------------------------------------------------------
    def decide(self, agent: str, experiment: Experiment, metric: float, summary: dict[str, Any],
               incumbent_commit: Callable[[], str]) -> Decision:
        """Judge a candidate's first run against the incumbent's unselected runs; while the policy finds it
        borderline, run again whichever side has fewer runs, with a fresh seed."""
        hardware = self.ledger.experiment(experiment.id).hardware
        runs, reruns, final = [metric], [], False
        code = _Code(experiment.commit, experiment.parent_commit, experiment.tree, experiment.description,
                     experiment.id)
        while True:
            commit = incumbent_commit()
            tree = self.rt.program.git.tree_of(commit)
            if tree == experiment.tree:
                return Decision(True, {"policy": self.rt.policy.name, "candidate_runs": runs,
                                       "rule": "same code as the incumbent: a re-measurement"})
            incumbent = self.ledger.runs_of(tree, hardware)
            sample = incumbent_sample([(e.kind, e.metric) for e in incumbent])  # not the runs that kept it
            sigma, dof = self.sigma(hardware)
            decision = self.rt.policy.decide(self.task.metric, runs, sample, sigma,
                                             final or self.rt._stop.is_set(), sigma_dof=dof)
            if decision.keep is not None:
                break
            if sample and rerun_incumbent(runs, sample):
                measured = _Code(commit, commit, tree, f"incumbent of #{experiment.id}", experiment.id)
                extra = self.extra_runs(agent, measured, "incumbent", 1, hardware)
                if not (extra and extra[0].status == "measured"):
                    final = True
                continue
            extra = self.extra_runs(agent, code, "rerun", 1, hardware)
            if extra and extra[0].status == "measured":
                runs.append(extra[0].metric)
                reruns.append(extra[0].id)
            else:
                final = True  # no budget, Ctrl-C, or the code failed with another seed: decide on what we have
        evidence = {**decision.evidence, "reruns": reruns, "hardware": hardware}
        if incumbent:
            found = confounds.compare(summary, incumbent[0].summary)
            delta = statistics.fmean(runs) - statistics.fmean(sample)
            evidence.update(confounds=found, text=confounds.describe(self.task.metric.name, delta, found))
        return Decision(decision.keep, evidence)

    # verification before merge -------------------------------------------------------------
    def verify(self, candidate: Experiment, role: str) -> bool | None:
        """Re-run a kept candidate with fresh seeds; True if it reproduces, None if no run could be made."""
        code = _Code(candidate.commit, candidate.parent_commit, candidate.tree, candidate.description, candidate.id)
        runs = self.extra_runs(candidate.agent, code, "verify", self.verify_runs, candidate.hardware)
        if not runs:
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
        self.rt.post.send("verify", candidate.agent, "verify",
                          f"Verification of #{candidate.id} ({candidate.description}): {len(runs)} fresh-seed runs, "
                          f"{name} {shown} (claimed {claimed:.6f}{against}): "
                          f"{'reproduced' if reproduced else 'did NOT reproduce'}.", candidate.id)
        self.ledger.log_event("verification", experiment=candidate.id, agent=candidate.agent, fresh=fresh,
                              claimed=claimed, incumbent=incumbent, reproduced=reproduced)
        return reproduced
