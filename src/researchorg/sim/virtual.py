"""The virtual lab: an organization of simulated agents on the simulated task, in virtual time.

It makes the same moves as the real runtime (org/runtime.py with
org/evidence.py), with each change held in memory as a set of ideas instead of
a git commit, and a virtual clock instead of real training:

- the noise floor first (the baseline with `noise_runs` seeds, never the task seed);
- each agent, in turn: reserve an experiment of the budget, think, pick an idea
  (sim/ideas.py), run the candidate with the task seed; if it ran, ask the same
  acceptance policy (rigor/acceptance.py) with the incumbent's runs and the
  noise floor, re-running borderline candidates with the lowest unused seed;
  keep moves the agent's code;
- a kept candidate that beats the program's code is verified with
  `verify_runs` fresh seeds and merged if it reproduces and still beats it;
  when the program moved under it, the union of both is run again and merged
  only if it still wins;
- slots go to waiting runs by the scheduler's weighted fair share (lab/scheduler.py).

Topologies, read from the org as the real runtime reads them:

- **solo**: every agent of a submitting role picks its own ideas (its role's
  `idea_quality`), runs them, keeps and merges as above;
- **chief**: a role with `submits = false` is a lead. Agents of a role with
  `waits_for_assignment = true` queue at the least busy lead, which spends its
  `think_seconds` per assignment (one at a time: a lead is a serial
  bottleneck) and picks the idea with its own `idea_quality` from what the
  whole organization already tried, for the program's current code; the
  junior then spends its own `think_seconds` implementing it, runs it against
  the program it started from, and a kept result is verified and merged;
- **standup**: with a `standup` process, every `every_experiments` finished
  proposals (or `every_minutes` of virtual time, checked as each finishes),
  everyone hears the digest the real process posts (per agent, its latest
  three tries since the last standup), and no agent tries again an idea it
  heard was tried.

Every run can also be written to a ledger (the same tables as a real program).
The landscape knows the truth, so every decision is recorded with its true
gain: this is what benchmarks/decisions.py scores.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from researchorg.config import OrgSpec
from researchorg.errors import ConfigError
from researchorg.lab.scheduler import fair_share_key
from researchorg.ledger import Ledger
from researchorg.rigor.acceptance import gain, incumbent_sample, make_policy, rerun_incumbent
from researchorg.rigor.noise import estimate, fresh_seed
from researchorg.sim.ideas import IdeaPicker, describe
from researchorg.sim.landscape import Landscape, tree_of
from researchorg.task.spec import MetricSpec

METRIC = MetricSpec(name="loss", direction="minimize")
HARDWARE = "virtual"


@dataclass
class SimRole:
    name: str = "researcher"
    count: int = 1
    quality: float = 0.5
    think_seconds: float = 60.0
    priority: float = 1.0
    seed: int = 0
    lead: bool = False  # runs no experiment: assigns ideas to the roles that wait for assignments (a chief)
    assigned: bool = False  # proposes only what a lead assigns


@dataclass
class _Desk:
    """A lead: when it is next free to think about an assignment, and how it picks ideas."""

    think_seconds: float
    picker: IdeaPicker
    free_at: float = 0.0


@dataclass
class Run:
    id: int
    agent: str
    config: frozenset[str]
    seed: int
    kind: str  # proposal | noise | rerun | verify | merge
    description: str = ""
    rerun_of: int | None = None
    metric: float | None = None
    status: str = "running"
    started: float = 0.0
    ended: float = 0.0


@dataclass
class SimDecision:
    run: int
    agent: str
    keep: bool
    true_gain: float  # what the candidate truly gains over the incumbent (positive: better)
    runs: int  # how many runs the decision used
    evidence: dict[str, Any]
    at: float


@dataclass
class SimResult:
    runs: list[Run] = field(default_factory=list)
    decisions: list[SimDecision] = field(default_factory=list)
    verifications: list[tuple[int, bool, float]] = field(default_factory=list)  # (run, reproduced, true gain)
    merges: list[tuple[float, int, float]] = field(default_factory=list)  # (time, run, true value of the program)
    standups: int = 0
    merged_values: list[float] = field(default_factory=list)  # main's measured value at each merge
    baseline_value: float | None = None  # the baseline's measured value (the noise floor's mean)
    noise_sigma: float | None = None
    seconds: float = 0.0  # virtual time at the end
    slot_seconds: float = 0.0


_Request = tuple[str, Any]  # ("think", seconds) | ("runs", [Run, ...])


class VirtualLab:
    def __init__(self, landscape: Landscape, roles: list[SimRole], *, slots: int = 1, policy: str = "noise-aware",
                 sigmas: float = 2.0, max_runs: int = 4, noise_runs: int = 5, verify_runs: int = 2,
                 merge: bool = True, adopt_program: bool = True, task_seed: int = 1,
                 max_experiments: int | None = None, max_hours: float | None = None, ledger: Ledger | None = None,
                 standup_every: int | None = None, standup_minutes: float | None = None):
        if any(r.assigned for r in roles) and not any(r.lead for r in roles):
            raise ConfigError("roles wait for assignments but no role assigns them (set submits = false on a lead)")
        self.landscape, self.roles, self.slots = landscape, roles, slots
        self.standup_every, self.standup_minutes = standup_every, standup_minutes
        self._heard: dict[str, list[str]] = {}  # agent -> ideas it tried since the last standup
        self._since_standup, self._last_standup = 0, 0.0
        self._pickers: list[IdeaPicker] = []  # every picker that hears the standups
        self._desks: list[_Desk] = []
        self.policy = make_policy(policy, sigmas, max_runs)
        self.noise_runs, self.verify_runs, self.merge, self.adopt = noise_runs, verify_runs, merge, adopt_program
        self.task_seed = task_seed
        self.max_experiments, self.deadline = max_experiments, max_hours * 3600 if max_hours else None
        self.ledger = ledger
        self.result = SimResult()
        self.now = 0.0
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._events: list[tuple[float, int, Any, Any]] = []
        self._waiting: list[tuple[tuple[float, int], int, float, Run, list]] = []  # heap: (key, order, priority, ...)
        self._used: dict[str, float] = {}
        self._free = slots
        self._reserved = 0
        self._metrics: dict[frozenset[str], list[tuple[str, float]]] = {}  # (kind, metric) of each code's runs
        self._seeds: dict[frozenset[str], set[int]] = {}
        self.program: frozenset[str] = frozenset()
        self._group_of: dict[int, list] = {}  # run id -> [process, runs still out, runs]
        self._noise_dof = 0
        self._priorities = {name: role.priority for name, role in self._agents()}
        self._agent_ids: dict[str, int] = {}
        self._pending: list[dict[str, Any]] = []
        self.baseline_commit = "0" * 40

    @classmethod
    def from_org(cls, org: OrgSpec, landscape: Landscape, *, slots: int = 1, seed_offset: int = 0,
                 **limits: Any) -> VirtualLab:
        """The virtual lab of an org of `simulated` agents: its roles, policy, rigor and processes; agents'
        seeds offset by `seed_offset` (a benchmark repeat)."""
        roles = [SimRole(r.name, r.count, r.idea_quality, r.think_seconds, r.priority, r.seed + seed_offset,
                         lead=not r.submits, assigned=r.waits_for_assignment) for r in org.roles]
        verify = [p.runs for p in org.processes if p.kind == "verify"]
        standup = next((p for p in org.processes if p.kind == "standup"), None)
        return cls(landscape, roles, slots=slots, policy=org.policy, sigmas=org.rigor.sigmas,
                   max_runs=org.rigor.max_runs, noise_runs=org.rigor.noise_runs,
                   verify_runs=verify[0] if verify else 0,
                   merge=any(p.kind == "merge" for p in org.processes) or any(r.merges for r in org.roles),
                   standup_every=standup.every_experiments if standup else None,
                   standup_minutes=standup.every_minutes if standup else None, **limits)

    # the engine ----------------------------------------------------------------------
    def run(self) -> SimResult:
        if self.ledger is not None:
            self.ledger.create_program("virtual", "simulated", METRIC.name, METRIC.direction, self.baseline_commit, {})
            self._agent_ids = self.ledger.add_agents(["lab"] + [name for name, _ in self._agents()], "simulated",
                                                     self.baseline_commit)
        self._start(self._lab())
        while self._events:
            self.now, _, target, value = heapq.heappop(self._events)
            if isinstance(target, Run):
                self._finished(target)
            else:
                self._step(target, value)
        self._flush()
        self.result.seconds = self.now
        self.result.slot_seconds = sum(self._used.values())
        return self.result

    def _start(self, process: Generator[_Request, Any, None]) -> None:
        self._step(process, None)

    def _step(self, process: Generator[_Request, Any, None], value: Any) -> None:
        try:
            kind, arg = process.send(value)
        except StopIteration:
            return
        if kind == "think":
            heapq.heappush(self._events, (self.now + arg, next(self._order), process, None))
        elif not arg:
            heapq.heappush(self._events, (self.now, next(self._order), process, []))
        else:
            group: list[Any] = [process, len(arg), arg]
            for run in arg:
                priority, order = self._priorities.get(run.agent, 1.0), next(self._order)
                key = fair_share_key(self._used.get(run.agent, 0.0), priority, order)
                heapq.heappush(self._waiting, (key, order, priority, run, group))
            self._dispatch()

    def _dispatch(self) -> None:
        """Free slots go to waiting runs by the scheduler's fair share. The queue is a heap whose keys may be
        stale (an agent's slot time only grows): a popped run whose key grew goes back in with the new one."""
        while self._free and self._waiting:
            key, order, priority, run, group = heapq.heappop(self._waiting)
            fresh = fair_share_key(self._used.get(run.agent, 0.0), priority, order)
            if fresh > key:
                heapq.heappush(self._waiting, (fresh, order, priority, run, group))
                continue
            self._free -= 1
            run.started = self.now
            outcome = self.landscape.run(run.config, run.seed)
            run.metric, run.ended = outcome.metric, self.now + outcome.seconds
            self._group_of[run.id] = group
            heapq.heappush(self._events, (run.ended, next(self._order), run, None))

    def _finished(self, run: Run) -> None:
        self._free += 1
        self._used[run.agent] = self._used.get(run.agent, 0.0) + run.ended - run.started
        run.status = "measured" if run.metric is not None else "crash"
        if run.metric is not None:
            self._metrics.setdefault(run.config, []).append((run.kind, run.metric))
        if run.kind not in ("proposal", "merge") or run.metric is None:  # decided runs are recorded when decided
            self._record(run)
        group = self._group_of.pop(run.id)
        group[1] -= 1
        if group[1] == 0:
            heapq.heappush(self._events, (self.now, next(self._order), group[0], group[2]))
        self._dispatch()

    # budget and seeds ------------------------------------------------------------------
    def _reserve(self) -> bool:
        if self.max_experiments is not None and self._reserved >= self.max_experiments:
            return False
        if self.deadline is not None and self.now >= self.deadline:
            return False
        self._reserved += 1
        return True

    def _new_run(self, agent: str, config: frozenset[str], kind: str, rerun_of: int | None = None,
                 description: str = "", seed: int | None = None) -> Run:
        used = self._seeds.setdefault(config, set())
        if seed is None:
            seed = fresh_seed(self.task_seed, used)
        used.add(seed)
        run = Run(next(self._ids), agent, config, seed, kind, description, rerun_of)
        self.result.runs.append(run)
        return run

    def _runs(self, agent: str, config: frozenset[str], kind: str, n: int, rerun_of: int | None,
              description: str) -> list[Run]:
        runs = []
        for _ in range(n):
            if not self._reserve():
                break
            runs.append(self._new_run(agent, config, kind, rerun_of, description))
        return runs

    def _sample(self, config: frozenset[str]) -> list[float]:
        return incumbent_sample(self._metrics.get(config, []))

    def _value(self, config: frozenset[str]) -> float | None:
        runs = self._sample(config)
        return statistics.fmean(runs) if runs else None

    def _agents(self) -> list[tuple[str, SimRole]]:
        return [(r.name if r.count == 1 else f"{r.name}-{i + 1}", r) for r in self.roles for i in range(r.count)]

    # the processes ------------------------------------------------------------------------
    def _lab(self) -> Generator[_Request, Any, None]:
        """The noise floor, then every agent at once."""
        if self.noise_runs >= 2:
            runs = yield ("runs", self._runs("lab", frozenset(), "noise", self.noise_runs, None,
                                             "baseline (noise floor)"))
            values = [r.metric for r in runs if r.metric is not None]
            if len(values) >= 2:
                self.result.noise_sigma, self._noise_dof = estimate(values).sigma, len(values) - 1
            self.result.baseline_value = self._value(frozenset())
        agents = list(enumerate(self._agents()))
        shared: set[str] = set()  # what the leads assigned: they read the same ledger
        for index, (_, role) in agents:
            if role.lead:
                picker = IdeaPicker(self.landscape, role.quality, role.seed + index)
                picker.tried = shared
                self._desks.append(_Desk(role.think_seconds, picker))
                self._pickers.append(picker)
        for index, (name, role) in agents:
            if role.assigned:
                self._start(self._junior(name, role))
            elif not role.lead:
                picker = IdeaPicker(self.landscape, role.quality, role.seed + index)
                self._pickers.append(picker)
                self._start(self._agent(name, role, picker))

    def _agent(self, name: str, role: SimRole, picker: IdeaPicker) -> Generator[_Request, Any, None]:
        config: frozenset[str] = frozenset()
        while True:
            if not self._reserve():
                return
            if self.merge and self.adopt and self.program != config and not self.program <= config:
                mine, best = self._value(config), self._value(self.program)
                if best is not None and (mine is None or METRIC.better(best, mine)):
                    config = self.program
            yield ("think", role.think_seconds)
            idea = picker.next(config)
            if idea is None:
                self._reserved -= 1
                return
            keep, run = yield from self._try(name, idea, config)
            if keep:
                config = run.config
                if self.merge:
                    config = yield from self._merge(name, run, config)

    def _junior(self, name: str, role: SimRole) -> Generator[_Request, Any, None]:
        """An agent that proposes what a lead assigns: it queues at the least busy lead, which thinks and picks
        an idea for the program's code of that moment; it implements it, runs it from there and merges a keep."""
        while True:
            if not self._reserve():
                return
            desk = min(self._desks, key=lambda d: d.free_at)
            desk.free_at = max(self.now, desk.free_at) + desk.think_seconds
            yield ("think", desk.free_at - self.now)
            base = self.program
            idea = desk.picker.next(base)
            if idea is None:
                self._reserved -= 1
                return
            yield ("think", role.think_seconds)
            keep, run = yield from self._try(name, idea, base)
            if keep and self.merge:
                yield from self._merge(name, run, run.config)

    def _try(self, name: str, idea: str, config: frozenset[str]) -> Generator[_Request, Any, tuple[bool, Run]]:
        """Run `config` plus `idea` with the task seed and decide it against `config`; tell the standup."""
        (run,) = yield ("runs", [self._new_run(name, config | {idea}, "proposal", None,
                                               describe(self.landscape, idea), self.task_seed)])
        keep = False
        if run.metric is not None:
            keep = yield from self._decide(name, run, config)
            run.status = "keep" if keep else "discard"
            self._record(run)
        self._standup(name, idea)
        return keep, run

    def _standup(self, agent: str, idea: str) -> None:
        """Count a finished proposal; when a standup is due, everyone hears what was tried since the last."""
        if self.standup_every is None and self.standup_minutes is None:
            return
        self._heard.setdefault(agent, []).append(idea)
        self._since_standup += 1
        due = (self.standup_every is not None and self._since_standup >= self.standup_every) or \
              (self.standup_minutes is not None and self.now - self._last_standup >= 60 * self.standup_minutes)
        if not due:
            return
        digest = {i for ideas in self._heard.values() for i in ideas[-3:]}  # the digest shows 3 per agent
        for picker in self._pickers:
            picker.tried |= digest
        self._heard, self._since_standup, self._last_standup = {}, 0, self.now
        self.result.standups += 1

    def _decide(self, agent: str, run: Run, incumbent: frozenset[str]) -> Generator[_Request, Any, bool]:
        """The sequential test of a candidate's first run against `incumbent`'s unselected runs; while it is
        borderline, the side with fewer runs runs again."""
        runs, final = [run.metric], False
        while True:
            sample = self._sample(incumbent)
            decision = self.policy.decide(METRIC, runs, sample, self.result.noise_sigma, final,
                                          sigma_dof=self._noise_dof)
            if decision.keep is not None:
                break
            if sample and rerun_incumbent(runs, sample):
                extra = self._runs(agent, incumbent, "incumbent", 1, run.id, f"incumbent of #{run.id}")
                if not extra:
                    final = True
                    continue
                (measured,) = yield ("runs", extra)
                final = measured.metric is None
                continue
            extra = self._runs(agent, run.config, "rerun", 1, run.id, run.description)
            if not extra:
                final = True
                continue
            (rerun,) = yield ("runs", extra)
            if rerun.metric is None:
                final = True
            else:
                runs.append(rerun.metric)
        self.result.decisions.append(SimDecision(run.id, agent, decision.keep,
                                                 self.landscape.true_gain(run.config, incumbent), len(runs),
                                                 decision.evidence, self.now))
        return decision.keep

    def _merge(self, agent: str, run: Run, config: frozenset[str]) -> Generator[_Request, Any, frozenset[str]]:
        """Verify and merge a kept candidate; return the agent's code after it (a kept merge re-run moves it)."""
        best, value = self._value(self.program), self._value(run.config)
        if best is not None and not METRIC.better(value, best):
            return config
        if self.verify_runs:
            incumbent = self.result.decisions[-1].evidence.get("incumbent_mean")
            fresh = yield ("runs", self._runs(agent, run.config, "verify", self.verify_runs, run.id, run.description))
            if not fresh:
                return config
            values = [r.metric for r in fresh if r.metric is not None]
            reproduced = bool(values) and (incumbent is None or gain(METRIC, statistics.fmean(values), incumbent) > 0)
            self.result.verifications.append((run.id, reproduced, self.result.decisions[-1].true_gain))
            best, value = self._value(self.program), self._value(run.config)
            if not reproduced or (best is not None and not METRIC.better(value, best)):
                return config
        if self.program <= run.config:  # the program did not move under it: fast-forward
            self._advance(run)
            return config
        merged = self.program | run.config
        if merged == self.program:
            return config
        if merged == run.config:
            self._advance(run)
            return config
        if not self._reserve():
            return config
        (rerun,) = yield ("runs", [self._new_run(agent, merged, "merge", run.id, f"merge #{run.id}", self.task_seed)])
        if rerun.metric is None:
            return config
        program = self.program
        keep = yield from self._decide(agent, rerun, program)
        rerun.status = "keep" if keep else "discard"
        self._record(rerun)
        best, value = self._value(self.program), self._value(merged)
        if keep and self.program == program and (best is None or METRIC.better(value, best)):
            self._advance(rerun)
        return merged if keep else config

    def _advance(self, run: Run) -> None:
        self.program = run.config
        self.result.merges.append((self.now, run.id, self.landscape.true_value(run.config)))
        self.result.merged_values.append(self._value(run.config))

    # the ledger ------------------------------------------------------------------------------
    def _record(self, run: Run) -> None:
        """A run reached its final status: queue its ledger row (written in batches)."""
        if self.ledger is None:
            return
        tree = tree_of(run.config)
        self._pending.append({
            "id": run.id, "agent_id": self._agent_ids[run.agent], "parent_commit": self.baseline_commit,
            "commit": tree, "diff": "", "description": run.description, "hypothesis": "",
            "proposal": {"ideas": sorted(run.config)}, "status": run.status, "reason": "", "metric": run.metric,
            "summary": {"training_seconds": run.ended - run.started, "virtual_end": run.ended},
            "training_seconds": run.ended - run.started, "seed": run.seed, "slot": "virtual", "hardware": HARDWARE,
            "log_path": "", "started_at": run.started, "ended_at": run.ended, "kind": run.kind,
            "rerun_of": run.rerun_of, "tree": tree})
        if len(self._pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        if self.ledger is not None and self._pending:
            self.ledger.record_runs(self._pending)
            self._pending = []
