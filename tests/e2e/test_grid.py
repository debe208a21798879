"""The interactive path: `researchorg grid` opens tmux panes, `researchorg submit` runs a pane's change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from researchorg import Program
from researchorg.world.grid import pane_command, pane_paths
from tests.conftest import NO_NOISE, cli, copy_task

FAKE_BIN = Path(__file__).parents[1] / "fakes" / "bin"
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def _tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", *args], capture_output=True, text=True)


def test_grid_panes_and_a_submission_through_the_running_org(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    org = tmp_path / "org.toml"
    org.write_text('name = "people"\nskills = ["builtin:noise-is-not-progress"]\n[[roles]]\nname = "person"\n'
                   'backend = "interactive"\n' + NO_NOISE)
    program = Program.init(tmp_path / "lab", str(copy_task(tmp_path)), org_file=org)
    out = cli("grid", str(program.root), "--no-attach", "--slots", "1").stdout
    name = out.split("tmux session ")[1].split(":")[0]
    try:
        worktree = program.root / ".researchorg" / "worktrees" / "person"
        deadline = time.monotonic() + 30
        while not any(e.kind == "run_started" for e in program.ledger.events()) and time.monotonic() < deadline:
            time.sleep(0.1)  # started: past the recovery that puts every worktree back at its head
        assert {p.resolve() for p in pane_paths(name)} == {program.root, worktree.resolve()}
        panes = _tmux("capture-pane", "-p", "-t", f"{name}:0.1").stdout
        assert "claude (interactive) > You are person" in panes
        assert (worktree / ".claude" / "skills" / "noise-is-not-progress" / "SKILL.md").is_file()
        train = worktree / "train.py"
        train.write_text(train.read_text().replace("THRESHOLD = 0.5", "THRESHOLD = 0.7"))
        result = subprocess.run([sys.executable, "-m", "researchorg", "submit", "-m", "threshold 0.7 by hand"],
                                cwd=worktree, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "experiment #1" in result.stdout and "keep, accuracy 1.000000" in result.stdout
        (e,) = program.ledger.experiments()
        assert e.agent == "person" and e.description == "threshold 0.7 by hand" and e.slot == "cpu0"
    finally:
        _tmux("send-keys", "-t", f"{name}:0.0", "C-c")
        deadline = time.monotonic() + 20
        while program.run_active() and time.monotonic() < deadline:
            time.sleep(0.1)
        _tmux("kill-session", "-t", name)
    assert not program.run_active()


def test_submit_outside_a_worktree_or_without_a_run_is_one_error(tmp_path):
    org = tmp_path / "org.toml"
    org.write_text('name = "people"\n[[roles]]\nname = "person"\nbackend = "interactive"\n' + NO_NOISE)
    program = Program.init(tmp_path / "lab", str(copy_task(tmp_path)), org_file=org)
    program.ensure_agent("person", "person", "interactive")
    outside = subprocess.run([sys.executable, "-m", "researchorg", "submit", "-m", "x"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert outside.returncode == 1 and "is not inside an agent's worktree" in outside.stderr
    no_run = subprocess.run([sys.executable, "-m", "researchorg", "submit", "-m", "x"],
                            cwd=program.root / ".researchorg/worktrees/person", capture_output=True, text=True)
    assert no_run.returncode == 1 and "no `researchorg run` is working on" in no_run.stderr


@pytest.mark.parametrize("command", ["claude", "codex"])
def test_a_panes_cli_gets_the_labs_mcp_server_and_the_roles_skills(tmp_path, command):
    org = tmp_path / "org.toml"
    org.write_text(f'name = "people"\nskills = ["builtin:strong-baseline"]\n[[roles]]\nname = "person"\n'
                   f'backend = "interactive"\ncommand = "{command}"\n' + NO_NOISE)
    program = Program.init(tmp_path / "lab", str(copy_task(tmp_path)), org_file=org)
    role = program.org().roles[0]
    worktree = program.ensure_agent("person", "person", "interactive")
    argv = pane_command(program, "person", role, worktree)
    assert argv[0] == command and argv[-1].startswith("You are person")
    if command == "claude":
        server = json.loads(argv[argv.index("--mcp-config") + 1])["mcpServers"]["lab"]
        executable, args = server["command"], server["args"]
        skills = worktree / ".claude" / "skills"
    else:
        settings = dict(a.split("=", 1) for a in argv if a.startswith("mcp_servers.lab."))
        executable, args = json.loads(settings["mcp_servers.lab.command"]), json.loads(settings["mcp_servers.lab.args"])
        skills = worktree / ".agents" / "skills"
    assert (skills / "strong-baseline" / "SKILL.md").is_file()

    async def listed():  # the server the pane's CLI is told of, as an MCP client starts it
        async with Client(StdioServerParameters(command=executable, args=args)) as client:
            return [t.name for t in (await client.list_tools()).tools]

    assert {"results", "submit", "load_skill"} <= set(anyio.run(listed))
