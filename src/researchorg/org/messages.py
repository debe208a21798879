"""Messages between agents, processes and people: stored in the ledger, mirrored as markdown inboxes.

Every message lands in the ledger (who, to whom, what kind, about which
experiment). Each agent's latest messages are also written to
`.researchorg/inbox.md` in its worktree (git-ignored, never committed), so a
coding CLI working there reads them with its own tools, and a person can too.
`researchorg messages DIR` shows them all.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from researchorg.ledger import Ledger
from researchorg.ledger.export import write_atomic

INBOX = Path(".researchorg") / "inbox.md"
INBOX_MESSAGES = 30  # the inbox shows this many recent messages: enough context, never a growing file


class PostOffice:
    """Sends messages and keeps every agent's inbox file up to date; thread-safe."""

    def __init__(self, ledger: Ledger, worktrees: dict[str, Path]):
        self.ledger = ledger
        self.worktrees = dict(worktrees)
        self._lock = threading.Lock()

    def send(self, sender: str, recipient: str | None, kind: str, body: str,
             experiment_id: int | None = None) -> int:
        """Send to one agent, or to everyone when `recipient` is None."""
        if recipient is not None and recipient not in self.worktrees:
            raise ValueError(f"no agent named {recipient!r} (agents: {', '.join(self.worktrees)})")
        message_id = self.ledger.send(sender, recipient, kind, body, experiment_id)
        for agent in self.worktrees if recipient is None else {recipient, sender} & set(self.worktrees):
            self.mirror(agent)
        return message_id

    def inbox(self, agent: str, limit: int = INBOX_MESSAGES) -> list[dict[str, Any]]:
        return self.ledger.messages(for_agent=agent, limit=limit)

    def mirror(self, agent: str) -> None:
        path = self.worktrees[agent] / INBOX
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            write_atomic(path, render_inbox(agent, self.inbox(agent)))


def render_inbox(agent: str, messages: list[dict[str, Any]]) -> str:
    lines = [f"# Inbox of {agent}", "", f"The {INBOX_MESSAGES} latest messages, oldest first. "
             "Written by researchorg; edits here are lost.", ""]
    for m in messages:
        to = "everyone" if m["recipient"] is None else ("you" if m["recipient"] == agent else m["recipient"])
        about = f", about experiment #{m['experiment_id']}" if m["experiment_id"] else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["at"]))
        lines += [f"## #{m['id']} {m['kind']} from {m['sender']} to {to}{about} ({stamp})", "", m["body"].strip(), ""]
    return "\n".join(lines)
