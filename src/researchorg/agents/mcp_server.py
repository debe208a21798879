"""The lab's tools over MCP, through the official `mcp` SDK: `researchorg mcp DIR --agent NAME` on stdio, and,
for each coding CLI the org runs, an endpoint on 127.0.0.1 (`HttpEndpoint`) named in the CLI's MCP config.

Either serves one agent's tools to an MCP client: the same `Toolbox` an API agent
calls (one definition of each tool, its JSON schema and its code), bound to
the agent's name and its role's limits (`tools`, `submits`, skills). Through it
a client reads the files of the agent's worktree and edits the editable ones,
reads the results, the evidence of a decision (`experiment`), the best diff,
the noise floor and its messages, sends messages, loads its skills, and
submits (a lead assigns, merges and says it is done instead): a submission
goes to the ledger, where the running org takes it (an `interactive` agent at
once; a `claude-code` or `codex` agent when its CLI call ends, as the
description of the change it made), so the lab, not the client, commits and
runs the change.

`researchorg mcp` runs beside the org, not inside it: messages it sends
reach their recipients through the ledger (their next briefing), and a lead's
`assign` and `merge` are not served (they need the running engine). The endpoint of a CLI in
the org serves the org's own toolbox of that agent (the running engine's
messages, and for a lead its `merge`, which runs in the engine's loop while
the tool call waits). A CLI runs in a sandbox that hides the ledger, so the
endpoint is its only way to the lab: streamable HTTP on loopback, on a port of its own,
at a path with a random secret that only the CLI's config names.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
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
from researchorg.world.protocol import PROGRAM_BRANCH

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
                       post=LedgerPost(program.ledger, list(roles)), files=program.read_at,
                       main=lambda: program.git.head_of(PROGRAM_BRANCH))

    return Toolbox(ctx, on_submit=to_ledger(program.ledger, agent, role.backend, program.run_active))


def to_ledger(ledger: Ledger, agent: str, backend: str,
              run_active: Callable[[], bool] | None = None) -> Callable[[Submission], str]:
    """Where `agent`'s submissions go: the ledger, where the running org takes them (`run_active()`: whether one
    runs, to say so when none does)."""

    def submitted(submission: Submission) -> str:
        if backend not in TAKES_SUBMISSIONS:
            raise ToolError(f"agent {agent} is run by the {backend} backend, which proposes on its own; "
                            f"submissions are taken from {', '.join(TAKES_SUBMISSIONS)} agents")
        number = ledger.add_submission(agent, submission.description, submission.hypothesis)
        running = "" if run_active is None or run_active() else \
            " (no `researchorg run` works on the program now: it is taken when one starts)"
        return f"submitted as submission {number}: the lab commits and runs your editable files{running}"

    return submitted


def lab_server(box: Toolbox, instructions: str) -> Server[Any]:
    """An MCP server of `box`'s tools: each listed with its JSON schema, each call run in a thread, one at a time
    (a toolbox works on one worktree); a tool's error is the call's error text."""
    one_at_a_time = anyio.CapacityLimiter(1)

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        schemas = await anyio.to_thread.run_sync(box.schemas, limiter=one_at_a_time)  # custom ones start processes
        return types.ListToolsResult(tools=[types.Tool(name=s["name"], description=s["description"],
                                                       input_schema=s["parameters"]) for s in schemas])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = await anyio.to_thread.run_sync(box.call, params.name, params.arguments or {}, limiter=one_at_a_time)
        return types.CallToolResult(content=[types.TextContent(text=text)], is_error=text.startswith("error:"))

    return Server("researchorg", version=version("researchorg"), on_list_tools=list_tools, on_call_tool=call_tool,
                  instructions=instructions)


def instructions(program_name: str, agent: str, lead: bool = False) -> str:
    if lead:
        return (f"The research lab of {program_name}, as its lead {agent}: read results and messages, `assign` "
                "experiments to researchers, `merge` what beats the program's best, then `done`.")
    return (f"The research lab of {program_name}, as agent {agent}: read results and messages, edit the editable "
            "files, then `submit`; the lab runs it.")


def serve(program: Program, agent: str) -> None:
    """Serve `agent`'s tools on stdin/stdout until the client closes them."""
    box = agent_toolbox(program, agent)
    lead = box.ctx.role is not None and not box.ctx.role.submits
    server = lab_server(box, instructions(Path(program.root).name, agent, lead=lead))

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)


class HttpEndpoint:
    """`box`'s tools over MCP's streamable HTTP on 127.0.0.1, served from a thread of the lab until `close`:
    a port of its own and a path with a random secret (`url`), stateless, one JSON answer per request."""

    START_SECONDS = 10.0

    def __init__(self, box: Toolbox, instructions: str):
        import uvicorn  # a dependency of the mcp SDK's HTTP transport

        self.secret = secrets.token_urlsafe(24)
        app = lab_server(box, instructions).streamable_http_app(
            streamable_http_path=f"/{self.secret}/mcp", stateless_http=True, json_response=True)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                     access_log=False, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, name="mcp-endpoint", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise LabError("the lab's MCP endpoint for a coding CLI did not start on 127.0.0.1")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.secret}/mcp"

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
