"""A research program on disk: a git repository, its task, its org, its ledger and the agents' worktrees.

Layout of a program directory (created by `Program.init`):

    DIR/                 git repository; branch `main` is the program branch
      task.toml ...      the task's files, as committed in the baseline
      org.toml           the organization that works on the program
      results.tsv        autoresearch's format, rewritten after every experiment
      progress.png       written by `researchorg plot` and at the end of `run`
      .researchorg/      not tracked: ledger.db, logs/, worktrees/<agent>/, slots/<slot>/, agents/<agent>/

Each agent works on branch `agents/<name>` in worktree `.researchorg/worktrees/<name>`;
experiments run in a detached checkout per compute slot, `.researchorg/slots/<slot>`.
"""

from __future__ import annotations

import fcntl
import importlib.util
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from researchorg.config import OrgSpec, load_org, org_skills, skill_folder
from researchorg.errors import ConfigError, LabError
from researchorg.ledger import SqlLedger
from researchorg.ledger.export import write_results_tsv
from researchorg.task import TaskSpec, find_task, load_task
from researchorg.world.git import Git, restore_gitfile
from researchorg.world.guard import file_hashes
from researchorg.world.protocol import PROGRAM_BRANCH

STATE_DIR = ".researchorg"
DEFAULT_ORG = Path(__file__).parent.parent / "templates" / "solo-tuner.toml"
_GITIGNORE = ("results.tsv\nprogress.png\nablation.png\n.researchorg/\n__pycache__/\n*.pyc\nrun.log\n"
              ".claude/\n.agents/\n")  # the last two: a grid pane's skills in a worktree, kept by its resets


