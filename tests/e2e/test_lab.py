"""The whole lab path on real git and real subprocesses, with the quick accuracy task (no torch)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, SqlLedger, detect_slots
from researchorg.world.git import Git
from tests.conftest import NO_NOISE, SCRIPTS, alive, cli, copy_task, default_sigint, pids_in_log, set_line, write_org


def test_tuner_maximizes_and_every_record_agrees(make_program, tmp_path):
    program = make_program(backend="tuner")
    report = Runtime(program).run(Limits(max_experiments=8))
    assert report.stopped_by == "max_experiments" and report.ran == 8
    experiments = program.ledger.experiments()
    assert experiments[0].description == "baseline" and experiments[0].status == "keep"
    assert experiments[0].metric == 0.8  # THRESHOLD 0.5 as shipped
    kept = [e.metric for e in experiments if e.status == "keep"]
    assert kept == sorted(kept) and max(kept) > 0.8  # maximize: every keep is an improvement
    # the agent's branch stands at its best kept commit, its worktree is clean
    agent = program.ledger.agent("researcher")
    best = [e for e in experiments if e.status == "keep"][-1]
    assert agent.head_commit == best.commit
    assert Git(Path(agent.worktree)).head() == best.commit
    assert Git(Path(agent.worktree))("status", "--porcelain") == ""
    # each experiment is one commit, kept reachable under refs/experiments/
    for e in experiments:
        assert Git(program.root)("rev-parse", f"refs/experiments/{e.id}") == e.commit
        assert Git(program.root)("rev-parse", f"{e.commit}^") == e.parent_commit
    # results.tsv, `results`, `results --format json` and the ledger say the same
    tsv = program.results_path.read_text()
    assert cli("results", str(program.root)).stdout == tsv
    rows = json.loads(cli("results", str(program.root), "--format", "json").stdout)
    assert [(r["commit"][:7], r["metric"], r["status"]) for r in rows] == [
        (line.split("\t")[0], float(line.split("\t")[1]), line.split("\t")[3]) for line in tsv.splitlines()[1:]]
    out = tmp_path / "p.png"
    cli("plot", str(program.root), "-o", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_crash_timeout_and_forbidden_edits_are_recorded_and_reset(make_program):
    program = make_program(backend="scripted")
    SCRIPTS["researcher"] = [
        ("baseline", lambda ctx: {}),
        ("crash", set_line("train.py", "MODE", '"crash"')),
        ("hang", set_line("train.py", "MODE", '"hang"')),
        ("edit the evaluator", lambda ctx: {"evaluate.py": "def accuracy(t):\n    return 1.0\n"}),
        ("edit the task", lambda ctx: {"task.toml": ctx.read("task.toml").replace("timeout_seconds = 4", "")}),
        ("new file", lambda ctx: {"notes.txt": "hello\n"}),
        ("escape", lambda ctx: {"../../outside.txt": "x\n"}),
        ("better", set_line("train.py", "THRESHOLD", "0.7")),
    ]
    Runtime(program).run(Limits())
    got = [(e.description, e.status) for e in program.ledger.experiments()]
    assert got == [("baseline", "keep"), ("crash", "crash"), ("hang", "timeout"),
                   ("edit the evaluator", "invalid"), ("edit the task", "invalid"), ("new file", "invalid"),
                   ("escape", "invalid"), ("better", "keep")]
    experiments = {e.description: e for e in program.ledger.experiments()}
    assert "RuntimeError: deliberate crash" in experiments["crash"].reason
    assert "evaluate.py, which may not be edited" in experiments["edit the evaluator"].reason
    assert "outside the worktree" in experiments["escape"].reason
    assert not (program.root.parent / "outside.txt").exists()
    for name in ("edit the evaluator", "edit the task", "new file", "escape"):
        assert not Path(experiments[name].log_path).exists(), "an invalid experiment must never run"
    assert experiments["better"].metric == 1.0
    worktree = Path(program.ledger.agent("researcher").worktree)
    assert Git(worktree)("status", "--porcelain") == ""
    assert "def accuracy(threshold" in (worktree / "evaluate.py").read_text()


def test_uncommitted_tampering_never_reaches_the_run(make_program):
    program = make_program(backend="scripted")

    def tamper(ctx):  # the commit is clean, but the agent's worktree is not
        (ctx.worktree / "evaluate.py").write_text("def accuracy(t):\n    return 1.0\n")
        Git(ctx.worktree)("update-index", "--assume-unchanged", "evaluate.py")
        return {}

    SCRIPTS["researcher"] = [("sneaky", tamper)]
    Runtime(program).run(Limits())
    (e,) = program.ledger.experiments()
    assert e.metric == 0.8  # the run used the committed evaluator, in the slot's own checkout
    assert e.slot == "cpu0"


def test_protected_file_check_names_the_file(tmp_path):
    from researchorg.world.guard import check_protected, file_hashes

    (tmp_path / "evaluate.py").write_text("real\n")
    hashes = file_hashes(tmp_path, ["evaluate.py"])
    assert check_protected(tmp_path, hashes) is None
    (tmp_path / "evaluate.py").write_text("forged\n")
    assert check_protected(tmp_path, hashes) == "protected file evaluate.py does not match its recorded hash"
    (tmp_path / "evaluate.py").unlink()
    assert check_protected(tmp_path, hashes) == "protected file evaluate.py is missing"


def _hanging_run(program: Program, *args: str, running: int = 1) -> subprocess.Popen:
    """Start `researchorg run` in a subprocess whose experiments hang; wait until `running` of them run."""
    proc = subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(program.root), *args],
                            env={**os.environ, "ACCURACY_HANG": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    ledger = SqlLedger(program.root / ".researchorg" / "ledger.db")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = [e for e in ledger.experiments(status="running")
                   if e.pid and Path(e.log_path).exists() and "child" in Path(e.log_path).read_text()]
        if len(started) >= running:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no experiment started: {proc.communicate()[0]}")


def _slow_program(tmp_path: Path, agents: int = 1) -> Program:
    """A program on the accuracy task with a long timeout, so only a signal ends a hanging run."""
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("timeout_seconds = 4", "timeout_seconds = 120"))
    org = write_org(tmp_path / "org.toml", "tuner", count=agents)
    return Program.init(tmp_path / "program", str(task), org_file=org)


def test_ctrl_c_records_interrupted_and_run_resumes(tmp_path):
    program = _slow_program(tmp_path)
    proc = _hanging_run(program)
    (running,) = program.ledger.experiments(status="running")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopped by Ctrl-C" in out and "resume with: python -m researchorg run" in out and "Traceback" not in out
    (e,) = program.ledger.experiments()
    assert e.status == "interrupted" and e.id == running.id
    assert not any(alive(pid) for pid in pids_in_log(e.log_path)), "the run's children survived Ctrl-C"
    worktree = Path(program.ledger.agent("researcher").worktree)
    assert Git(worktree)("status", "--porcelain") == ""
    # run again: the interrupted baseline is run again, not lost, and nothing runs twice
    cli("run", str(program.root), "--max-experiments", "3")
    experiments = program.ledger.experiments()
    assert [e.status for e in experiments][:2] == ["interrupted", "keep"]
    assert experiments[1].description == "baseline"
    assert len(experiments) == 4 and len({e.commit for e in experiments}) == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_kill_or_a_closed_terminal_stops_the_run_as_ctrl_c_does(tmp_path, sig):
    """`kill PID` (a run under nohup) and a closed terminal: the runs in flight die with the lab, and are recorded."""
    program = _slow_program(tmp_path)
    proc = _hanging_run(program)
    (running,) = program.ledger.experiments(status="running")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, out
    assert f"stopped by {signal.Signals(sig).name}" in out and "resume with:" in out
    (e,) = program.ledger.experiments()
    assert e.status == "interrupted" and e.id == running.id
    assert not any(alive(pid) for pid in pids_in_log(e.log_path) + [running.pid])


def test_ctrl_c_with_two_slots_busy_interrupts_both(tmp_path):
    program = _slow_program(tmp_path, agents=2)
    proc = _hanging_run(program, "--slots", "2", "--threads", "1", running=2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    experiments = program.ledger.experiments()
    assert [e.status for e in experiments] == ["interrupted", "interrupted"]
    assert {e.slot for e in experiments} == {"cpu0", "cpu1"}
    assert not any(alive(pid) for e in experiments for pid in pids_in_log(e.log_path))
    for agent in program.ledger.agents():
        assert Git(Path(agent.worktree))("status", "--porcelain") == ""


@pytest.mark.parametrize("mode", ["auto", "landlock"])
def test_kill_9_then_resume_loses_nothing(tmp_path, monkeypatch, mode):
    """With bubblewrap the run's sandbox dies with the lab; without it, the run outlives a kill -9 and the
    resumed lab kills it. Either way nothing is lost or recorded twice."""
    monkeypatch.setenv("RESEARCHORG_SANDBOX", mode)
    program = _slow_program(tmp_path)
    proc = _hanging_run(program)
    (running,) = program.ledger.experiments(status="running")
    orphans = pids_in_log(running.log_path) + [running.pid]
    assert len(orphans) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if mode == "auto" and shutil.which("bwrap"):
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in orphans), "a sandboxed run must die with its lab"
    else:
        assert any(alive(pid) for pid in orphans), "expected the run's process group to outlive kill -9"
    worktree = Path(program.ledger.agent("researcher").worktree)
    (Path(Git(worktree)("rev-parse", "--git-path", "index.lock"))).touch()  # as a git killed mid-write leaves
    cli("run", str(program.root), "--max-experiments", "3")
    time.sleep(0.2)
    assert not any(alive(pid) for pid in orphans), "resume must kill what the killed run left running"
    experiments = program.ledger.experiments()
    assert experiments[0].status == "interrupted" and experiments[0].id == running.id
    assert [e.status for e in experiments[1:]].count("interrupted") == 0
    assert sum(e.status != "interrupted" for e in experiments) == 3
    agent = program.ledger.agent("researcher")
    assert Git(Path(agent.worktree)).head() == agent.head_commit
    assert Git(Path(agent.worktree))("status", "--porcelain") == ""
    # the tuner's study is rebuilt from the ledger: the point the kill cut off is asked again, trial numbers go on
    assert experiments[1].proposal["params"] == running.proposal["params"]
    trials = [e.proposal["trial"] for e in experiments]
    assert trials == sorted(set(trials)), trials
    assert not (program.state_dir / "agents/researcher/optuna.journal").exists()  # no second record to disagree


def test_random_agent_runs_and_its_study_resumes(make_program):
    program = make_program(backend="random")
    Runtime(program).run(Limits(max_experiments=3))
    Runtime(Program(program.root)).run(Limits(max_experiments=6))
    experiments = program.ledger.experiments()
    assert len(experiments) == 6 and [e.description for e in experiments].count("baseline") == 1
    trials = [e.proposal["trial"] for e in experiments]
    assert trials == sorted(set(trials))  # the second run continued the same study
    assert all(e.hypothesis.startswith("RandomSampler") for e in experiments[1:])


def test_missing_python_module_is_one_error_before_anything_runs(tmp_path):
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("seed = 7", 'seed = 7\nrequires = ["no_such_module_xyz"]'))
    proc = cli("init", str(tmp_path / "p"), "--task", str(task), check=False)
    assert proc.returncode == 1 and "needs the Python module(s) no_such_module_xyz" in proc.stderr


def test_second_run_on_the_same_program_is_refused(tmp_path):
    program = _slow_program(tmp_path)
    proc = _hanging_run(program)
    try:
        second = cli("run", str(program.root), check=False)
        assert second.returncode == 1
        assert "another `researchorg run` is working on" in second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.parametrize("args, message", [
    (["run", "/nonexistent/dir"], "is not a researchorg program"),
    (["init", "{tmp}/x", "--task", "nope"], "no task 'nope'"),
    (["init", "{tmp}/x", "--org", "{tmp}/bad.toml"], "bad.toml: roles.0.backend: unknown backend"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text('name = "x"\n[[roles]]\nname = "r"\nbackend = "gpt"\n')
    proc = cli(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def _on_two_slots(program: Program, monkeypatch, max_experiments: int):
    """Run on two one-core slots with runs that last a second, so they overlap."""
    monkeypatch.setenv("ACCURACY_SLEEP", "1")
    report = Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=max_experiments))
    experiments = program.ledger.experiments()
    assert len(experiments) == max_experiments and report.stopped_by == "max_experiments"
    assert {e.slot for e in experiments} == {"cpu0", "cpu1"}
    # runs overlapped in time: two slots busy at once (utilization itself is measured by benchmarks/)
    intervals = sorted((e.started_at, e.ended_at) for e in experiments)
    assert any(b[0] < a[1] for a, b in zip(intervals, intervals[1:], strict=False)), intervals
    return experiments


def test_two_agents_on_two_slots_run_at_once_on_their_own_branches(tmp_path, monkeypatch):
    org = tmp_path / "org.toml"
    write_org(org, "tuner", count=2)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    experiments = _on_two_slots(program, monkeypatch, 6)
    assert {e.agent for e in experiments} == {"researcher-1", "researcher-2"}
    # each slot pinned to its own core
    cores = {e.slot: Path(e.log_path).read_text().split("cores ")[1].splitlines()[0] for e in experiments}
    assert cores["cpu0"] != cores["cpu1"]
    for agent in ("researcher-1", "researcher-2"):
        row = program.ledger.agent(agent)
        assert row.branch == f"agents/{agent}"
        assert Git(Path(row.worktree)).head() == row.head_commit
        assert [e.description for e in program.ledger.experiments(agent=agent)][0] == "baseline"


def test_a_failing_agent_is_paused_and_the_others_go_on(tmp_path):
    org = tmp_path / "org.toml"
    org.write_text('name = "mixed"\n[[roles]]\nname = "flaky"\nbackend = "scripted"\n'
                   '[[roles]]\nname = "steady"\nbackend = "tuner"\n' + NO_NOISE)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)

    def explode(ctx):
        raise RuntimeError("backend fell over")

    SCRIPTS["flaky"] = [("fine", set_line("train.py", "THRESHOLD", "0.6")), ("boom", explode)]
    report = Runtime(program, slots=detect_slots(1)).run(Limits(max_experiments=5))
    assert report.paused == {"flaky": "RuntimeError: backend fell over"}
    assert program.ledger.count(agent="flaky") == 1 and program.ledger.count(agent="steady") == 4
    events = [e for e in program.ledger.events() if e.kind == "agent_paused"]
    assert events and "backend fell over" in events[0].data["traceback"]


def test_one_agent_with_two_in_flight_fills_two_slots(tmp_path, monkeypatch):
    org = tmp_path / "org.toml"
    org.write_text('name = "pipelined"\n[[roles]]\nname = "researcher"\nbackend = "tuner"\nin_flight = 2\n' + NO_NOISE)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    experiments = _on_two_slots(program, monkeypatch, 4)
    assert experiments[0].description == "baseline"
    # the agent's branch stands at the keep decided last (with two in flight, not always the later id); every
    # experiment is a child of a head it had
    agent = program.ledger.agent("researcher")
    kept = [e for e in experiments if e.status == "keep"]
    assert agent.head_commit == max(kept, key=lambda e: e.ended_at).commit
    heads = {program.ledger.program().baseline_commit} | {e.commit for e in kept}
    assert all(e.parent_commit in heads for e in experiments)


def test_check_validates_examples_and_programs(tmp_path):
    root = Path(__file__).parents[2]
    out = cli("check", str(root / "examples" / "solo")).stdout
    assert "org solo, 2 agents: researcher-1 (tuner), researcher-2 (tuner)" in out
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=root / "examples/solo/org.toml")
    out = cli("check", str(program.root)).stdout
    assert "task accuracy, 1 s budget, accuracy (maximize), 1 knobs" in out
    (tmp_path / "bad.toml").write_text('name = "x"\n[[roles]]\nname = "r"\nbackend = "tuner"\ncount = 0\n')
    bad = cli("check", str(tmp_path / "bad.toml"), check=False)
    assert bad.returncode == 1 and "bad.toml: roles.0.count: Input should be greater than or equal to 1" in bad.stderr


def test_standup_posts_digests_to_every_inbox(tmp_path):
    root = Path(__file__).parents[2]
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=root / "examples/standup/org.toml")
    Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=15))  # 5 noise-floor runs + 10
    assert program.ledger.count() == 15 and len(program.ledger.experiments(kind="noise")) == 5
    digests = program.ledger.messages()
    assert len(digests) == 2 and all(m.kind == "digest" and m.recipient is None for m in digests)
    assert "researcher-1" in digests[0].body and "researcher-2" in digests[0].body
    for agent in ("researcher-1", "researcher-2"):
        inbox = (Path(program.ledger.agent(agent).worktree) / ".researchorg" / "inbox.md").read_text()
        assert f"# Inbox of {agent}" in inbox and inbox.count("digest from standup to everyone") == 2
        assert Git(Path(program.ledger.agent(agent).worktree))("status", "--porcelain") == ""  # never committed
    shown = cli("messages", str(program.root), "--agent", "researcher-1").stdout
    assert "digest from standup to everyone" in shown and "Standup: 4 experiments" in shown


def test_agents_message_each_other(make_program, tmp_path):
    program = make_program(backend="scripted")

    def note(ctx):
        ctx.send("researcher", "note", "remember: the threshold matters")
        return {}

    SCRIPTS["researcher"] = [("write a note", note)]
    Runtime(program).run(Limits())
    (m,) = program.ledger.messages(for_agent="researcher")
    assert m.sender == "researcher" and m.body == "remember: the threshold matters"
    with pytest.raises(ValueError, match="no agent named 'nobody'"):
        Runtime(program).post.send("researcher", "nobody", "note", "x")


def test_a_screening_run_trains_for_its_share_of_the_budget_and_every_record_says_so(tmp_path):
    """screen-gate in the real lab: a proposal's command is handed a quarter of the budget, the noise floor's
    and the gate's runs the whole of it; the budget counts the quarter; results.tsv and the summary tell them
    apart."""
    org = write_org(tmp_path / "org.toml", "tuner", rigor="\n[rigor]\nnoise_runs = 2\n[[processes]]\nkind = "
                    "\"merge\"\n").read_text()
    (tmp_path / "org.toml").write_text(org.replace('name = "test-org"', 'name = "test-org"\npolicy = "screen-gate"'))
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=tmp_path / "org.toml")
    Runtime(program).run(Limits(max_experiments=8))
    runs = [e for e in program.ledger.experiments() if e.status != "interrupted"]
    assert program.ledger.spent(("interrupted",)) == sum(e.fidelity for e in runs) <= 8
    screens = [e for e in runs if e.kind == "proposal"]
    assert screens and all(e.fidelity == 0.25 for e in screens) and len(runs) > 8
    for e in runs:
        said = Path(e.log_path).read_text().splitlines()[0]
        assert said.endswith(f"budget {0.25 if e.fidelity < 1 else 1}"), (e.id, e.kind, said)
    assert {e.fidelity for e in runs if e.kind == "noise"} == {0.25, 1.0}
    tsv = (program.root / "results.tsv").read_text().splitlines()
    assert sum("[25% of the budget]" in line for line in tsv) == sum(e.fidelity < 1 for e in runs)
    status = cli("status", str(program.root)).stdout
    assert "baseline" in status
