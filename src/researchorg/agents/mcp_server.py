"""The lab's tools over MCP: `researchorg mcp DIR --agent NAME`, on stdio, through the official `mcp` SDK.

It serves one agent's tools to any MCP client: the same `Toolbox` an API agent
calls (one definition of each tool, its JSON schema and its code), bound to
the agent's name and its role's limits (`tools`, `submits`, skills). Through it
a client reads the files of the agent's worktree and edits the editable ones,
reads the results, the evidence of a decision (`experiment`), the best diff,
the noise floor and its messages, sends messages, loads its skills, and
submits: a submission goes to the ledger, where the running org takes it
(an `interactive` agent at once; a `claude-code` or `codex` agent when its
CLI call ends, as the description of the change it made), so the lab, not the
client, commits and runs the change.

It runs beside the org, not inside it: messages it sends reach their
recipients through the ledger (their next briefing), and a lead's `merge` is
not served (it needs the running engine).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from researchorg.agents.base import AgentContext
from researchorg.agents.tools import Submission, Toolbox, ToolError
from researchorg.errors import LabError
from researchorg.ledger import Ledger, Message
from researchorg.world.program import Program

TAKES_SUBMISSIONS = ("interactive", "claude-code", "codex")  # backends whose agents take a submitted change
INBOX_MESSAGES = 30


class LedgerPost:
    """Messages through the ledger, for a process beside the running org."""

    def __init__(self, ledger: Ledger, agents: list[str]):
        self.ledger = ledger
        self.worktrees: dict[str, Any] = {name: None for name in agents}

    def send(self, sender: str, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> int:
        if recipient is not None and recipient not in self.worktrees:
            raise ValueError(f"no agent named {recipient!r} (agents: {', '.join(self.worktrees)})")
        return self.ledger.send(sender, recipient, kind, body, experiment_id, data).id

    def inbox(self, agent: str) -> list[Message]:
        return self.ledger.messages(for_agent=agent, limit=INBOX_MESSAGES)


def agent_toolbox(program: Program, agent: str) -> Toolbox:
    """The toolbox of `agent` of `program`, its submissions going to the ledger."""
    roles = dict(program.org().agent_names())
    if agent not in roles:
        raise LabError(f"no agent {agent!r} in {program.root / 'org.toml'} (agents: {', '.join(roles)})")
    role = roles[agent]
    worktree = program.ensure_agent(agent, role.name, role.backend) if role.submits else None
    ctx = AgentContext(agent, program.task, worktree, program.agent_dir(agent), program.ledger, role=role,
                       post=LedgerPost(program.ledger, list(roles)))

    def submitted(submission: Submission) -> str:
        if role.backend not in TAKES_SUBMISSIONS:
            raise ToolError(f"agent {agent} is run by the {role.backend} backend, which proposes on its own; "
                            f"submissions are taken from {', '.join(TAKES_SUBMISSIONS)} agents")
        number = program.ledger.add_submission(agent, submission.description, submission.hypothesis)
        running = "" if program.run_active() else " (no `researchorg run` works on the program now: it is taken " \
                                                  "when one starts)"
        return f"submitted as submission {number}: the lab commits and runs your editable files{running}"

    return Toolbox(ctx, on_submit=submitted)


def serve(program: Program, agent: str) -> None:
    """Serve `agent`'s tools on stdin/stdout until the client closes them."""
    box = agent_toolbox(program, agent)
    one_at_a_time = anyio.CapacityLimiter(1)  # a toolbox works on one worktree: its calls run in order

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name=s["name"], description=s["description"],
                                                       input_schema=s["parameters"]) for s in box.schemas()])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = await anyio.to_thread.run_sync(box.call, params.name, params.arguments or {}, limiter=one_at_a_time)
        return types.CallToolResult(content=[types.TextContent(text=text)], is_error=text.startswith("error:"))

    server = Server("researchorg", version=version("researchorg"), on_list_tools=list_tools, on_call_tool=call_tool,
                    instructions=f"The research lab of {Path(program.root).name}, as agent {agent}: read results "
                                 "and messages, edit the editable files, then `submit`; the lab runs it.")

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
