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
from researchorg.ledger import Experiment, Ledger, Message
from researchorg.task import TaskSpec


class Messenger(Protocol):
    """How an agent reaches the others: the engine's post office."""

    worktrees: dict[str, Any]

    def send(self, sender: str, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> int: ...

    def inbox(self, agent: str) -> list[Message]: ...


@dataclass
class Proposal:
    description: str
    hypothesis: str = ""
    files: dict[str, str] = field(default_factory=dict)  # editable path -> new content; empty: run as is
    data: dict[str, Any] = field(default_factory=dict)  # backend-specific, kept in the ledger


@dataclass
class AgentContext:
    """What an agent may look at: its task, its files (at its branch head), the program branch and the ledger.

    `worktree` is the agent's git worktree in the real lab (None in simulation, where `read` still works)."""

    name: str
    task: TaskSpec
    worktree: Path | None
    state_dir: Path | None  # a directory of the agent's own for persistent state (None in simulation)
    ledger: Ledger
    role: RoleSpec | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set when the run is stopping
    post: Messenger | None = None
    assignment: Message | None = None  # the assignment this proposal answers, if the role waits for one
    merge: Callable[[int], str] | None = None  # for roles allowed to merge: merge a kept experiment by id
    files: Callable[..., str] | None = None  # (path, commit=None) -> text, from the world
    main: Callable[[], str] | None = None  # the program branch's head
    idle: Callable[[], list[str]] | None = None  # for a lead: its researchers waiting for an assignment

    def send(self, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> int:
        """Message one agent, or everyone with `recipient` None."""
        if self.post is None:
            raise RuntimeError("messages need a running organization")
        return self.post.send(self.name, recipient, kind, body, experiment_id, data)

    def inbox(self) -> list[Message]:
        """The latest messages this agent received or sent, oldest first."""
        return self.post.inbox(self.name) if self.post is not None else []

    def read(self, path: str) -> str:
        """A file as it stands at the agent's head (its worktree in the real lab)."""
        if self.files is not None:
            return self.files(path)
        return (self.worktree / path).read_text()

    def read_main(self, path: str) -> str:
        """A file as it stands on the program branch."""
        return self.files(path, self.main())

    def history(self) -> list[Experiment]:
        return self.ledger.experiments(agent=self.name)


class Agent(Protocol):
    """`blocking = False` on an agent that answers at once (the engine then calls it in its loop, and it can run
    in virtual time); any other agent is called in a thread of its own. An agent may also define
    `hear(ctx, message)`: it is called with every message it receives."""

    def propose(self, ctx: AgentContext) -> Proposal | None:
        """The next experiment, or None when the agent has nothing more to try."""

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """The finished experiment of the last proposal (any status)."""

    # A lead role (submits = false) implements `act(ctx) -> None` instead of proposing: it is called at the
    # start and whenever an experiment finishes or a message arrives, and works through messages and merges.
