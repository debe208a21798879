"""Merging kept changes into the program branch: fast-forward, re-run on a moved branch, conflicts."""

from __future__ import annotations

import time
from dataclasses import replace

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.world.git import Git
from tests.conftest import NO_NOISE, SCRIPTS, cli, copy_task, set_line


def _program(tmp_path, roles: list[str]) -> Program:
    org = tmp_path / "org.toml"
    # merge mechanics, without a gate: explore-gate (the default) would verify every merge first
    text = 'name = "merging"\npolicy = "noise-aware"\n' + "".join(
        f'[[roles]]\nname = "{r}"\nbackend = "scripted"\n' for r in roles)
    org.write_text(text + '[[processes]]\nkind = "merge"\n' + NO_NOISE)
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def _after_merges(n: int, edit):
    """An edit made only once the program branch has had `n` merges, so the branch has moved."""
    def wait_then_edit(ctx):
        deadline = time.monotonic() + 30
        while len(ctx.ledger.merges()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return edit(ctx)
    return wait_then_edit


def _main_file(program: Program) -> str:
    return Git(program.root)("show", "main:train.py")


def test_kept_improvements_fast_forward_the_program_branch(tmp_path):
    program = _program(tmp_path, ["a"])
    SCRIPTS["a"] = [("baseline", lambda ctx: {}), ("worse", set_line("train.py", "THRESHOLD", "0.3")),
                    ("better", set_line("train.py", "THRESHOLD", "0.7"))]
    Runtime(program).run(Limits())
    merges = program.ledger.merges()
    # the baseline is the program's own code (same tree): it beats nothing and merges nothing
    assert [(m.how, m.metric) for m in merges] == [("fast-forward", 1.0)]
    better = program.ledger.experiments()[-1]
    assert Git(program.root).head_of("main") == better.commit
    assert "THRESHOLD = 0.7" in (program.root / "train.py").read_text()  # the program checkout moved too
    assert any("Merged experiment #3 of a" in m.body for m in program.ledger.messages())


def test_a_clean_merge_onto_a_moved_branch_is_run_again_and_merges_only_if_it_still_wins(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("baseline", lambda ctx: {}), ("bonus", set_line("train.py", "BONUS", "0.05"))]
    SCRIPTS["b"] = [("threshold", _after_merges(1, set_line("train.py", "THRESHOLD", "0.7")))]
    Runtime(program, slots=detect_slots(2, 1)).run(Limits())
    rerun = next(e for e in program.ledger.experiments() if e.proposal.get("merge_of"))
    assert rerun.description.startswith("merge #") and rerun.metric == 1.05 and rerun.status == "keep"
    assert rerun.kind == "merge"
    assert [m.how for m in program.ledger.merges()] == ["fast-forward", "re-run"]
    main = _main_file(program)
    assert "BONUS = 0.05" in main and "THRESHOLD = 0.7" in main
    assert Git(program.root).head_of("main") == rerun.commit


def test_a_merge_that_loses_on_the_moved_branch_is_not_merged(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("baseline", lambda ctx: {}), ("threshold", set_line("train.py", "THRESHOLD", "0.6"))]
    SCRIPTS["b"] = [("shift", _after_merges(1, set_line("train.py", "SHIFT", "0.2")))]
    Runtime(program, slots=detect_slots(2, 1)).run(Limits())
    rerun = next(e for e in program.ledger.experiments() if e.proposal.get("merge_of"))
    assert rerun.metric == 0.9 and rerun.status == "discard"  # 0.6 + 0.2 together is worse than 0.6 alone
    assert len(program.ledger.merges()) == 1
    assert "SHIFT = 0.0" in _main_file(program) and "THRESHOLD = 0.6" in _main_file(program)


def test_a_conflicting_change_is_reported_to_its_agent(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("baseline", lambda ctx: {}), ("a threshold", set_line("train.py", "THRESHOLD", "0.6"))]
    SCRIPTS["b"] = [("b threshold", _after_merges(1, set_line("train.py", "THRESHOLD", "0.7")))]
    Runtime(program, slots=detect_slots(2, 1)).run(Limits())
    assert len(program.ledger.merges()) == 1 and "THRESHOLD = 0.6" in _main_file(program)
    (note,) = [m for m in program.ledger.messages() if m.recipient == "b"]
    assert "conflicts with the program branch" in note.body
    assert "conflicts with the program branch" in cli("messages", str(program.root), "--agent", "b").stdout
    assert any(e.kind == "merge_conflict" for e in program.ledger.events())


def test_an_agent_behind_the_program_adopts_it_and_its_change_fast_forwards(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("baseline", lambda ctx: {}), ("bonus", set_line("train.py", "BONUS", "0.05"))]
    SCRIPTS["b"] = [("wait for a", _after_merges(1, lambda ctx: {})),
                    ("threshold", set_line("train.py", "THRESHOLD", "0.7"))]
    Runtime(program, slots=detect_slots(2, 1)).run(Limits())
    threshold = next(e for e in program.ledger.experiments() if e.description == "threshold")
    assert threshold.parent_commit == program.ledger.merges()[0].after  # b continued from the program branch
    assert threshold.metric == 1.05 and threshold.status == "keep"
    assert [m.how for m in program.ledger.merges()] == ["fast-forward", "fast-forward"]
    assert any(e.kind == "adopted_program" and e.data["agent"] == "b" for e in program.ledger.events())


def test_no_rerun_when_the_merge_adds_nothing_or_is_exactly_what_was_tested(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("a bonus", set_line("train.py", "BONUS", "0.05"))]
    SCRIPTS["b"] = [("b bonus", _after_merges(1, set_line("train.py", "BONUS", "0.05"))),  # main's code, b's commit
                    ("threshold", set_line("train.py", "THRESHOLD", "0.7"))]
    program_org = program.root / "org.toml"  # b must not adopt, so its branch stays beside main
    program_org.write_text(program_org.read_text().replace('name = "b"\n', 'name = "b"\nadopt_program = false\n'))
    Runtime(Program(program.root), slots=detect_slots(2, 1)).run(Limits())
    experiments = program.ledger.experiments()
    assert not any(e.proposal.get("merge_of") for e in experiments)  # nothing was run twice
    merges = program.ledger.merges()
    assert [m.how for m in merges] == ["fast-forward", "merge of the tested tree"]
    assert "THRESHOLD = 0.7" in _main_file(program)


def test_a_candidate_the_program_already_has_merges_nothing(tmp_path):
    program = _program(tmp_path, ["a", "b"])
    SCRIPTS["a"] = [("a bonus", set_line("train.py", "BONUS", "0.05"))]
    SCRIPTS["b"] = [("b bonus", _after_merges(1, set_line("train.py", "BONUS", "0.05")))]
    program_org = program.root / "org.toml"
    program_org.write_text(program_org.read_text().replace('name = "b"\n', 'name = "b"\nadopt_program = false\n'))
    runtime = Runtime(Program(program.root), slots=detect_slots(2, 1))
    runtime.run(Limits())
    b_bonus = next(e for e in program.ledger.experiments() if e.agent == "b")
    main = Git(program.root).head_of("main")
    assert b_bonus.status == "keep" and b_bonus.commit != main
    better = replace(b_bonus, metric=0.9)  # however lucky its own run, its code is main's: never a candidate
    assert not runtime.merger.is_candidate(better)
    assert runtime.merger.try_merge(better, by="merge") == ("nothing new", None)
    assert Git(program.root).head_of("main") == main and len(program.ledger.merges()) == 1
    assert any(e.kind == "merge_nothing_new" for e in program.ledger.events())
