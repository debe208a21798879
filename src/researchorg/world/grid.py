"""The grid: a tmux session with the org's run in one pane and one pane per interactive agent.

Each agent pane opens in the agent's worktree with its coding CLI (`command`,
default claude) started on the role's prompt, so a person can watch it, type
into it, or take over. Experiments leave a pane through `researchorg submit`,
which goes through the run's scheduler and ledger like any other. tmux is used
through its own command line; nothing here sleeps waiting for panes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from researchorg.errors import LabError
from researchorg.world.program import Program

PANE_PROMPT = ("You are {name}, a researcher in this research program. Read program.md and "
               ".researchorg/inbox.md, edit only the editable files, and when a change is ready run "
               "`researchorg submit -m '<what you changed>'` here to run it; it prints the result.")


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
        command = shlex.join([role.options.get("command") or "claude", PANE_PROMPT.format(name=agent)])
        _tmux("split-window", "-t", name, *env, "-c", str(worktree), f"{command}; exec $SHELL")
        _tmux("select-layout", "-t", name, "tiled")
    return name


def pane_paths(name: str) -> list[Path]:
    out = _tmux("list-panes", "-t", name, "-F", "#{pane_current_path}").stdout
    return [Path(line) for line in out.splitlines() if line]


def _tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["tmux", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
    return proc
