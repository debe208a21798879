"""The grid: a tmux session with the org's run in one pane and one pane per interactive agent.

Each agent pane opens in the agent's worktree with its coding CLI (`command`,
default claude) started on the role's prompt, so a person can watch it, type
into it, or take over. Claude Code and Codex get what the headless agents get:
the lab's tools as the MCP server `lab` (`researchorg mcp DIR --agent NAME` on
stdio, in Claude Code's `--mcp-config` and Codex's `-c mcp_servers.lab...`)
and the role's skills where each loads a project's skills (`.claude/skills`,
`.agents/skills` in the worktree). Experiments leave a pane through the lab's
`submit` tool or `researchorg submit`, which go through the run's scheduler
and ledger like any other. tmux is used through its own command line; nothing
here sleeps waiting for panes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from researchorg.config import RoleSpec, org_skills
from researchorg.errors import LabError
from researchorg.world.program import Program

PANE_PROMPT = ("You are {name}, a researcher in this research program. Read program.md and "
               ".researchorg/inbox.md, edit only the editable files, and when a change is ready call the lab's "
               "`submit` tool (MCP server `lab`, with `results`, `experiment`, `noise_floor` and messages beside "
               "it) or run `researchorg submit -m '<what you changed>'` here; the lab runs it.")
PROJECT_SKILLS = {"claude": ".claude/skills", "codex": ".agents/skills"}  # where each CLI loads a project's skills


def session_name(program: Program) -> str:
    return f"researchorg-{program.root.name}".replace(".", "-").replace(":", "-")


def open_grid(program: Program, run_args: list[str]) -> str:
    """Start the tmux session (run pane + agent panes); return its name. Fails if tmux is missing."""
    if shutil.which("tmux") is None:
        raise LabError("`researchorg grid` needs tmux (apt-get install tmux, or brew install tmux)")
    name = session_name(program)
    if _tmux("has-session", "-t", name, check=False).returncode == 0:
        raise LabError(f"tmux session {name} already exists: `tmux attach -t {name}`, or kill it first")
    run = shlex.join([sys.executable, "-m", "researchorg", "run", str(program.root), *run_args])
    env = ["-e", f"PATH={os.environ.get('PATH', '')}"]  # panes find the same commands as this shell
    _tmux("new-session", "-d", "-s", name, "-x", "220", "-y", "60", *env, "-c", str(program.root), run)
    org = program.org()
    for agent, role in org.agent_names():
        if role.backend != "interactive":
            continue
        worktree = program.ensure_agent(agent, role.name, role.backend)
        command = shlex.join(pane_command(program, agent, role, worktree))
        _tmux("split-window", "-t", name, *env, "-c", str(worktree), f"{command}; exec $SHELL")
        _tmux("select-layout", "-t", name, "tiled")
    return name


def pane_command(program: Program, agent: str, role: RoleSpec, worktree: Path) -> list[str]:
    """The command of `agent`'s pane: its CLI on its prompt, with the lab's MCP server and, in the worktree, the
    role's skills (for Claude Code and Codex; any other command gets the prompt alone)."""
    cli = role.options.get("command") or "claude"
    kind = Path(cli).name
    prompt = PANE_PROMPT.format(name=agent)
    server = [sys.executable, "-m", "researchorg", "mcp", str(program.root), "--agent", agent]
    if kind in PROJECT_SKILLS:
        skills = org_skills(program.org(), program.root / "org.toml")
        target = worktree / PROJECT_SKILLS[kind]
        for entry in role.skills:
            skills[entry].install(target)
    if kind == "claude":
        config = {"mcpServers": {"lab": {"type": "stdio", "command": server[0], "args": server[1:]}}}
        return [cli, "--mcp-config", json.dumps(config), prompt]
    if kind == "codex":
        return [cli, "-c", f"mcp_servers.lab.command={json.dumps(server[0])}",
                "-c", f"mcp_servers.lab.args={json.dumps(server[1:])}", prompt]
    return [cli, prompt]


def pane_paths(name: str) -> list[Path]:
    out = _tmux("list-panes", "-t", name, "-F", "#{pane_current_path}").stdout
    return [Path(line) for line in out.splitlines() if line]


def _tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["tmux", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
    return proc
