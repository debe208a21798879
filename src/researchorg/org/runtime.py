"""The runtime: the organization's agents take turns proposing experiments, and the lab runs them.

One experiment, from any agent, always takes the same path:

    propose -> write the editable files -> commit on the agent's branch
    -> record as `running` -> guard (invalid?) -> run -> decide -> record
    -> keep advances the branch / anything else resets it -> tell the agent

The ledger is the truth about where each agent's branch stands. A run that
starts after Ctrl-C or `kill -9` first settles what the last one left: an
experiment still marked `running` becomes `interrupted` (its process group is
killed if it survived), and every worktree is reset to its recorded head. So no
experiment is lost and none is recorded twice.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.agents import Agent, AgentContext, make_agent
from researchorg.errors import LabError
from researchorg.lab.git import Git
from researchorg.lab.guard import check_experiment
from researchorg.lab.program import Program
from researchorg.lab.runner import Slot, kill_group, run_command
from researchorg.ledger import Experiment
from researchorg.rigor.acceptance import POLICIES

EventHandler = Callable[[str, dict[str, Any]], None]


@dataclass
class Limits:
    max_experiments: int | None = None  # total recorded in the program (interrupted ones not counted)
    max_hours: float | None = None  # wall time of this invocation


@dataclass
class RunReport:
    ran: list[Experiment] = field(default_factory=list)
    stopped_by: str = "done"  # done | max_experiments | max_hours | interrupted | agents_done


@dataclass
class _Member:
    name: str
    role: str
    cap: int | None
    ctx: AgentContext
    git: Git
    agent: Agent | None = None
    done: bool = False


class Runtime:
    """Runs an organization on a program until a limit is reached, Ctrl-C, or the agents have nothing left."""

    def __init__(self, program: Program, slot: Slot | None = None, on_event: EventHandler | None = None):
        self.program = program
        self.task = program.task
        self.org = program.org()
        self.ledger = program.ledger
        self.slot = slot or Slot("cpu0", threads=os.cpu_count() or 1)
        self.on_event = on_event or (lambda kind, data: None)
        self.policy = POLICIES[self.org.policy]
        self._in_flight: Experiment | None = None

    # the loop ---------------------------------------------------------------------
    def run(self, limits: Limits) -> RunReport:
        with self._lock():
            self.recover()
            self.program.check_requirements()
            members = self._members()
            report = RunReport()
            deadline = time.monotonic() + limits.max_hours * 3600 if limits.max_hours else None
            self.ledger.log_event("run_started", max_experiments=limits.max_experiments, max_hours=limits.max_hours)
            try:
                for member in self._turns(members):
                    if limits.max_experiments is not None and self._recorded() >= limits.max_experiments:
                        report.stopped_by = "max_experiments"
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        report.stopped_by = "max_hours"
                        break
                    experiment = self._one_experiment(member)
                    if experiment is not None:
                        report.ran.append(experiment)
                else:
                    report.stopped_by = "agents_done"
            except KeyboardInterrupt:
                with _no_sigint():
                    self._settle_interrupt(members, report)
                report.stopped_by = "interrupted"
            self.ledger.log_event("run_stopped", stopped_by=report.stopped_by, experiments=len(report.ran))
            return report

    def _turns(self, members: list[_Member]) -> Iterator[_Member]:
        """Round-robin over the agents that still have work and are under their cap."""
        while True:
            active = [m for m in members if not m.done and (m.cap is None or self._count(m.name) < m.cap)]
            if not active:
                return
            yield from active

    def _one_experiment(self, member: _Member) -> Experiment | None:
        if member.agent is None:
            member.agent = make_agent(self.org.roles[[r.name for r in self.org.roles].index(member.role)],
                                      member.ctx, index=self._agent_index(member.name))
        proposal = member.agent.propose(member.ctx)
        if proposal is None:
            member.done = True
            return None
        parent = self.ledger.agent(member.name)["head_commit"]
        invalid = self._write_files(member.ctx.worktree, proposal.files)
        commit = member.git.commit_all(_commit_message(member.name, proposal.description, proposal.hypothesis))
        experiment = self.ledger.start_experiment(
            member.name, parent, commit, diff=member.git.diff(parent, commit), description=proposal.description,
            hypothesis=proposal.hypothesis, proposal=proposal.data, seed=self.task.seed, slot=self.slot.name,
            hardware=self.slot.hardware(), log_dir=self.program.logs_dir)
        self._in_flight = experiment
        member.git("update-ref", f"refs/experiments/{experiment.id}", commit)  # survives the reset and git gc
        self.on_event("experiment_started", {"experiment": experiment})
        invalid = invalid or check_experiment(self.task, member.git, parent, commit, member.ctx.worktree,
                                              self.ledger.program()["protected_hashes"])
        if invalid:
            outcome = ("invalid", invalid, None, {})
        else:
            result = run_command(self.task, member.ctx.worktree, Path(experiment.log_path), seed=self.task.seed,
                                 slot=self.slot, on_start=lambda pid: self.ledger.set_pid(experiment.id, pid))
            outcome = (result.status, result.reason, result.metric, result.summary)
        return self._finish(member, experiment, *outcome)

    def _finish(self, member: _Member, experiment: Experiment, status: str, reason: str,
                metric: float | None, summary: dict[str, Any]) -> Experiment:
        if status == "ok":
            kept = self.ledger.experiments(agent=member.name, status="keep")
            decision = self.policy(self.task.metric, metric, kept[-1].metric if kept else None)
            status = "keep" if decision.keep else "discard"
            summary = {**summary, "decision": decision.evidence}
        head = experiment.commit if status == "keep" else experiment.parent_commit
        self.ledger.finish_experiment(experiment.id, status, agent_head=head, reason=reason, metric=metric,
                                      summary=summary)
        self._in_flight = None  # recorded: from here on, a Ctrl-C only needs the worktree reset
        if head != experiment.commit:
            member.git.reset_hard(head)
        done = self.ledger.experiment(experiment.id)
        member.agent.observe(member.ctx, done)
        self.program.write_results()
        self.on_event("experiment_finished", {"experiment": done})
        return done

    # interruption and recovery ---------------------------------------------------------
    def _settle_interrupt(self, members: list[_Member], report: RunReport) -> None:
        """Ctrl-C: record the experiment in flight as interrupted and put every worktree at its head."""
        if self._in_flight is not None:
            member = next(m for m in members if m.name == self._in_flight.agent)
            report.ran.append(self._finish(member, self._in_flight, "interrupted", "stopped by Ctrl-C", None, {}))
        for member in members:
            member.git.reset_hard(self.ledger.agent(member.name)["head_commit"])
        self.ledger.log_event("interrupted")

    def recover(self) -> list[Experiment]:
        """Settle what a run that died left behind; return the experiments recorded as interrupted."""
        settled = []
        for experiment in self.ledger.experiments(status="running"):
            agent = self.ledger.agent(experiment.agent)
            if experiment.pid and _is_our_process(experiment.pid, Path(agent["worktree"])):
                kill_group(experiment.pid)
            self.ledger.finish_experiment(experiment.id, "interrupted", agent_head=experiment.parent_commit,
                                          reason="the run process stopped before this experiment finished")
            settled.append(experiment)
        for agent in self.ledger.agents():
            if Path(agent["worktree"], ".git").exists():
                git = Git(Path(agent["worktree"]))
                git.remove_stale_lock()  # we hold the run lock: no other git of ours is running here
                git.reset_hard(agent["head_commit"])
        if settled:
            self.ledger.log_event("recovered", interrupted=[e.id for e in settled])
            self.program.write_results()
        return settled

    # helpers --------------------------------------------------------------------------
    def _members(self) -> list[_Member]:
        members = []
        for name, role in self.org.agent_names():
            worktree = self.program.ensure_agent(name, role.name, role.backend)
            ctx = AgentContext(name, self.task, worktree, self.program.agent_dir(name), self.ledger)
            members.append(_Member(name, role.name, role.max_experiments, ctx, Git(worktree)))
        return members

    def _agent_index(self, name: str) -> int:
        return [n for n, _ in self.org.agent_names()].index(name)

    def _recorded(self) -> int:
        return self.ledger.count(exclude=("interrupted",))

    def _count(self, agent: str) -> int:
        return self.ledger.count(agent=agent, exclude=("interrupted",))

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

    @contextmanager
    def _lock(self) -> Iterator[None]:
        path = self.program.state_dir / "run.lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise LabError(f"another `researchorg run` is working on {self.program.root} "
                               f"(pid {handle.read().strip() or '?'})") from None
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield


def _commit_message(agent: str, description: str, hypothesis: str) -> str:
    body = f"\n\n{hypothesis}" if hypothesis else ""
    return f"{description}{body}\n\nagent: {agent}"


def _is_our_process(pid: int, worktree: Path) -> bool:
    try:
        return Path(f"/proc/{pid}/cwd").resolve() == worktree.resolve()
    except OSError:
        return False


@contextmanager
def _no_sigint() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
