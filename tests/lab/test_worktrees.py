"""Slots' and agents' checkouts made at once: a `git worktree prune` of one must not remove another's half-made
entry (CI saw `could not open '.git/worktrees/s0/gitdir'` when two slots started their first runs together)."""

from __future__ import annotations

import threading


def test_many_checkouts_made_at_once_all_succeed(make_program):
    program = make_program()
    head = program.git.head_of("main")
    errors: list[BaseException] = []

    def make(name: str) -> None:
        try:
            if name.startswith("s"):
                program.checkout_for_run(name, head)
            else:
                program.ensure_agent(name, "researcher", "tuner")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=make, args=(f"{'s' if i % 2 else 'a'}{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = program.git("worktree", "list", "--porcelain")
    for i in range(12):
        where = program.state_dir / ("slots" if i % 2 else "worktrees") / f"{'s' if i % 2 else 'a'}{i}"
        assert (where / ".git").is_file() and str(where) in listed
