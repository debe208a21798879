"""Undoing a merged change on top of a later program branch, hunk by hunk, without touching a work tree."""

from __future__ import annotations

from researchorg.world.git import Git


def _commit(git: Git, path, text: str, message: str) -> str:
    path.write_text(text)
    return git.commit_all(message)


def test_without_undoes_what_remains_of_a_change_and_skips_what_later_changes_rewrote(tmp_path):
    git = Git(tmp_path)
    git("init", "-q", "-b", "main")
    f = tmp_path / "knobs.py"
    base = _commit(git, f, "A = 1\nB = 1\nC = 1\nD = 1\n", "base")
    first = _commit(git, f, "A = 2\nB = 1\nC = 2\nD = 1\n", "first: A and C")
    second = _commit(git, f, "A = 3\nB = 1\nC = 2\nD = 2\n", "second: A again, and D")
    commit, undone, total = git.without(second, [(base, first)], "without first")
    assert (undone, total) == (1, 2)  # C's edit remains in main; A's was rewritten by the second change
    assert git("show", f"{commit}:knobs.py") == "A = 3\nB = 1\nC = 1\nD = 2"
    commit, undone, total = git.without(second, [(first, second)], "without second")
    assert (undone, total) == (2, 2) and git("show", f"{commit}:knobs.py") == "A = 2\nB = 1\nC = 2\nD = 1"
    third = _commit(git, f, "A = 3\nB = 1\nC = 5\nD = 2\n", "third: C")
    assert git.without(third, [(base, first)], "nothing left") == (None, 0, 2)  # superseded: A and C rewritten
    assert git("status", "--porcelain") == "" and f.read_text() == "A = 3\nB = 1\nC = 5\nD = 2\n"  # untouched
