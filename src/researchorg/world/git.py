"""A thin wrapper over the git command line: the same git the agents and people use.

Every call is one `git` subprocess with a fixed identity, so commits made by
the lab look the same on every machine. Failures become LabError with git's
own message. git runs in a session of its own, so a Ctrl-C in the terminal
reaches the lab and not a git command in the middle of writing its index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from researchorg.errors import LabError

_ENV = {
    "GIT_AUTHOR_NAME": "researchorg",
    "GIT_AUTHOR_EMAIL": "lab@researchorg.local",
    "GIT_COMMITTER_NAME": "researchorg",
    "GIT_COMMITTER_EMAIL": "lab@researchorg.local",
    "GIT_TERMINAL_PROMPT": "0",
}


class Git:
    """git commands run in one directory (a repository or one of its worktrees)."""

    def __init__(self, cwd: Path):
        self.cwd = Path(cwd)

    @staticmethod
    def is_repository(path: Path) -> bool:
        """Whether `path` is the top of a git repository (a subfolder of one is not)."""
        return (Path(path) / ".git").exists()

    def __call__(self, *args: str, check: bool = True) -> str:
        """Run `git ARGS`; its stdout, stripped. A failure raises LabError unless `check` is False."""
        proc = self.run(*args)
        if check and proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(f"git {' '.join(args)} failed in {self.cwd}: {message[-1] if message else proc.returncode}")
        return proc.stdout.strip()

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) \
            -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", *args],
            cwd=self.cwd,
            env={**os.environ, **_ENV, **(env or {})},
            capture_output=True,
            text=True,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            start_new_session=True,
        )

    def without(self, base: str, changes: list[tuple[str, str]], message: str) -> tuple[str | None, int, int]:
        """Undo on top of `base` what still remains there of the given changes (before, after), hunk by hunk,
        in a scratch index (no work tree is touched). A hunk that later changes rewrote no longer applies and
        is skipped: it is not in `base` any more. Return (the commit, or None if nothing was left to undo;
        hunks undone; hunks in all)."""
        undone = total = 0
        with tempfile.TemporaryDirectory(prefix="researchorg-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", base, env=env).check_returncode()
            for before, after in reversed(changes):
                patch = self("diff", "--binary", "-U0", before, after)  # no context: neighbouring edits stay apart
                for hunk in reversed(_hunks(patch)):
                    total += 1
                    applied = self.run("apply", "--cached", "--unidiff-zero", "-R", "-", input=hunk, env=env)
                    undone += applied.returncode == 0
            tree = self.run("write-tree", env=env).stdout.strip()
        if not undone:
            return None, 0, total
        return self("commit-tree", tree, "-p", base, "-m", message), undone, total

    def archive(self, commit: str) -> bytes:
        """The files of `commit` as a tar (what a cluster node unpacks to run it)."""
        proc = subprocess.run(["git", "archive", "--format=tar", commit], cwd=self.cwd, capture_output=True,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        if proc.returncode != 0:
            raise LabError(f"git archive {commit} failed in {self.cwd}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def head(self) -> str:
        return self("rev-parse", "HEAD")

    def head_of(self, branch: str) -> str:
        return self("rev-parse", f"refs/heads/{branch}")

    def tree_of(self, commit: str) -> str:
        """The tree a commit points to: what was measured, whatever the commit's history."""
        return self("rev-parse", f"{commit}^{{tree}}")

    def branch_exists(self, branch: str) -> bool:
        return self("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False) != ""

    def commit_detached(self, parent: str, message: str) -> str:
        """Commit the work tree's state as a child of `parent` without moving any branch; return the commit."""
        self("add", "-A")
        tree = self("write-tree")
        return self("commit-tree", tree, "-p", parent, "-m", message)

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        return self.run("merge-base", "--is-ancestor", ancestor, commit).returncode == 0

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The tree of merging two commits, without touching any work tree; None when they conflict."""
        proc = self.run("merge-tree", "--write-tree", "--no-messages", ours, theirs)
        return proc.stdout.splitlines()[0] if proc.returncode == 0 else None

    def commit_all(self, message: str) -> str:
        """Stage everything in the work tree and commit it (an empty commit if nothing changed)."""
        self("add", "-A")
        self("commit", "--allow-empty", "--no-verify", "-q", "-m", message)
        return self.head()

    def changed_files(self, parent: str, commit: str) -> list[str]:
        """Paths added, changed, deleted or renamed between two commits."""
        out = self("diff", "--name-only", "--no-renames", parent, commit)
        return [line for line in out.splitlines() if line]

    def diff(self, parent: str, commit: str) -> str:
        return self("diff", parent, commit)

    def diff_capped(self, a: str, b: str, limit: int, timeout: float = 10.0) -> tuple[str, bool]:
        """`git diff a b` for a reader of what agents committed (the dashboard): at most `limit` bytes (and
        whether it was cut), bytes that are not UTF-8 replaced, no external diff or textconv driver, and
        killed after `timeout` seconds; empty if git fails."""
        proc = subprocess.Popen(["git", "-c", "core.hooksPath=/dev/null", "diff", "--no-ext-diff", "--no-textconv",
                                 a, b], cwd=self.cwd, env={**os.environ, **_ENV}, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            data = proc.stdout.read(limit + 1)
        finally:
            timer.cancel()
            proc.kill()
            proc.stdout.close()
            proc.wait()
        return data[:limit].decode("utf-8", "replace"), len(data) > limit

    def remove_stale_lock(self) -> None:
        """Remove an index.lock left by a git that was killed; call only when no other git can be running here."""
        lock = Path(self("rev-parse", "--git-path", "index.lock"))
        (lock if lock.is_absolute() else self.cwd / lock).unlink(missing_ok=True)

    def reset_hard(self, commit: str) -> None:
        """Put the work tree exactly at `commit`: tracked files reset, untracked files removed."""
        self("reset", "--hard", "-q", commit)
        self("clean", "-ffdq")  # -ff: untracked directories with a .git of their own too


def _hunks(patch: str) -> list[str]:
    """A unified diff cut into one patch per hunk (each with its file's header); a file without text hunks
    (binary, a new or deleted empty file) stays one piece."""
    pieces: list[str] = []
    header: list[str] = []
    hunk: list[str] = []
    in_header = False

    def flush() -> None:
        if hunk:
            pieces.append("\n".join(header + hunk) + "\n")
        elif header:
            pieces.append("\n".join(header) + "\n")

    for line in patch.splitlines():
        if line.startswith("diff --git "):
            flush()
            header, hunk, in_header = [line], [], True
        elif line.startswith("@@"):
            if hunk:
                pieces.append("\n".join(header + hunk) + "\n")
            hunk, in_header = [line], False
        elif in_header:
            header.append(line)
        else:
            hunk.append(line)
    flush()
    return pieces


def restore_gitfile(repo: Path, checkout: Path) -> None:
    """Point a worktree's `.git` file back at its own administrative directory before the lab runs git there.

    Code that ran in the worktree (a training run, a coding agent) where no mount made the file read-only could
    have pointed it at a repository of its own, whose configuration (hooks, fsmonitor, filters) git would then
    run as the lab. A checkout git does not know is left alone (`worktree add` makes it anew)."""
    gitfile = checkout / ".git"
    admin = [d for d in (repo / ".git" / "worktrees").glob("*")
             if (d / "gitdir").is_file() and Path((d / "gitdir").read_text().strip()) == gitfile]
    if not admin:
        return
    expected = f"gitdir: {admin[0]}\n"
    if gitfile.is_symlink() or gitfile.is_dir():
        if gitfile.is_dir() and not gitfile.is_symlink():
            shutil.rmtree(gitfile)
        else:
            gitfile.unlink()
    if not gitfile.exists() or gitfile.read_text(errors="replace") != expected:
        gitfile.write_text(expected)
