"""Coordination between roles: the team, assignments from a lead to its researchers, and their reports back.

A lead (a role with `submits = false`, e.g. a chief scientist) sends messages
of kind `assignment`. A researcher whose role `waits_for_assignment` takes the
oldest assignment it has not yet answered before each proposal; while it has
none it waits, and its lead learns it is idle (`AgentContext.idle`). The
experiment records which assignment it answers and who gave it, and when it
finishes the lab reports the result to whoever assigned it. Which assignments
are answered is read from the ledger at the start, so a restarted run does not
hand the same one out twice.

The team knows who leads whom (each researcher reports to one lead, another
one if its lead is paused), wakes a lead when it has news (a message from
someone else, a researcher of its becoming idle), and delivers every message:
an assignment to its researcher's queue, and to every agent that listens.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from researchorg.agents.base import Agent, AgentContext
from researchorg.config import RoleSpec
from researchorg.engine.messages import PostOffice
from researchorg.errors import ConfigError
from researchorg.ledger import Experiment, Ledger, Message
from researchorg.task.spec import MetricSpec


@dataclass
class Member:
    """One agent of the org, as the engine drives it."""

    name: str
    role: RoleSpec
    ctx: AgentContext
    agent: Agent
    blocking: bool  # its calls take real time: they run in a thread
    paused: bool = False
    lead: str | None = None  # for a researcher that waits for assignments: the lead it reports to
    waiting: bool = False  # waiting for an assignment
    mail: int = 0  # news for a lead: messages from others, researchers becoming idle
    acting: bool = False  # a lead in its turn
    released: bool = False  # a researcher its lead had nothing more for, while nothing else could happen
    done: bool = False  # its loop ended
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    workspace: asyncio.Lock = field(default_factory=asyncio.Lock)  # its worktree: proposing, or a decision


class Assignments:
    """The assignments each researcher still has to answer, oldest first."""

    def __init__(self, ledger: Ledger, researchers: list[str]):
        self.pending: dict[str, deque[Message]] = {name: deque() for name in researchers}
        if not researchers:
            return
        answered = {e.proposal.get("assignment") for e in ledger.experiments(kind="proposal")
                    if e.status != "interrupted"}
        for message in ledger.messages(kind="assignment"):
            if message.recipient in self.pending and message.id not in answered:
                self.pending[message.recipient].append(message)

    def arrived(self, message: Message) -> bool:
        """Take note of a new assignment; True if it is for a researcher that waits for one."""
        if message.kind == "assignment" and message.recipient in self.pending:
            self.pending[message.recipient].append(message)
            return True
        return False

    def take(self, researcher: str) -> Message | None:
        queue = self.pending[researcher]
        return queue.popleft() if queue else None

    def has(self, researcher: str) -> bool:
        return bool(self.pending[researcher])


class Team:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.assignments: Assignments | None = None

    def add(self, member: Member) -> None:
        self.members[member.name] = member

    def start(self, ledger: Ledger) -> None:
        """Every member is in: load the assignments still to answer."""
        researchers = [m.name for m in self.members.values() if m.role.waits_for_assignment]
        if researchers and all(m.role.submits for m in self.members.values()):
            raise ConfigError("roles wait for assignments but no role assigns them (set submits = false on a lead)")
        self.assignments = Assignments(ledger, researchers)

    def take_assignment(self, member: Member) -> bool:
        """Give a researcher its oldest assignment, if it has one."""
        assignment = self.assignments.take(member.name)
        if assignment is None:
            return False
        member.ctx.assignment, member.waiting = assignment, False
        return True

    def give_back(self, member: Member) -> None:
        """A researcher that got an assignment but no budget to run it: it stays the oldest to answer."""
        self.assignments.pending[member.name].appendleft(member.ctx.assignment)
        member.ctx.assignment = None

    def wait_for_lead(self, member: Member) -> bool:
        """A researcher waits for an assignment: its lead learns it is idle (a new lead too, when its own was
        paused). False when no lead is left."""
        before = member.lead
        lead = self.lead_of(member)
        if lead is None:
            return False
        if not member.waiting or lead.name != before:
            member.waiting = True
            self.news(lead)
        return True

    def release_idle(self, lead: Member) -> None:
        """The lead gave its idle researchers nothing while nothing else could bring news: they stop."""
        for name in self.idle(lead.name):
            self.members[name].released = True
            self.members[name].wake.set()

    def wake_leads(self) -> None:
        for member in self.members.values():
            if not member.role.submits:
                member.wake.set()

    def lead_of(self, member: Member) -> Member | None:
        """A researcher's lead; another one if it was paused; None when no lead is left."""
        leads = [m for m in self.members.values() if not m.role.submits and not m.paused]
        if not leads:
            return None
        if member.lead not in {m.name for m in leads}:
            member.lead = leads[list(self.members).index(member.name) % len(leads)].name
        return self.members[member.lead]

    def idle(self, lead: str) -> list[str]:
        """The researchers of `lead` waiting for an assignment, in the org's order."""
        return [m.name for m in self.members.values()
                if m.waiting and m.lead == lead and not self.assignments.has(m.name)]

    def news(self, lead: Member) -> None:
        lead.mail += 1
        lead.wake.set()

    def wake_all(self) -> None:
        for member in self.members.values():
            member.wake.set()

    def delivered(self, message: Message) -> None:
        """A message was sent (in the engine's thread): an assignment reaches its researcher, news its lead,
        and agents that listen hear it."""
        if self.assignments is not None and self.assignments.arrived(message):
            self.members[message.recipient].wake.set()
        recipients = self.members.values() if message.recipient is None else \
            [self.members[message.recipient]] if message.recipient in self.members else []
        for member in recipients:
            if member.name == message.sender:
                continue
            if not member.role.submits:
                self.news(member)
            hear = getattr(member.agent, "hear", None)
            if hear is not None:
                hear(member.ctx, message)


def report_assignment(post: PostOffice, experiment: Experiment, metric: MetricSpec) -> None:
    """Tell the one who assigned the experiment how it went."""
    lead = experiment.proposal.get("assigned_by")
    if lead not in post.worktrees:
        return
    value = f"{metric.name} {experiment.metric:.6f}" if experiment.metric is not None else "no result"
    reason = f" ({experiment.reason.splitlines()[0]})" if experiment.reason else ""
    post.send(experiment.agent, lead, "report",
              f"Assignment #{experiment.proposal['assignment']} done as experiment #{experiment.id}: "
              f"{experiment.status}, {value}{reason}. {experiment.description}", experiment.id,
              {"assignment": experiment.proposal["assignment"], "status": experiment.status})
