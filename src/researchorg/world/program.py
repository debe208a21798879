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
import hashlib
import importlib.util
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from researchorg.config import OrgSpec, load_org, org_skills, skill_folder
from researchorg.errors import ConfigError, LabError
from researchorg.ledger import SqlLedger
from researchorg.ledger.export import write_results_tsv
from researchorg.task import TaskSpec, find_task, load_task
from researchorg.task.adopt import Adopted, infer, render, render_toml, set_constant
from researchorg.world.git import Git, restore_gitfile
from researchorg.world.guard import file_hashes
from researchorg.world.protocol import PROGRAM_BRANCH
from researchorg.world.runner import ask_python, run_prepare
from researchorg.world.slots import visible_gpus

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
        self.notices: list[str] = []  # what `init` has to say of the program it made

    # creation -------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str, task: str, *, budget: float | None = None, org_file: Path | None = None,
             prepare: bool = True) -> Program:
        """Create a program: copy the task, commit the baseline, create the ledger, run the task's prepare step.

        It is built beside `root` and moved there only once complete, so a failed prepare step or a Ctrl-C
        leaves nothing behind (and no half-made program that `demo` would take for one to resume)."""
        root = Path(root).resolve()
        _check_new(root)
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"budget: {budget} is not a positive number of seconds")
        task_dir = find_task(task)
        load_task(task_dir)  # a broken task fails before anything is written
        prompts = _prompt_files(org_file or DEFAULT_ORG)  # a broken org fails before anything is written too
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
        try:
            notices = cls._build(staging, task_dir, budget, org_file, prompts, prepare, name=root.name)
            if root.exists():
                root.rmdir()  # empty, as checked above
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        program = cls(root)
        program.notices = notices
        return program

    @classmethod
    def _build(cls, root: Path, task_dir: Path, budget: float | None, org_file: Path | None,
               prompts: list[tuple[Path, str]], prepare: bool, name: str) -> list[str]:
        """Build the program in `root`; returns what the user should be told of it."""
        # a task directory's own git history is not the program's (`--from` adopts a repository with it)
        shutil.copytree(task_dir, root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
        notices = [tiny] if (tiny := _fit_to_machine(root, budget)) else []
        if budget is not None:
            _set_budget(root / "task.toml", budget)
        spec = load_task(root)
        _add_org(root, org_file, prompts)
        (root / ".gitignore").write_text(_GITIGNORE)
        git = Git(root)
        git("init", "-q", "-b", PROGRAM_BRANCH)
        _create_ledger(root, name, spec, git.commit_all(f"baseline: task {spec.name}"))
        if prepare:
            program = cls(root)
            program.prepare()
            program.ledger.close()
        return notices

    @classmethod
    def adopt(cls, root: Path | str, origin: str, *, org_file: Path | None = None,
              **flags: Any) -> tuple[Program, Adopted]:
        """Create a program from a repository (a path or a git URL): its history kept, `main` at its HEAD, and
        a task.toml inferred from it (`task.adopt.infer`, `flags` overriding any field) committed on top as the
        baseline. A local repository with uncommitted changes to tracked files is refused. Its prepare step
        is not run here (it may download data): the first `run` does, or `researchorg prepare`."""
        root = Path(root).resolve()
        _check_new(root)
        prompts = _prompt_files(org_file or DEFAULT_ORG)
        source = Path(origin).expanduser()
        local = source.resolve() if source.exists() else None
        if local is not None and not local.is_dir():
            raise ConfigError(f"--from {origin}: not a directory")
        if local is not None and (local / STATE_DIR / "ledger.db").exists():
            raise ConfigError(f"--from {origin}: that is a researchorg program; adopt the repository it came from")
        history = local is None or Git.is_repository(local)
        if local is not None and history:
            _refuse_uncommitted(local)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
        try:
            if history:
                staging.rmdir()
                try:  # the lab's git: no hook of the repository runs
                    Git(root.parent)("clone", "-q", "--no-hardlinks", str(local or origin), str(staging))
                except LabError as err:
                    raise ConfigError(f"--from {origin}: git clone failed: {str(err).rsplit(': ', 1)[-1]}") from None
                Git(staging)("checkout", "-q", "-B", PROGRAM_BRANCH)  # whatever its branch was called
            else:
                shutil.copytree(local, staging, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "venv"))
            if (staging / "task.toml").exists():
                raise ConfigError(f"--from {origin}: it has a task.toml already; use --task {origin}")
            named = local.name if local else origin.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            flags.setdefault("name", named)
            adopted = infer(staging, environment=local, where=origin, **flags)
            adopted.history = history
            if flags.get("budget") is not None and adopted.budget_constant is not None:
                set_constant(staging / adopted.budget_constant[0], adopted.budget_constant[1], flags["budget"])
            (staging / "task.toml").write_text(render(adopted, origin))
            spec = load_task(staging)  # what we wrote is a valid task
            _add_org(staging, org_file, prompts)
            ignore = staging / ".gitignore"
            kept = ignore.read_text() if ignore.is_file() else ""
            missing = [line for line in _GITIGNORE.splitlines() if line not in kept.splitlines()]
            ignore.write_text(kept + ("\n" if kept and not kept.endswith("\n") else "") + "\n".join(missing) + "\n")
            git = Git(staging)
            if not history:
                git("init", "-q", "-b", PROGRAM_BRANCH)
            for written in ("results.tsv", "progress.png"):  # the lab writes its own; yours stay in the history
                if git("ls-files", written):
                    git("rm", "-q", "--cached", written)
                    adopted.warnings.append(f"{written} was committed in the repository: the lab writes its own "
                                            "there, so the program no longer tracks it (yours stays in the "
                                            "history)")
            baseline = git.commit_all(f"researchorg: adopt {origin} as task {spec.name}")
            _create_ledger(staging, root.name, spec, baseline)
            if root.exists():
                root.rmdir()
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(root), adopted

    def check_requirements(self) -> None:
        """A clear error now, rather than a crash in every run, when the task's Python modules are missing."""
        missing = missing_requirements(self.task)
        if missing:
            raise LabError(missing)

    def check_gpu_build(self, gpus: int) -> None:
        """On GPU slots, a task that trains with torch needs a CUDA build of it: a CPU build is one clear error
        before any run, not a run per slot that trains on the CPU and is compared as a GPU result."""
        if "torch" not in self.task.requires:
            return
        answer = ask_python(self.task, "import torch; print(torch.cuda.is_available(), torch.version.cuda or 'none')",
                            timeout=300)
        available, _, cuda = answer.strip().partition(" ")
        if available != "True":
            what = "a CPU build of torch (no CUDA)" if cuda == "none" else f"torch for CUDA {cuda}, which sees no GPU"
            raise LabError(f"this machine has {gpus} GPU slot(s) but {self.task.python()} has {what}: install a CUDA "
                           "build (pip install torch --index-url https://download.pytorch.org/whl/cu128), or run "
                           "on CPU slots (--threads N, or CUDA_VISIBLE_DEVICES=)")

    def ensure_prepared(self) -> None:
        """Check the task's requirements, and run its prepare step if it has not succeeded for this task.toml."""
        if self._prepared_mark.is_file() and self._prepared_mark.read_text() == self._task_stamp():
            self.check_requirements()
            return
        self.prepare()

    @property
    def _prepared_mark(self) -> Path:
        return self.state_dir / "prepared"

    def _task_stamp(self) -> str:
        return hashlib.sha256((self.root / "task.toml").read_bytes()).hexdigest()

    def prepare(self) -> str:
        """Check the task's requirements and run its prepare command; return its output."""
        self.check_requirements()
        if not self.task.prepare:
            self._prepared_mark.write_text(self._task_stamp())
            return ""
        output = run_prepare(self.task, self.root)
        self._prepared_mark.write_text(self._task_stamp())
        self.ledger.log_event("prepared", command=self.task.prepare)
        return output

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

    @cached_property
    def key(self) -> str:
        """This program's name on cluster nodes: its machine and directory, hashed."""
        return hashlib.sha256(f"{socket.gethostname()}:{self.root.resolve()}".encode()).hexdigest()[:16]

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
    def _add_worktree(self, path: Path, where: str, detach: bool = False) -> None:
        """`git worktree add` of `path` at `where`, after pruning the worktrees whose checkout is gone, one at a
        time: a prune that runs while another worktree is being added (two slots' first runs at once) removes
        that one's half-made entry and fails its add."""
        with open(self.state_dir / "worktrees.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.git("worktree", "prune")
            self.git("worktree", "add", "-q", *(["--detach"] if detach else []), str(path), where)

    def ensure_agent(self, name: str, role: str, backend: str) -> Path:
        """The agent's worktree, created on its branch from the program baseline the first time."""
        branch, worktree = f"agents/{name}", self.state_dir / "worktrees" / name
        baseline = self.ledger.program().baseline_commit
        if not self.git.branch_exists(branch):
            self.git("branch", branch, baseline)
        if not (worktree / ".git").exists():
            self._add_worktree(worktree, branch)
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
            self._add_worktree(path, commit, detach=True)
        else:
            restore_gitfile(self.root, path)
            slot_git = Git(path)
            slot_git.remove_stale_lock()  # only the lab runs git here, one experiment at a time
            slot_git("checkout", "-q", "--detach", "-f", commit)
            slot_git("clean", "-ffdqx")  # -ff: untracked directories with a .git of their own too
        return path

    def clean_checkout(self, path: Path) -> None:
        """Remove what a run left in a slot's checkout (untracked and ignored files)."""
        if (path / ".git").exists():
            Git(path)("clean", "-ffdqx")

    @cached_property
    def _merging(self) -> bool:
        """Whether the org merges into the program branch (then results.tsv's keeps are what is on main)."""
        return self.org().merging

    @cached_property
    def baseline_row_tree(self) -> str | None:
        """The code whose first run is results.tsv's first row: the baseline's, where the org measures it (a
        noise floor; until then rows with values wait for it); None where it never does, and its first result
        is the first row, as autoresearch's loop has it."""
        if not self.org().measures_baseline:
            return None
        return self.git.tree_of(self.ledger.program().baseline_commit)

    def write_results(self, lag: bool = False) -> None:
        """Rewrite results.tsv from the whole ledger, a page at a time (nothing of it stays in memory). `lag`
        (after each run of a run): skipped while the last rewrite is younger than RESULTS_LAG times what it
        took, so that it costs a lab whose runs take a fraction of a second at most a twentieth of its time,
        while a task whose runs take a minute has it rewritten after every run; the end of a run rewrites it
        whatever the lag (`RealWorld.flush`)."""
        start = time.monotonic()
        if lag and start < self._next_results:
            return
        write_results_tsv(self.ledger, self.task.metric.name, self.results_path, self.baseline_row_tree,
                          self._merging)
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


def _check_new(root: Path) -> None:
    if (root / STATE_DIR).exists():
        raise LabError(f"{root} is already a program: use `researchorg run {root}`")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LabError(f"{root} exists and is not empty: choose a new directory")


def _add_org(root: Path, org_file: Path | None, prompts: list[tuple[Path, str]]) -> None:
    shutil.copyfile(org_file or DEFAULT_ORG, root / "org.toml")
    for source, relative in prompts:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / relative)