class Program:
    """An initialised program directory. Open one with `Program(path)`, create one with `Program.init`."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        if not (self.root / STATE_DIR / "ledger.db").is_file():
            raise LabError(f"{self.root} is not a researchorg program (run `researchorg init {root}` first)")
        self.git = Git(self.root)
        self._next_results = 0.0  # when `write_results(lag=True)` may rewrite results.tsv again (monotonic)

    # creation -------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str, task: str, *, budget: float | None = None, org_file: Path | None = None,
             prepare: bool = True) -> Program:
        """Create a program: copy the task, commit the baseline, create the ledger, run the task's prepare step.

        It is built beside `root` and moved there only once complete, so a failed prepare step or a Ctrl-C
        leaves nothing behind (and no half-made program that `demo` would take for one to resume)."""
        root = Path(root).resolve()
        if (root / STATE_DIR).exists():
            raise LabError(f"{root} is already a program: use `researchorg run {root}`")
        if root.exists() and any(root.iterdir()):
            raise LabError(f"{root} exists and is not empty: choose a new directory")
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"budget: {budget} is not a positive number of seconds")
        task_dir = find_task(task)
        load_task(task_dir)  # a broken task fails before anything is written
        prompts = _prompt_files(org_file or DEFAULT_ORG)  # a broken org fails before anything is written too
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
        try:
            cls._build(staging, task_dir, budget, org_file, prompts, prepare, name=root.name)
            if root.exists():
                root.rmdir()  # empty, as checked above
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(root)

    @classmethod
    def _build(cls, root: Path, task_dir: Path, budget: float | None, org_file: Path | None,
               prompts: list[tuple[Path, str]], prepare: bool, name: str) -> None:
        shutil.copytree(task_dir, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if budget is not None:
            _set_budget(root / "task.toml", budget)
        spec = load_task(root)
        shutil.copyfile(org_file or DEFAULT_ORG, root / "org.toml")
        for source, relative in prompts:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, root / relative)
        (root / ".gitignore").write_text(_GITIGNORE)
        git = Git(root)
        git("init", "-q", "-b", PROGRAM_BRANCH)
        baseline = git.commit_all(f"baseline: task {spec.name}")
        (root / STATE_DIR).mkdir()
        ledger = SqlLedger(root / STATE_DIR / "ledger.db")
        ledger.create_program(name, spec.name, spec.metric.name, spec.metric.direction, baseline,
                              file_hashes(root, spec.protected_files()))
        ledger.log_event("program_created", task=spec.name, budget_seconds=spec.budget_seconds)
        ledger.close()
        if prepare:
            program = cls(root)
            program.prepare()
            program.ledger.close()

    def check_requirements(self) -> None:
        """A clear error now, rather than a crash in every run, when the task's Python modules are missing."""
        missing = [m for m in self.task.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise LabError(f"task {self.task.name} needs the Python module(s) {', '.join(missing)}, "
                           f"not installed for {sys.executable} (for torch: pip install torch==2.13.0)")

    def prepare(self) -> str:
        """Check the task's requirements and run its prepare command once; return its output."""
        self.check_requirements()
        if not self.task.prepare:
            return ""
        argv = shlex.split(self.task.prepare)
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        try:
            proc = subprocess.run(argv, cwd=self.root, capture_output=True, text=True)
        except OSError as err:
            raise LabError(f"task {self.task.name}: cannot run its prepare command `{self.task.prepare}`: "
                           f"{err.strerror or err}") from None
        if proc.returncode != 0:
            raise LabError(f"`{self.task.prepare}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return proc.stdout

    # what the program holds -----------------------------------------------------------
    @cached_property
    def task(self) -> TaskSpec:
        return load_task(self.root)

    @cached_property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self.root / STATE_DIR / "ledger.db")

    def org(self) -> OrgSpec:
        return load_org(self.root / "org.toml")

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def results_path(self) -> Path:
        return self.root / "results.tsv"

    @property
    def plot_path(self) -> Path:
        return self.root / "progress.png"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def read_at(self, path: str, commit: str | None = None) -> str:
        """A file of the program as `commit` holds it (default: the program branch)."""
        return self.git("show", f"{commit or PROGRAM_BRANCH}:{path}")

    def agent_dir(self, name: str) -> Path:
        path = self.state_dir / "agents" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # agents' branches and worktrees --------------------------------------------------
    def ensure_agent(self, name: str, role: str, backend: str) -> Path:
        """The agent's worktree, created on its branch from the program baseline the first time."""
        branch, worktree = f"agents/{name}", self.state_dir / "worktrees" / name
        baseline = self.ledger.program().baseline_commit
        if not self.git.branch_exists(branch):
            self.git("branch", branch, baseline)
        if not (worktree / ".git").exists():
            self.git("worktree", "prune")
            self.git("worktree", "add", "-q", str(worktree), branch)
        self.ledger.ensure_agent(name, role, backend, branch, str(worktree), baseline)
        return worktree

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the program's run lock: one `researchorg run` at a time. The kernel frees it if we die."""
        unwritable = getattr(self.ledger, "read_only", None)
        if unwritable is not None:
            raise LabError(f"cannot run: {unwritable}; what is recorded stays readable (status, results)")
        with open(self.state_dir / "run.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise LabError(f"another `researchorg run` is working on {self.root} "
                               f"(pid {handle.read().strip() or '?'})") from None
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield

    def run_active(self) -> bool:
        """Whether a `researchorg run` holds this program's run lock now."""
        try:
            with self.run_lock():
                return False
        except LabError:
            return True

    @classmethod
    def of_worktree(cls, path: Path) -> tuple[Program, str]:
        """The program and agent of an agent worktree that contains `path`."""
        for folder in [path.resolve(), *path.resolve().parents]:
            if folder.parent.name == "worktrees" and folder.parent.parent.name == STATE_DIR:
                return cls(folder.parents[2]), folder.name
        raise LabError(f"{path} is not inside an agent's worktree (.researchorg/worktrees/<agent>)")

    def checkout_for_run(self, slot: str, commit: str) -> Path:
        """The slot's own checkout, put exactly at `commit` (untracked and ignored files removed).

        Experiments run here, not in the agent's worktree: the agent can prepare its
        next change while this one trains, and nothing it does reaches the running code.
        """
        path = self.state_dir / "slots" / slot
        if not (path / ".git").exists():
            self.git("worktree", "prune")
            self.git("worktree", "add", "-q", "--detach", str(path), commit)
        else:
            restore_gitfile(self.root, path)
            slot_git = Git(path)
            slot_git.remove_stale_lock()  # only the lab runs git here, one experiment at a time
            slot_git("checkout", "-q", "--detach", "-f", commit)
            slot_git("clean", "-ffdqx")  # -ff: untracked directories with a .git of their own too
        return path

    def write_results(self, lag: bool = False) -> None:
        """Rewrite results.tsv from the whole ledger, a page at a time (nothing of it stays in memory). `lag`
        (after each run of a run): skipped while the last rewrite is younger than RESULTS_LAG times what it
        took, so that it costs a lab whose runs take a fraction of a second at most a twentieth of its time,
        while a task whose runs take a minute has it rewritten after every run; the end of a run rewrites it
        whatever the lag (`RealWorld.flush`)."""
        start = time.monotonic()
        if lag and start < self._next_results:
            return
        write_results_tsv(self.ledger, self.task.metric.name, self.results_path)
        self._next_results = start + RESULTS_LAG * (time.monotonic() - start)


RESULTS_LAG = 20


def _prompt_files(org_file: Path) -> list[tuple[Path, str]]:
    """The prompt files, the skill folders' files and the custom tools' files the org names, relative to its
    file, which `init` copies beside its org.toml (each checked first: a missing file or SKILL.md, a tool's missing
    file, is one error, and nothing is made)."""
    org = load_org(org_file)
    found = []
    for role in org.roles:
        for prompt in role.prompt:
            source = org_file.parent / prompt
            if not source.is_file() or Path(prompt).is_absolute() or ".." in Path(prompt).parts:
                raise ConfigError(f"{org_file}: roles.{role.name}.prompt: no file {prompt} next to the org file")
            found.append((source, prompt))
    for relative, skill in org_skills(org, org_file).items():
        found += [(skill.folder / name, f"{skill_folder(relative)}/{name}") for name in ["SKILL.md", *skill.files()]]
    for tool in dict.fromkeys(f for role in org.roles for t in role.custom_tools for f in t.files(org_file.parent)):
        if not (org_file.parent / tool).is_file():
            raise ConfigError(f"{org_file}: tools: no file {tool} next to the org file")
        found.append((org_file.parent / tool, tool))
    return found


def _set_budget(task_toml: Path, budget: float) -> None:
    if budget <= 0:
        raise ConfigError(f"--budget must be positive, got {budget}")
    text = task_toml.read_text()
    text, n = re.subn(r"(?m)^budget_seconds\s*=.*$", f"budget_seconds = {budget:g}", text)
    if n != 1:
        raise ConfigError(f"{task_toml}: budget_seconds: expected one top-level line to override")
    text = re.sub(r"(?m)^timeout_seconds\s*=.*$", f"timeout_seconds = {2 * budget + 60:g}", text)
    task_toml.write_text(text)
