"""Files beneath a worktree, opened without ever following a link out of it.

The lab's file tools (API agents, `researchorg mcp`, the coding-CLI endpoint)
run outside any sandbox, on a worktree an agent may change at the same time:
a check of a path followed by an open of it races with an agent that swaps a
file or a directory for a symbolic link between the two. So each call walks
the path one component at a time from a descriptor of the worktree, each
component opened relative to the last with O_NOFOLLOW: a link anywhere on
the path is refused, whatever it points at, at the moment it is opened.
A file written must also be a plain file with no other name (a hard link to
a file outside would carry the write out).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(OSError):
    """A path the tools will not open beneath the worktree, and why (one line for the model)."""


def parts_of(relative: str) -> list[str]:
    """The components of a path relative to the worktree; Refused if it is absolute, climbs out or names
    `.git`."""
    path = PurePosixPath(relative)
    parts = [p for p in path.parts if p != "."]
    if path.is_absolute() or not parts or ".." in parts:
        raise Refused(f"{relative} is outside the worktree")
    if ".git" in parts:
        raise Refused(f"{relative} is in .git, which the tools do not open")
    return parts


def read_bytes(root: Path, relative: str, limit: int) -> bytes:
    """Up to `limit` bytes of the plain file `relative` beneath `root`."""
    fd = _open(root, parts_of(relative), os.O_RDONLY | os.O_NONBLOCK, create=False)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise Refused(f"{relative} is not a plain file")
        return f.read(limit)


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    """Replace the content of the plain file `relative` beneath `root` (created with its folders if missing)."""
    fd = _open(root, parts_of(relative), os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, create=True)
    with os.fdopen(fd, "wb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise Refused(f"{relative} is not a plain file of the worktree's own")
        f.truncate(0)
        f.write(data)


def is_file(root: Path, relative: str) -> bool:
    try:
        fd = _open(root, parts_of(relative), os.O_RDONLY | os.O_NONBLOCK, create=False)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def _open(root: Path, parts: list[str], flags: int, *, create: bool) -> int:
    """A descriptor of `parts` beneath `root`, each component opened from the last without following links;
    with `create`, missing folders are made on the way (mkdirat makes a folder, never follows a link)."""
    here = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the worktree itself: the lab's own path
    try:
        for name in parts[:-1]:
            try:
                below = os.open(name, _DIR, dir_fd=here)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=here)
                below = os.open(name, _DIR, dir_fd=here)
            except OSError as err:
                raise _refusal(err, name) from None
            os.close(here)
            here = below
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=here)
        except OSError as err:
            raise _refusal(err, parts[-1]) from None
    finally:
        os.close(here)


def _refusal(err: OSError, name: str) -> OSError:
    if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return Refused(f"{name} is a link or not a folder: the tools do not follow links")
    return err