def missing_requirements(task: TaskSpec) -> str | None:
    """The line that says which of the task's Python modules its interpreter lacks, and how to install them;
    None when it has them all (`run` stops on it, `check` reports it)."""
    python = task.python()
    if task.interpreter is None:
        missing = [m for m in task.requires if importlib.util.find_spec(m) is None]
    else:
        ask = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if not u.find_spec(m)))"
        missing = ask_python(task, ask, *task.requires).split()
    if not missing:
        return None
    others = [m for m in missing if m != "torch"]
    hint = "uv sync in the repository, or pip install them" if task.interpreter else "; ".join(
        (["for torch: pip install torch==2.13.0"] if "torch" in missing else [])
        + ([f"pip install {' '.join(others)}"] if others else []))
    return f"task {task.name} needs the Python module(s) {', '.join(missing)}, not installed for {python} ({hint})"


def _create_ledger(root: Path, name: str, spec: TaskSpec, baseline: str) -> None:
    (root / STATE_DIR).mkdir()
    ledger = SqlLedger(root / STATE_DIR / "ledger.db")
    ledger.create_program(name, spec.name, spec.metric.name, spec.metric.direction, baseline,
                          file_hashes(root, spec.protected_files()))
    ledger.log_event("program_created", task=spec.name, budget_seconds=spec.budget_seconds)
    ledger.close()


