"""The agent protocol: an agent proposes changes and observes their results.

Every backend, offline or LLM, produces the same thing, a `Proposal`: new
contents for editable files plus a description and a hypothesis. The lab
commits it, runs it and records it; the agent never runs anything itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from researchorg.config import RoleSpec
from researchorg.ledger import Experiment, Ledger
from researchorg.org.messages import PostOffice
from researchorg.task import TaskSpec


@dataclass
class Proposal:
    description: str
    hypothesis: str = ""
    files: dict[str, str] = field(default_factory=dict)  # editable path -> new content; empty: run as is
    data: dict[str, Any] = field(default_factory=dict)  # backend-specific, kept in the ledger


@dataclass
class AgentContext:
    """What an agent may look at: its task, its worktree (at its branch head) and the ledger."""

    name: str
    task: TaskSpec
    worktree: Path
    state_dir: Path  # a directory of the agent's own for persistent state
    ledger: Ledger
    role: RoleSpec | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set when the run is stopping
    post: PostOffice | None = None
    assignment: dict[str, Any] | None = None  # the assignment this proposal answers, if the role waits for one
    merge: Callable[[int], str] | None = None  # for roles allowed to merge: merge a kept experiment by id

    def send(self, recipient: str | None, kind: str, body: str, experiment_id: int | None = None) -> int:
        """Message one agent, or everyone with `recipient` None."""
        if self.post is None:
            raise RuntimeError("messages need a running organization")
        return self.post.send(self.name, recipient, kind, body, experiment_id)

    def inbox(self) -> list[dict[str, Any]]:
        """The latest messages this agent received or sent, oldest first."""
        return self.post.inbox(self.name) if self.post is not None else []

    def think(self, seconds: float) -> None:
        """Wait `seconds` (simulated thinking), returning early when the run stops."""
        if seconds > 0:
            self.stop.wait(seconds)

    def read(self, path: str) -> str:
        return (self.worktree / path).read_text()

    def history(self) -> list[Experiment]:
        return self.ledger.experiments(agent=self.name)


class Agent(Protocol):
    def propose(self, ctx: AgentContext) -> Proposal | None:
        """The next experiment, or None when the agent has nothing more to try."""

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """The finished experiment of the last proposal (any status)."""

    # A lead role (submits = false) implements `act(ctx) -> None` instead of proposing: it is called at the
    # start and whenever an experiment finishes or a message arrives, and works through messages and merges.
