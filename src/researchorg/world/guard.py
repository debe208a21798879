"""The guard: what the lab checks before it runs an experiment.

A commit may change only editable files, and the protected files in the
worktree must match the hashes recorded when the program was created. A
violation makes the experiment `invalid`; it never runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from researchorg.task.spec import TaskSpec
from researchorg.world.git import Git


def file_hashes(root: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths}


def check_changes(task: TaskSpec, git: Git, parent: str, commit: str) -> str | None:
    """Why this commit must not run because of what it changes, or None."""
    not_editable = [f for f in git.changed_files(parent, commit) if not task.is_editable(f)]
    if not_editable:
        return f"changes {', '.join(not_editable)}, which may not be edited (editable: {', '.join(task.editable)})"
    return None


def check_protected(checkout: Path, protected_hashes: dict[str, str]) -> str | None:
    """Why the checkout about to run must not, because a protected file differs from its recorded hash, or None."""
    for path, expected in protected_hashes.items():
        target = checkout / path
        if not target.is_file():
            return f"protected file {path} is missing"
        if hashlib.sha256(target.read_bytes()).hexdigest() != expected:
            return f"protected file {path} does not match its recorded hash"
    return None
