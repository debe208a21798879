"""Shared fixtures: programs on the test task, and a scripted agent backend.

The scripted backend is a real agent (it implements the public protocol and is
registered like any backend); it proposes the file edits a test lists, so a
test can drive the lab through a crash, a hang or a forbidden edit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.agents import Proposal, register_backend
from researchorg.agents.base import AgentContext

FIXTURES = Path(__file__).parent / "fixtures"
ACCURACY_TASK = FIXTURES / "accuracy_task"

Edit = Callable[[AgentContext], dict[str, str]]
SCRIPTS: dict[str, list[tuple[str, Edit]]] = {}


class ScriptedAgent:
    """Proposes, in order, the (description, edit) pairs listed in SCRIPTS under the agent's name."""

    def __init__(self, ctx: AgentContext):
        self.steps = list(SCRIPTS.get(ctx.name, []))
        self.observed = []

    def propose(self, ctx: AgentContext) -> Proposal | None:
        if not self.steps:
            return None
        description, edit = self.steps.pop(0)
        return Proposal(description=description, files=edit(ctx))

    def observe(self, ctx: AgentContext, experiment) -> None:
        self.observed.append(experiment)


register_backend("scripted", lambda role, ctx, index: ScriptedAgent(ctx))


def set_line(path: str, name: str, value: str) -> Edit:
    """An edit that sets the top-level `name = ...` line of an editable file."""
    def edit(ctx: AgentContext) -> dict[str, str]:
        lines = [f"{name} = {value}" if line.startswith(f"{name} =") else line
                 for line in ctx.read(path).splitlines()]
        return {path: "\n".join(lines) + "\n"}
    return edit


# Tests of the lab's mechanics use orgs without a noise floor, so that every run they count is a proposal.
NO_NOISE = "\n[rigor]\nnoise_runs = 0\n"


def write_org(path: Path, backend: str, count: int = 1, rigor: str = NO_NOISE) -> Path:
    path.write_text(f'name = "test-org"\n[[roles]]\nname = "researcher"\ncount = {count}\nbackend = "{backend}"\n'
                    + rigor)
    return path


@pytest.fixture
def make_program(tmp_path: Path) -> Callable[..., Program]:
    def make(task: str | Path = ACCURACY_TASK, backend: str = "tuner", **kwargs) -> Program:
        org = write_org(tmp_path / f"org-{backend}.toml", backend)
        return Program.init(tmp_path / "program", str(task), org_file=org, **kwargs)
    return make


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """Your home, where a repository's prepare step keeps its data (~/.cache/autoresearch): the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def git(repo: Path, *args: str) -> str:
    """The output of the real git in `repo`."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `researchorg` command line in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "researchorg", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"researchorg {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def default_sigint() -> None:
    """Ctrl-C and a closed terminal as in a terminal, for a subprocess's preexec_fn: a test suite started in
    the background (`cmd &`) inherits SIGINT ignored, and one under nohup SIGHUP."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def pids_in_log(log_path: str) -> list[int]:
    """The accuracy task's training processes, as its train.py logs them (`child TOKEN`, a token in the child's
    command line: found on this machine's /proc, whatever PID namespace the run had)."""
    tokens = [line.split()[1] for line in Path(log_path).read_text().splitlines() if line.startswith("child")]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(token.encode() in argv for token in tokens):
            found.append(int(entry.name))
    return found


def copy_task(tmp_path: Path, source: Path = ACCURACY_TASK) -> Path:
    target = tmp_path / "task"
    shutil.copytree(source, target)
    return target


def eventually(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Wait until `predicate()` is true (returning its value), at most `timeout` seconds; fail if it never is."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout:g} s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def pytest_collection_modifyitems(config, items) -> None:
    """The end-to-end tests (tests/e2e: the real lab, real training, a browser, a Ray cluster) are the slow
    tier: `pytest -m "not slow and not benchmark"` is the edit-test loop's suite."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.slow)
