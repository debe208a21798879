"""The lab's file tools against an agent that swaps files for links while they work.

Another process flips a worktree file (and a folder) between a plain one and a
symbolic link to a file outside, as fast as it can, while the tools read and
write through `Toolbox.call`: the one entry of API agents, `researchorg mcp`
and the coding-CLI endpoint. Nothing outside is ever read or written.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from researchorg.agents.base import AgentContext
from researchorg.agents.tools import Toolbox
from researchorg.config import RoleSpec

SECRET = "SECRET-OUTSIDE-THE-WORKTREE"
CALLS = 1500


@pytest.fixture
def ctx(make_program):
    program = make_program(backend="tuner")
    worktree = program.ensure_agent("researcher", "researcher", "openai")
    return AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                        role=RoleSpec(name="researcher", backend="tuner"))


def _flip(path: str, outside: str, plain: str, stop) -> None:
    """Swap `path` between a plain file holding `plain` and a link to `outside`, atomically, until `stop`."""
    link, other = f"{path}.link", f"{path}.plain"
    while not stop.is_set():
        os.symlink(outside, link)
        os.replace(link, path)
        with open(other, "w") as f:
            f.write(plain)
        os.replace(other, path)


def _flip_folder(path: str, outside: str, inside: str, stop) -> None:
    """Swap the folder `path` between a plain folder (`inside`, renamed in and out) and a link to `outside`."""
    link = f"{path}.link"
    while not stop.is_set():
        os.symlink(outside, link)
        os.replace(link, path)  # path is now a link to the folder outside
        os.unlink(path)
        os.rename(inside, path)  # the plain folder back in place
        os.rename(path, inside)


def _race(target, args, calls, seen_plain, seen_refused) -> dict[str, int]:
    """Call `calls()` at least CALLS times while `target` flips, until both outcomes were seen (bounded)."""
    stop = multiprocessing.Event()
    flipper = multiprocessing.get_context("fork").Process(target=target, args=(*args, stop), daemon=True)
    flipper.start()
    counts = {"plain": 0, "refused": 0, "other": 0}
    deadline = time.monotonic() + 300
    try:
        while (sum(counts.values()) < CALLS or not (counts["plain"] and counts["refused"])) \
                and time.monotonic() < deadline:
            answer = calls()
            assert SECRET not in answer, answer
            counts["plain" if seen_plain(answer) else "refused" if seen_refused(answer) else "other"] += 1
    finally:
        stop.set()
        flipper.join(10)
    return counts


def test_read_file_never_follows_a_link_swapped_in_meanwhile(ctx, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    worktree = Path(ctx.worktree)
    (worktree / "notes.txt").write_text("plain notes")
    box = Toolbox(ctx)
    counts = _race(_flip, (str(worktree / "notes.txt"), str(outside), "plain notes"),
                   lambda: box.call("read_file", {"path": "notes.txt"}),
                   lambda a: a == "plain notes", lambda a: a.startswith("error:"))
    assert counts["plain"] and counts["refused"], counts

    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "f.txt").write_text(SECRET)
    (worktree / "spare").mkdir()
    (worktree / "spare" / "f.txt").write_text("plain notes")
    counts = _race(_flip_folder, (str(worktree / "dir"), str(tmp_path / "outside-dir"), str(worktree / "spare")),
                   lambda: box.call("read_file", {"path": "dir/f.txt"}),
                   lambda a: a == "plain notes", lambda a: a.startswith("error:"))
    assert counts["refused"], counts


def test_write_file_never_writes_through_a_link_swapped_in_meanwhile(ctx, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text(SECRET)
    worktree = Path(ctx.worktree)
    plain = (worktree / "train.py").read_text()
    box = Toolbox(ctx)
    counts = _race(_flip, (str(worktree / "train.py"), str(outside), plain),
                   lambda: box.call("write_file", {"path": "train.py", "content": "WRITTEN\n"}),
                   lambda a: a.startswith("wrote train.py"), lambda a: a.startswith("error:"))
    assert counts["plain"] and counts["refused"], counts
    assert outside.read_text() == SECRET  # never written through the link


def test_a_hard_link_to_a_file_outside_is_not_written(ctx, tmp_path):
    outside = Path(ctx.worktree).parent / "outside.py"  # on the worktree's file system, as a link must be
    outside.write_text(SECRET)
    (Path(ctx.worktree) / "train.py").unlink()
    os.link(outside, Path(ctx.worktree) / "train.py")
    answer = Toolbox(ctx).call("write_file", {"path": "train.py", "content": "WRITTEN\n"})
    assert answer == "error: train.py is not a plain file of the worktree's own"
    assert outside.read_text() == SECRET
