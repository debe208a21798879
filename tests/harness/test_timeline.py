"""The phases of a guest as the harness keeps them: each mark ends a phase, each phase has its own deadline, and
what the guest hands over leaves its reach at once."""

from __future__ import annotations

from researchorg.harness.timeline import EXIT_SECONDS, Allowances, Timeline, slack

A = Allowances(budget=30.0, startup=60.0, handoff=20.0)


def test_each_phase_has_its_own_deadline_and_a_mark_only_ends_a_phase(tmp_path):
    line = Timeline(100.0, A, tmp_path, tmp_path)
    assert line.deadline() == 100 + 60 + 30 + slack(30)  # no mark yet: start-up and budget as one
    line.mark({"event": "handed over", "files": []}, 101.0)  # out of order: ignored
    assert line.phase == "start-up"
    line.mark({"event": "training"}, 105.0)
    assert line.deadline() == 105 + 30 + slack(30)  # the budget counts from the first optimizer step
    line.mark({"event": "training"}, 120.0)  # a second start moves nothing
    assert line.deadline() == 105 + 30 + slack(30)
    line.mark({"event": "handing over"}, 134.0)
    assert line.deadline() == 134 + 20
    line.mark({"event": "handed over", "files": []}, 140.0)
    assert line.deadline() == 140 + EXIT_SECONDS
    line.ended(141.0)
    assert line.seconds() == {"startup_seconds": 5.0, "training_seconds": 29.0, "handoff_seconds": 6.0}
    assert line.why_killed() is None


def test_a_start_up_past_its_allowance_is_paid_from_the_budget_and_said(tmp_path):
    line = Timeline(0.0, A, tmp_path, tmp_path)
    line.mark({"event": "training"}, 75.0)
    assert line.deadline() == 60 + 30 + slack(30)
    line.killed(91.5)
    assert "start-up took 75.0 s, past its allowance of 60 s" in line.why_killed() and not line.overran()
    never = Timeline(0.0, A, tmp_path, tmp_path)
    never.killed(91.5)
    assert never.why_killed().startswith("training never started") and not never.overran()
    late = Timeline(0.0, A, tmp_path, tmp_path)
    late.mark({"event": "training"}, 5.0)
    late.killed(40.0)
    assert late.why_killed().startswith("trained past the budget") and late.overran()  # the only cheat
    slow = Timeline(0.0, A, tmp_path, tmp_path)
    slow.mark({"event": "handing over"}, 30.0)
    slow.killed(50.0)
    assert "hand-off (export and save) took longer than its allowance of 20 s" in slow.why_killed()
    assert not slow.overran()


def test_what_is_handed_over_leaves_the_guests_folder_at_the_mark(tmp_path):
    artifact, handed = tmp_path / "artifact", tmp_path / "handed"
    artifact.mkdir()
    handed.mkdir()
    (artifact / "model.pt2").write_bytes(b"the model")
    (artifact / "meta.json").write_text("{}")
    line = Timeline(0.0, A, artifact, handed)
    line.mark({"event": "handing over"}, 1.0)
    line.mark({"event": "handed over", "files": ["model.pt2", "meta.json", "../escape", "/etc/passwd"]}, 2.0)
    assert (handed / "model.pt2").read_bytes() == b"the model" and not (artifact / "model.pt2").exists()
    (artifact / "model.pt2").write_bytes(b"trained on after the hand-off")  # not what the harness scores
    assert (handed / "model.pt2").read_bytes() == b"the model"
    assert sorted(p.name for p in handed.iterdir()) == ["meta.json", "model.pt2"]


def test_a_stall_of_the_harness_moves_the_deadline_of_its_phase_only(tmp_path):
    """What kept the harness from running (a busy machine) kept the guest too: it is not the guest's time."""
    line = Timeline(0.0, A, tmp_path, tmp_path)
    line.mark({"event": "training"}, 5.0)
    line.stalled(4.0)
    line.stalled(-1.0)  # no negative stalls
    assert line.deadline() == 5 + 30 + slack(30) + 4
    line.mark({"event": "handing over"}, 36.0)
    assert line.deadline() == 36 + 20  # the hand-off's own deadline: the training's stall is paid


def test_the_step_in_flight_may_end_past_the_budget_as_long_as_the_longest_step(tmp_path):
    """A run of long steps stops after the step that spent its budget: it is not killed for that step, and a
    guest that makes steps long to earn time gets at most a quarter of the budget."""
    line = Timeline(0.0, A, tmp_path, tmp_path)
    line.mark({"event": "training"}, 5.0)
    for end in (9.0, 13.0, 17.0):  # steps of 4 s, on the harness's clock
        line.mark({"event": "step"}, end)
    assert line.longest_step == 4.0
    assert line.deadline() == 5 + 30 + slack(30) + 4
    line.killed(5 + 30 + slack(30) + 4)
    assert "its longest step 4.0 s" in line.why_killed() and line.overran()
    greedy = Timeline(0.0, A, tmp_path, tmp_path)
    greedy.mark({"event": "training"}, 5.0)
    greedy.mark({"event": "step"}, 30.0)  # one step of 25 s
    assert greedy.deadline() == 5 + 30 + slack(30) + 0.25 * 30
    greedy.mark({"event": "handing over"}, 36.0)
    greedy.mark({"event": "step"}, 37.0)  # after training: moves nothing
    assert greedy.deadline() == 36 + 20
