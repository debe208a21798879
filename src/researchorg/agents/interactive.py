"""The `interactive` backend: a person (or a CLI they drive) works in the agent's worktree.

Nothing is proposed automatically: the agent waits until someone runs
`researchorg submit` in its worktree (from a pane of `researchorg grid`, say).
The submission then takes the same path as every other experiment: commit,
guard, scheduler, slot, ledger, decision. `command` names the coding CLI the
grid opens in the agent's pane (default: claude).
"""

from __future__ import annotations

from researchorg.agents.base import AgentContext, Proposal
from researchorg.ledger import Experiment

POLL_SECONDS = 0.2


class InteractiveAgent:
    def propose(self, ctx: AgentContext) -> Proposal | None:
        while not ctx.stop.is_set():
            submission = ctx.ledger.take_submission(ctx.name)
            if submission is not None:
                return Proposal(submission.description, submission.hypothesis,
                                data={"backend": "interactive", "submission": submission.id})
            ctx.stop.wait(POLL_SECONDS)
        return None

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """The person reads the result where they submitted it."""