def _refuse_uncommitted(repo: Path) -> None:
    """A repository to adopt is taken as committed: changes to its tracked files are refused, not lost."""
    done = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    changed = [line[3:] for line in done.stdout.splitlines() if line.strip()]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"{repo} has uncommitted changes to {', '.join(changed[:3])}{more}: commit or stash them "
                          "first (the program takes the repository as committed; untracked files stay out)")


def _fit_to_machine(root: Path, budget: float | None) -> str | None:
    """A GPU task (one with a [cpu] table) on a machine without a GPU: write its tiny configuration into the
    program's files (the constants it sets, its budget and knobs; task.toml without the table) and say so."""
    spec = load_task(root)
    if spec.cpu is None or visible_gpus():
        return None
    for file, constants in spec.cpu.set.items():
        path = (root / file).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            raise ConfigError(f"{root / 'task.toml'}: [cpu.set] names {file!r}, not a file of the task")
        for constant, value in constants.items():
            set_constant(path, constant, value)
    data = tomllib.loads((root / "task.toml").read_text())
    cpu = data.pop("cpu")
    if "budget_seconds" in cpu:
        data["budget_seconds"] = cpu["budget_seconds"]
        data.pop("timeout_seconds", None)
    if "knobs" in cpu:
        data["knobs"] = cpu["knobs"]
    header = (f"task {spec.name} in its tiny CPU configuration: `researchorg init` found no GPU and applied the "
              "task's [cpu] table\n(to this file and to the constants it names); the built-in task's own "
              "task.toml has the GPU one.")
    (root / "task.toml").write_text(render_toml(data, header))
    changed = ", ".join(f"{name}={value}" for constants in spec.cpu.set.values() for name, value in constants.items())
    budget = budget if budget is not None else data["budget_seconds"]
    return (f"no GPU visible: task {spec.name} set to its tiny CPU configuration ({budget:g} s "
            f"budget; {changed})")


def _set_budget(task_toml: Path, budget: float) -> None:
    if budget <= 0:
        raise ConfigError(f"--budget must be positive, got {budget}")
    text = task_toml.read_text()
    text, n = re.subn(r"(?m)^budget_seconds\s*=.*$", f"budget_seconds = {budget:g}", text)
    if n != 1:
        raise ConfigError(f"{task_toml}: budget_seconds: expected one top-level line to override")
    text = re.sub(r"(?m)^timeout_seconds\s*=.*$", f"timeout_seconds = {2 * budget + 60:g}", text)
    task_toml.write_text(text)
