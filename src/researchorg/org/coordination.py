"""Coordination between roles: assignments from a lead to its researchers, and their reports back.

A lead (a role with `submits = false`, e.g. a chief scientist) sends messages
of kind `assignment`. A researcher whose role `waits_for_assignment` takes the
oldest assignment it has not yet worked on before each proposal; the
experiment records which assignment it answers, and when it finishes the lab
reports the result to whoever assigned it. Which assignments are done is read
from the ledger, so a restarted run does not hand the same one out twice.
"""

from __future__ import annotations

from typing import Any

from researchorg.ledger import Experiment, Ledger
from researchorg.org.messages import PostOffice
from researchorg.task.spec import MetricSpec


def next_assignment(ledger: Ledger, agent: str) -> dict[str, Any] | None:
    """The oldest assignment to `agent` that none of its experiments answered yet."""
    answered = {e.proposal.get("assignment") for e in ledger.experiments(agent=agent) if e.status != "interrupted"}
    for message in ledger.messages(for_agent=agent):
        if message["kind"] == "assignment" and message["recipient"] == agent and message["id"] not in answered:
            return message
    return None


def report_assignment(post: PostOffice, ledger: Ledger, experiment: Experiment, metric: MetricSpec) -> None:
    """Tell the one who assigned the experiment how it went."""
    assignment = next((m for m in ledger.messages() if m["id"] == experiment.proposal["assignment"]), None)
    if assignment is None or assignment["sender"] not in post.worktrees:
        return
    value = f"{metric.name} {experiment.metric:.6f}" if experiment.metric is not None else "no result"
    reason = f" ({experiment.reason.splitlines()[0]})" if experiment.reason else ""
    post.send(experiment.agent, assignment["sender"], "report",
              f"Assignment #{assignment['id']} done as experiment #{experiment.id}: {experiment.status}, "
              f"{value}{reason}. {experiment.description}", experiment.id)


