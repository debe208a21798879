"""Coordination between roles: assignments from a lead to its researchers, and their reports back.

A lead (a role with `submits = false`, e.g. a chief scientist) sends messages
of kind `assignment`. A researcher whose role `waits_for_assignment` takes the
oldest assignment it has not yet answered before each proposal; while it has
none it waits, and its lead learns it is idle (`AgentContext.idle`). The
experiment records which assignment it answers and who gave it, and when it
finishes the lab reports the result to whoever assigned it. Which assignments
are answered is read from the ledger at the start, so a restarted run does not
hand the same one out twice.
"""

from __future__ import annotations

from collections import deque

from researchorg.engine.messages import PostOffice
from researchorg.ledger import Experiment, Ledger, Message
from researchorg.task.spec import MetricSpec


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
