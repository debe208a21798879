"""The runtime: the organization's agents work at once, and the scheduler feeds their experiments to the slots.

Each agent has a worker thread. One experiment, from any agent, always takes
the same path:

    propose -> write the editable files -> commit (a child of the agent's head)
    -> record as `running` -> guard (invalid?) -> wait for a slot -> check out
    in the slot's checkout -> run -> decide -> record -> keep moves the agent's
    branch to the commit -> tell the agent

Experiments run in the slot's own checkout, so while they train their agents
think about the next one (up to the role's `in_flight` experiments at once),
and other agents think too: slots do not wait for agents.

The ledger is the truth about where each agent's branch stands. A run that
starts after Ctrl-C or `kill -9` first settles what the last one left: an
experiment still marked `running` becomes `interrupted` (its process group is
killed if it survived), and every worktree is reset to its recorded head.
So no experiment is lost and none is recorded twice.

A failing agent (its backend raises) is paused with the reason in the ledger's
events; the others carry on.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.agents import Agent, AgentContext, make_agent
from researchorg.config import RoleSpec
from researchorg.errors import ConfigError
from researchorg.lab.git import Git
from researchorg.lab.guard import check_changes, check_protected
from researchorg.lab.program import PROGRAM_BRANCH, Program
from researchorg.lab.runner import Slot, kill_group, run_command
from researchorg.lab.scheduler import Scheduler, detect_slots
from researchorg.ledger import Experiment
from researchorg.org.coordination import next_assignment, report_assignment
from researchorg.org.evidence import Evidence
from researchorg.org.merging import Merger
from researchorg.org.messages import PostOffice
from researchorg.org.processes import Standup
from researchorg.rigor.acceptance import make_policy

EventHandler = Callable[[str, dict[str, Any]], None]


@dataclass
class Limits:
    max_experiments: int | None = None  # total recorded in the program (interrupted ones not counted)
    max_hours: float | None = None  # wall time of this invocation


@dataclass
class RunReport:
    ran: list[Experiment] = field(default_factory=list)
    stopped_by: str = "agents_done"  # agents_done | max_experiments | max_hours | interrupted
    paused: dict[str, str] = field(default_factory=dict)  # agent -> why it was paused
    slot_seconds: float = 0.0  # slot time spent running experiments
    wall_seconds: float = 0.0
    slots: int = 1

    @property
    def utilization(self) -> float:
        span = self.wall_seconds * self.slots
        return self.slot_seconds / span if span > 0 else 0.0


@dataclass
class _Member:
    name: str
    role: RoleSpec
    ctx: AgentContext
    git: Git
    agent: Agent
    lock: threading.Lock = field(default_factory=threading.Lock)  # the worktree and the agent: one at a time
    paused: bool = False


class _Budget:
    """How many more experiments may start; thread-safe."""

    def __init__(self, limits: Limits, recorded: int):
        self.limits, self.recorded, self.in_flight = limits, recorded, 0
        self.deadline = time.monotonic() + limits.max_hours * 3600 if limits.max_hours else None
        self.exhausted_by: str | None = None
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        with self._lock:
            if self.limits.max_experiments is not None \
                    and self.recorded + self.in_flight >= self.limits.max_experiments:
                self.exhausted_by = "max_experiments"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.exhausted_by = "max_hours"
            else:
                self.in_flight += 1
                return True
            return False

    def settle(self, counted: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.recorded += counted


class Runtime:
    """Runs an organization on a program until a limit is reached, Ctrl-C, or the agents have nothing left."""

    def __init__(self, program: Program, slots: list[Slot] | None = None, on_event: EventHandler | None = None,
                 seed_offset: int = 0):
        self.program = program
        self.seed_offset = seed_offset  # added to every agent's seed: repeats of a benchmark search differently
        self.task = program.task
        self.org = program.org()
        self.ledger = program.ledger
        self.scheduler = Scheduler(slots or detect_slots())
        self.on_event = on_event or (lambda kind, data: None)
        self.policy = make_policy(self.org.policy, self.org.rigor.sigmas, self.org.rigor.max_runs)
        self._stop = threading.Event()  # set on Ctrl-C: runs are killed, nothing new starts
        self._lock = threading.Lock()  # results.tsv and the report
        self.post = PostOffice(self.ledger, {})
        self.processes = [Standup(spec, self.ledger, self.post, self.task.metric)
                          for spec in self.org.processes if spec.kind == "standup"]
        self._merge_process = any(spec.kind == "merge" for spec in self.org.processes)
        merging = self._merge_process or any(role.merges for role in self.org.roles)
        self.merger = Merger(program, self.post, self.task.metric) if merging else None
        self._members_by_name: dict[str, _Member] = {}
        self._winding_down = threading.Event()  # every submitting agent has stopped: leads stop too
        self._budget: _Budget | None = None
        self._report = RunReport()
        self.evidence = Evidence(self)

    # the loop ---------------------------------------------------------------------
    def run(self, limits: Limits) -> RunReport:
        with self.program.run_lock():
            self.recover()
            self.program.check_requirements()
            members = self._members()
            report = RunReport(slots=len(self.scheduler.slots))
            budget = self._budget = _Budget(limits, self.ledger.count(exclude=("interrupted",)))
            self._report = report
            self.ledger.log_event("run_started", max_experiments=limits.max_experiments, max_hours=limits.max_hours,
                                  slots=[s.name for s in self.scheduler.slots], agents=[m.name for m in members])
            started = time.monotonic()
            try:
                self.evidence.noise_floors()
            except KeyboardInterrupt:
                with _no_sigint():
                    self._stop.set()
                    self.evidence.settle_interrupted()
            if self._stop.is_set():  # Ctrl-C, or interrupt() from another thread
                self.evidence.settle_interrupted()
                report.stopped_by = "interrupted"
                report.wall_seconds = time.monotonic() - started
                self.ledger.log_event("run_stopped", stopped_by="interrupted", experiments=len(report.ran))
                return report
            workers = [threading.Thread(target=self._work if m.role.submits else self._lead,
                                        args=(m, budget, report), name=m.name, daemon=True) for m in members]
            for worker in workers:
                worker.start()
            submitters = [w for w, m in zip(workers, members, strict=True) if m.role.submits]
            try:
                while any(w.is_alive() for w in workers):
                    if not any(w.is_alive() for w in submitters):
                        self._winding_down.set()
                    for worker in workers:
                        worker.join(timeout=0.2)
            except KeyboardInterrupt:
                with _no_sigint():
                    self._stop.set()
                    for worker in workers:
                        worker.join()
            if self._stop.is_set():
                for worker in workers:
                    worker.join()
                self._reset_worktrees(members)
                report.stopped_by = "interrupted"
            else:
                report.stopped_by = budget.exhausted_by or "agents_done"
            report.wall_seconds = time.monotonic() - started
            report.slot_seconds = self.scheduler.busy_seconds
            self.ledger.log_event("run_stopped", stopped_by=report.stopped_by, experiments=len(report.ran),
                                  utilization=round(report.utilization, 4), paused=report.paused)
            return report

    def interrupt(self) -> None:
        """Stop a run from another thread as Ctrl-C does: runs in flight are killed and recorded as interrupted,
        nothing new starts, and `run` returns with `stopped_by = "interrupted"`."""
        self._stop.set()

    def _work(self, member: _Member, budget: _Budget, report: RunReport) -> None:
        """One agent's loop, in its own thread: propose while up to `in_flight` of its experiments run."""
        places = threading.BoundedSemaphore(member.role.in_flight)
        runs: list[threading.Thread] = []
        try:
            while not self._stop.is_set() and not member.paused:
                if not places.acquire(timeout=0.1):
                    continue
                if self._at_cap(member) or not budget.reserve():
                    places.release()
                    return
                if member.role.waits_for_assignment and not self._wait_for_assignment(member):
                    budget.settle(counted=False)
                    places.release()
                    return
                try:
                    submitted = self._submit(member)
                except Exception as err:  # a failing agent is paused; the organization goes on
                    budget.settle(counted=False)
                    places.release()
                    self._pause(member, err, report)
                    return
                if submitted is None:
                    budget.settle(counted=False)
                    places.release()
                    return
                run = threading.Thread(target=self._execute, args=(member, *submitted, budget, report, places),
                                       name=f"{member.name}-{submitted[0].id}", daemon=True)
                run.start()
                runs.append(run)
        finally:
            for run in runs:
                run.join()

    def _lead(self, member: _Member, budget: _Budget, report: RunReport) -> None:
        """A role that runs no experiments (a chief): it acts at the start and whenever something new happens.

        When every submitting agent has stopped it gets one last turn if something happened since it last acted
        (the final reports), so it can still merge what the juniors finished."""
        seen = None
        while not self._stop.is_set():
            winding_down = self._winding_down.is_set()  # read before the activity: nothing new can follow it
            now = self.ledger.activity(member.name)
            if now == seen:
                if winding_down:
                    return
                self._winding_down.wait(0.2)
                continue
            seen = now
            try:
                member.agent.act(member.ctx)
            except Exception as err:  # a failing lead is paused; the others go on
                self._pause(member, err, report)
                return
            # what it did itself (merges and their verification runs) is not news; messages from others that
            # arrived while it acted are: they are compared as they were before it acted
            seen = (self.ledger.activity(member.name)[0], now[1])

    def _wait_for_assignment(self, member: _Member) -> bool:
        """Block until an assignment for this agent arrives; False if the run stops or no lead is left."""
        leads = [m for m in self._members_by_name.values() if not m.role.submits]
        while not self._stop.is_set():
            assignment = next_assignment(self.ledger, member.name)
            if assignment is not None:
                member.ctx.assignment = assignment
                return True
            if not leads or all(m.paused for m in leads):
                return False
            self._stop.wait(0.2)
        return False

    def _at_cap(self, member: _Member) -> bool:
        cap = member.role.max_experiments
        return cap is not None and self.ledger.count(agent=member.name, exclude=("interrupted",)) >= cap

    def _submit(self, member: _Member) -> tuple[Experiment, str | None] | None:
        """Ask the agent for a proposal, commit it beside its branch and record it; None if it has none."""
        with member.lock:
            self._adopt_program(member)
            proposal = member.agent.propose(member.ctx)
            if proposal is None or self._stop.is_set():
                return None
            if member.ctx.assignment is not None:
                proposal.data = {**proposal.data, "assignment": member.ctx.assignment["id"]}
                member.ctx.assignment = None
            parent = self.ledger.agent(member.name)["head_commit"]
            invalid = self._write_files(member.ctx.worktree, proposal.files)
            message = _commit_message(member.name, proposal.description, proposal.hypothesis)
            commit = member.git.commit_detached(parent, message)
            if member.role.in_flight > 1:
                member.git.reset_hard(parent)  # the worktree goes back to the head for the next proposal
            experiment = self.ledger.start_experiment(
                member.name, parent, commit, diff=member.git.diff(parent, commit), description=proposal.description,
                hypothesis=proposal.hypothesis, proposal=proposal.data, seed=self.task.seed, slot="", hardware="",
                log_dir=self.program.logs_dir, tree=member.git.tree_of(commit))
            member.git("update-ref", f"refs/experiments/{experiment.id}", commit)  # readable, safe from git gc
        return experiment, invalid

    def _execute(self, member: _Member, experiment: Experiment, invalid: str | None, budget: _Budget,
                 report: RunReport, places: threading.Semaphore) -> None:
        """Guard, wait for a slot, run, decide and record one experiment, in its own thread."""
        done = None
        try:
            done = self._run_on_a_slot(member, experiment, invalid)
            with self._lock:
                report.ran.append(done)
        except Exception as err:  # the lab itself failed (git, disk): record it, pause the agent
            self._pause(member, err, report, experiment)
        finally:
            budget.settle(counted=done is not None and done.status != "interrupted")
            places.release()

    def _run_on_a_slot(self, member: _Member, experiment: Experiment, invalid: str | None) -> Experiment:
        invalid = invalid or check_changes(self.task, member.git, experiment.parent_commit, experiment.commit)
        if invalid:
            return self._finish(member, experiment, "invalid", invalid, None, {})
        status, reason, metric, summary = self.measure(member.name, member.role.priority, experiment)
        if status == "ok":
            decision = self.evidence.decide(member.name, experiment, metric, summary,
                                            self._incumbent(member, experiment))
            status, summary = ("keep" if decision.keep else "discard"), {**summary, "decision": decision.evidence}
        return self._finish(member, experiment, status, reason, metric, summary)

    def measure(self, agent: str, priority: float, experiment: Experiment,
                hardware: str | None = None) -> tuple[str, str, float | None, dict[str, Any]]:
        """Run an experiment's commit once on a slot (of `hardware` class, if given): (status, reason, metric,
        summary), status `ok` when it produced a metric."""
        slot = self.scheduler.acquire(agent, priority, cancel=self._stop, hardware=hardware)
        if slot is None:
            return "interrupted", "stopped by Ctrl-C before it ran", None, {}
        started = time.monotonic()
        try:
            checkout = self.program.checkout_for_run(slot.name, experiment.commit)
            invalid = check_protected(checkout, self.ledger.program()["protected_hashes"])
            if invalid:
                return "invalid", invalid, None, {}
            self.ledger.set_slot(experiment.id, slot.name, slot.hardware())
            self.on_event("experiment_started", {"experiment": experiment, "slot": slot.name})
            result = run_command(self.task, checkout, Path(experiment.log_path), seed=experiment.seed, slot=slot,
                                 on_start=lambda pid: self.ledger.set_pid(experiment.id, pid), cancel=self._stop)
        finally:
            self.scheduler.release(slot, agent, time.monotonic() - started)
        return result.status, result.reason, result.metric, result.summary

    def _finish(self, member: _Member, experiment: Experiment, status: str, reason: str,
                metric: float | None, summary: dict[str, Any]) -> Experiment:
        with member.lock:
            head = experiment.commit if status == "keep" else self.ledger.agent(member.name)["head_commit"]
            self.ledger.finish_experiment(experiment.id, status, agent_head=head, reason=reason, metric=metric,
                                          summary=summary)
            member.git.reset_hard(head)  # keep moves the agent's branch; anything else leaves it
            done = self.ledger.experiment(experiment.id)
            member.agent.observe(member.ctx, done)
        self.written(done)
        for process in self.processes:
            process.on_experiment()
        if self.merger is not None and (self._merge_process or done.proposal.get("merge_of")):
            self._merge(member, done)
        if done.proposal.get("assignment") and self.post is not None:
            report_assignment(self.post, self.ledger, done, self.task.metric)
        return done

    def written(self, done: Experiment) -> None:
        """A run was recorded: rewrite results.tsv and tell the display."""
        with self._lock:
            self.program.write_results()
        self.on_event("experiment_finished", {"experiment": done})

    def _incumbent(self, member: _Member, experiment: Experiment) -> Callable[[], str]:
        """What a candidate of `member` must beat, asked at decision time: the commit its branch stands at
        (or, for a merge re-run, the program branch's)."""
        def commit() -> str:
            if experiment.proposal.get("merge_of"):
                return self.git_main()
            return self.ledger.agent(member.name)["head_commit"]
        return commit

    def _adopt_program(self, member: _Member) -> None:
        """Move the agent onto the program branch when what it publishes beats the agent's own head."""
        if self.merger is None or not member.role.adopt_program:
            return
        main = self.merger.worth_adopting(self.ledger.agent(member.name)["head_commit"])
        if main is not None:
            self.ledger.set_agent_head(member.name, main)
            member.git.reset_hard(main)
            self.ledger.log_event("adopted_program", agent=member.name, commit=main, metric=self.merger.program_best())

    def _merge(self, member: _Member, done: Experiment, by: str = "merge") -> str:
        """Merge a kept experiment into the program branch if it beats the program's best; say what happened."""
        source = done.proposal.get("merge_of")
        if source is not None:
            accepted = done.status == "keep" and self.merger.accept_rerun(done, source, done.proposal["merge_by"])
            return "merged after the re-run" if accepted else "not merged: the re-run did not beat the program's best"
        if not self.merger.is_candidate(done):
            return f"not merged: #{done.id} does not beat the program's best ({self.merger.program_best()})"
        if self.evidence.verify_runs:
            reproduced = self.evidence.verify(done, member.role.name)
            if not reproduced:
                return "not merged: " + ("no experiment budget left to verify it" if reproduced is None
                                         else "it did not reproduce with fresh seeds")
            if not self.merger.is_candidate(done):  # its mean now includes the fresh runs
                return f"not merged: with the fresh runs #{done.id} no longer beats the program's best"
        before = len(self.ledger.merges())
        merged = self.merger.try_merge(done, by)
        if merged is None:
            return "merged" if len(self.ledger.merges()) > before else "not merged: conflict or nothing new"
        if self._budget is None or not self._budget.reserve():
            return "not merged: the clean merge needs a re-run and the experiment budget is spent"
        rerun = None
        try:  # the clean merge of a moved branch is untested: run it before it can merge
            main = self.git_main()
            rerun = self.ledger.start_experiment(
                member.name, main, merged, diff=member.git.diff(main, merged),
                description=f"merge #{done.id} onto main",
                proposal={"merge_of": done.id, "merge_by": by}, seed=self.task.seed, slot="", hardware="",
                hypothesis="the kept change still wins on top of the moved program branch",
                log_dir=self.program.logs_dir, kind="merge", tree=member.git.tree_of(merged))
            member.git("update-ref", f"refs/experiments/{rerun.id}", merged)
            rerun = self._run_on_a_slot(member, rerun, None)
            with self._lock:
                self._report.ran.append(rerun)
        finally:
            self._budget.settle(counted=rerun is not None and rerun.status != "interrupted")
        return f"re-run as #{rerun.id} on top of the moved program branch: " + \
            ("merged" if rerun.status == "keep" and self.ledger.merges()[-1]["experiment_id"] == rerun.id
             else "not merged")

    def _merge_on_request(self, member: _Member, experiment_id: int) -> str:
        """The `merge` tool of a role allowed to merge."""
        try:
            experiment = self.ledger.experiment(int(experiment_id))
        except Exception:
            return f"no experiment #{experiment_id}"
        if experiment.status != "keep":
            return f"not merged: #{experiment.id} was not kept ({experiment.status})"
        owner = self._members_by_name.get(experiment.agent)
        if owner is None:
            return f"not merged: #{experiment.id} belongs to {experiment.agent}, who is not in this org"
        return self._merge(owner, experiment, by=member.name)

    def git_main(self) -> str:
        return self.program.git.head_of(PROGRAM_BRANCH)

    def _pause(self, member: _Member, err: Exception, report: RunReport,
               experiment: Experiment | None = None) -> None:
        reason = f"{type(err).__name__}: {err}"
        member.paused = True
        with member.lock:
            if experiment is not None and self.ledger.experiment(experiment.id).status == "running":
                head = self.ledger.agent(member.name)["head_commit"]
                self.ledger.finish_experiment(experiment.id, "crash", agent_head=head,
                                              reason=f"the lab failed: {reason}")
            member.git.reset_hard(self.ledger.agent(member.name)["head_commit"])
        self.ledger.log_event("agent_paused", agent=member.name, reason=reason, traceback=traceback.format_exc())
        with self._lock:
            report.paused[member.name] = reason
        self.on_event("agent_paused", {"agent": member.name, "reason": reason})

    # interruption and recovery ---------------------------------------------------------
    def _reset_worktrees(self, members: list[_Member]) -> None:
        for member in members:
            member.git.reset_hard(self.ledger.agent(member.name)["head_commit"])
        self.ledger.log_event("interrupted")

    def recover(self) -> list[Experiment]:
        """Settle what a run that died left behind; return the experiments recorded as interrupted."""
        settled = []
        for experiment in self.ledger.experiments(status="running"):
            agent = self.ledger.agent(experiment.agent)
            if experiment.pid and _is_our_process(experiment.pid, self.program.state_dir):
                kill_group(experiment.pid)
            self.ledger.finish_experiment(experiment.id, "interrupted", agent_head=experiment.parent_commit,
                                          reason="the run process stopped before this experiment finished")
            settled.append(experiment)
        for agent in self.ledger.agents():
            if agent["worktree"] and Path(agent["worktree"], ".git").exists():
                git = Git(Path(agent["worktree"]))
                git.remove_stale_lock()  # we hold the run lock: no other git of ours is running here
                git.reset_hard(agent["head_commit"])
        if settled:
            self.ledger.log_event("recovered", interrupted=[e.id for e in settled])
            self.program.write_results()
        return settled

    # helpers --------------------------------------------------------------------------
    def _members(self) -> list[_Member]:
        """Every agent of the org, with its worktree and backend; a backend that cannot start fails here."""
        members = []
        for index, (name, role) in enumerate(self.org.agent_names()):
            worktree = self.program.ensure_agent(name, role.name, role.backend)
            self.post.worktrees[name] = worktree
            ctx = AgentContext(name, self.task, worktree, self.program.agent_dir(name), self.ledger, role=role,
                               stop=self._stop, post=self.post)
            agent = make_agent(role, ctx, index=index + self.seed_offset)
            if not role.submits and not hasattr(agent, "act"):
                where = " (it leads in the virtual lab: researchorg bench)" if role.backend == "simulated" else ""
                raise ConfigError(f"roles.{role.name}: submits = false makes it a lead, and the {role.backend!r} "
                                  f"backend cannot lead in the real lab{where}; use an LLM backend")
            members.append(_Member(name, role, ctx, Git(worktree), agent))
            if role.merges:
                ctx.merge = lambda experiment_id, m=members[-1]: self._merge_on_request(m, experiment_id)
        for member in members:
            self.post.mirror(member.name)
            self._members_by_name[member.name] = member
        return members

    def _write_files(self, worktree: Path, files: dict[str, str]) -> str | None:
        """Write a proposal's files; a path outside the worktree is refused (and the experiment invalid)."""
        for path, content in files.items():
            target = (worktree / path).resolve()
            if not target.is_relative_to(worktree.resolve()):
                return f"proposal writes {path}, outside the worktree"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_text() != content:
                target.write_text(content)
        return None


def _commit_message(agent: str, description: str, hypothesis: str) -> str:
    body = f"\n\n{hypothesis}" if hypothesis else ""
    return f"{description}{body}\n\nagent: {agent}"


def _is_our_process(pid: int, state_dir: Path) -> bool:
    """Whether `pid` still runs in one of this program's checkouts (and is not a recycled pid)."""
    try:
        return Path(f"/proc/{pid}/cwd").resolve().is_relative_to(state_dir.resolve())
    except OSError:
        return False


@contextmanager
def _no_sigint() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
