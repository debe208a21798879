"""Messages between agents, processes and people: stored in the ledger, mirrored as inboxes, delivered to agents.

Every message lands in the ledger (who, to whom, what kind, about which
experiment, and structured data such as the experiments a digest lists). Each
agent with a worktree also gets its latest messages written to
`.researchorg/inbox.md` there (git-ignored, never committed), so a coding CLI
working there reads them with its own tools, and a person can too. Then the
engine delivers it (`deliver`): an agent that listens hears it, a lead learns
it has news, a junior its assignment. An agent working in a thread may send:
the delivery then happens in the engine's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from researchorg.ledger import Ledger, Message
from researchorg.ledger.export import write_atomic

INBOX = Path(".researchorg") / "inbox.md"
INBOX_MESSAGES = 30  # the inbox shows this many recent messages: enough context, never a growing file


class PostOffice:
    def __init__(self, ledger: Ledger, deliver: Callable[[Message], None]):
        self.ledger = ledger
        self.worktrees: dict[str, Path | None] = {}  # every agent that can receive, and its worktree if it has one
        self._deliver = deliver
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliveries happen in `loop`'s thread, whichever thread sends."""
        self.loop, self._loop_thread = loop, threading.get_ident()

    def send(self, sender: str, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> int:
        """Send to one agent, or to everyone when `recipient` is None; return the message's id."""
        if recipient is not None and recipient not in self.worktrees:
            raise ValueError(f"no agent named {recipient!r} (agents: {', '.join(self.worktrees)})")
        message = self.ledger.send(sender, recipient, kind, body, experiment_id, data)
        for agent in self.worktrees if recipient is None else {recipient, sender} & set(self.worktrees):
            self.mirror(agent)
        if self.loop is None or threading.get_ident() == self._loop_thread:
            self._deliver(message)
        else:
            self.loop.call_soon_threadsafe(self._deliver, message)
        return message.id

    def inbox(self, agent: str, limit: int = INBOX_MESSAGES) -> list[Message]:
        return self.ledger.messages(for_agent=agent, limit=limit)

    def mirror(self, agent: str) -> None:
        worktree = self.worktrees.get(agent)
        if worktree is None:
            return
        path = worktree / INBOX
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            write_atomic(path, render_inbox(agent, self.inbox(agent)))


def render_inbox(agent: str, messages: list[Message]) -> str:
    lines = [f"# Inbox of {agent}", "", f"The {INBOX_MESSAGES} latest messages, oldest first. "
             "Written by researchorg; edits here are lost.", ""]
    for m in messages:
        to = "everyone" if m.recipient is None else ("you" if m.recipient == agent else m.recipient)
        about = f", about experiment #{m.experiment_id}" if m.experiment_id else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.at))
        lines += [f"## #{m.id} {m.kind} from {m.sender} to {to}{about} ({stamp})", "", m.body.strip(), ""]
    return "\n".join(lines)
