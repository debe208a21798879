"""The first hour of a researcher: output in a log, resume without replays, honest numbers, short runs, small
conveniences. On the quick accuracy task (no torch), through the real command line where a person would be."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, SqlLedger
from researchorg.report.console import RunView
from researchorg.report.plot import progress_plot
from researchorg.report.summary import program_summary
from tests.conftest import cli, copy_task, default_sigint, write_org

NOISE = "\n[rigor]\nnoise_runs = 3\n[[processes]]\nkind = \"merge\"\n[[processes]]\nkind = \"verify\"\nruns = 1\n"


def _program(tmp_path: Path, rigor: str = NOISE, backend: str = "tuner", **task_edits: str) -> Program:
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    text = toml.read_text()
    for old, new in task_edits.items():
        text = text.replace(old, new)
    toml.write_text(text)
    org = write_org(tmp_path / "org.toml", backend, rigor=rigor)
    return Program.init(tmp_path / "program", str(task), org_file=org)


def test_run_into_a_file_logs_a_line_per_run_and_the_summary(tmp_path):
    program = _program(tmp_path)
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "researchorg", "run", str(program.root), "--max-experiments",
                               "9"], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "80"})
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = text.splitlines()
    finished = [line for line in lines if line.startswith("[") and "/9] #" in line]
    assert len(finished) == 9, text  # one line per finished run, noise floor and verifications included
    assert any("rigor first: 3 noise-floor runs" in line for line in lines)
    assert any(line.startswith("noise floor: accuracy") for line in lines)
    assert any(line.startswith("main: #") and "merged" in line for line in lines), text  # what became of a keep
    assert "baseline" in text and "main" in text and "reached --max-experiments" in text
    assert "\x1b[" not in text and "━" not in text  # no terminal control codes, no progress bars frozen in
    assert text.endswith("\n")


def test_ctrl_c_under_a_dead_pipe_still_tells_the_summary_and_how_to_resume(tmp_path):
    """`researchorg run DIR | tee log` and Ctrl-C: tee dies at once, so what is left to say goes to stderr."""
    program = _program(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(program.root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
                            env={**os.environ, "ACCURACY_SLEEP": "3"})
    ledger = SqlLedger(program.state_dir / "ledger.db")
    deadline = time.monotonic() + 60
    while not any(e.pid for e in ledger.experiments(status="running")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.stdout.close()  # the reader is gone
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert "stopped by Ctrl-C" in err and f"resume with: python -m researchorg run {program.root}" in err, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def _interrupting_runtime(program: Program, after: int) -> Runtime:
    """A runtime that stops as Ctrl-C does once `after` more runs have finished."""
    finished = []

    def on_event(kind: str, data: dict) -> None:
        if kind == "experiment_finished":
            finished.append(data["experiment"])
            if len(finished) == after:
                runtime.interrupt()
    runtime = Runtime(program, on_event=on_event)
    return runtime


def test_a_tuner_interrupted_three_times_runs_no_configuration_twice(tmp_path):
    program = _program(tmp_path)
    for after in (2, 4, 3):
        report = _interrupting_runtime(Program(program.root), after).run(Limits(max_experiments=40))
        assert report.stopped_by == "interrupted"
    Runtime(Program(program.root)).run(Limits(max_experiments=24))
    experiments = program.ledger.experiments()
    proposals = [e for e in experiments if e.kind == "proposal" and e.status != "interrupted"]
    assert len(proposals) >= 10
    trees = [e.tree for e in proposals]
    assert len(set(trees)) == len(trees), [e.description for e in proposals]
    baseline = {e.tree for e in experiments if e.kind == "noise"}
    assert not baseline & set(trees), "the noise floor measured the baseline: the tuner must not run it again"


def test_plot_status_and_summary_report_the_same_baseline_and_main(tmp_path):
    program = _program(tmp_path)
    run = cli("run", str(program.root), "--max-experiments", "12").stdout
    experiments = program.ledger.experiments()
    summary = program_summary(program.ledger, program.task.metric, program.org(), experiments)
    drawn = progress_plot(experiments, program.task.metric, tmp_path / "p.png", summary)
    assert summary.baseline.kind == "noise" and summary.count(summary.baseline) == 3
    merges = program.ledger.merges()
    assert merges, "the org merges kept changes that reproduce"
    assert summary.main.id == merges[-1].experiment_id and summary.result is summary.main
    assert (drawn.steps[0][1], drawn.steps[-1][1]) == (summary.value(summary.baseline), summary.value(summary.main))
    status = cli("status", str(program.root)).stdout
    plotted = cli("plot", str(program.root), "-o", str(tmp_path / "q.png")).stdout
    for shown in (summary.describe(summary.baseline), summary.describe(summary.main)):
        assert shown in run and shown in status, shown
    assert summary.headline("accuracy") in plotted
    on_main = summary.describe(summary.main)
    assert f"after {len(merges)} merge" in status and f"{on_main} " in run


def test_the_view_shows_recovered_runs_as_interrupted_and_borderline_ones_as_deciding(tmp_path):
    program = _program(tmp_path)
    program.ledger.ensure_agent("researcher", "researcher", "tuner", "", "", program.ledger.program().baseline_commit)
    base = program.ledger.program().baseline_commit
    stale = program.ledger.start_experiment("researcher", base, base, diff="", description="left by kill -9",
                                            hypothesis="", proposal={}, seed=1, log_dir=program.logs_dir)
    said = []
    view = RunView(program.task, program.ledger, 6, said.append)
    runtime = Runtime(program, on_event=view.on_event)
    runtime.recover()
    view.on_event("run_started", {"noise_runs": {}, "agents": ["researcher"], "slots": ["cpu0"]})
    assert view.tally.by_status == {"interrupted": 1}
    assert any("interrupted" in str(line) and f"#{stale.id}" in str(line) for line in said)
    # the footer with a baseline and nothing kept yet (the noise floor's first run)
    program.ledger.ensure_agent("lab", "lab", "lab", "", "", base)
    noise = program.ledger.start_experiment("lab", base, base, diff="", description="baseline (noise floor)",
                                            hypothesis="", proposal={}, seed=4, log_dir=program.logs_dir,
                                            kind="noise", tree=program.git.tree_of(base))
    view.on_event("experiment_finished", {"experiment": program.ledger.finish_experiment(noise.id, "measured",
                                                                                         metric=0.8)})
    from rich.console import Console

    first = Console(width=100, record=True, file=open(os.devnull, "w"))
    first.print(view)
    assert "the baseline 0.8000 (#" in first.export_text()
    # a candidate whose run ended but whose decision waits for re-runs is deciding, not running
    candidate = program.ledger.start_experiment("researcher", base, base, diff="x", description="candidate",
                                                hypothesis="", proposal={}, seed=2, log_dir=program.logs_dir)
    rerun = program.ledger.start_experiment("researcher", base, base, diff="", description="candidate",
                                            hypothesis="", proposal={}, seed=3, log_dir=program.logs_dir,
                                            kind="rerun", rerun_of=candidate.id)
    view.on_event("experiment_started", {"experiment": candidate, "slot": "cpu0"})
    view.on_event("run_ended", {"experiment": candidate, "status": "ok", "metric": 0.8})
    view.on_event("experiment_started", {"experiment": rerun, "slot": "cpu0"})

    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    console.print(view)
    footer = console.export_text()
    assert f"#{candidate.id} researcher deciding: borderline, running #{rerun.id}" in footer, footer
    assert footer.count(f"#{candidate.id} ") == 1, footer


def test_results_tsv_says_what_each_row_is(tmp_path):
    program = _program(tmp_path)
    cli("run", str(program.root), "--max-experiments", "9")
    rows = [line.split("\t") for line in program.results_path.read_text().splitlines()[1:]]
    experiments = program.ledger.experiments()
    assert len(rows) == len(experiments)
    for row, e in zip(rows, experiments, strict=True):
        assert row[3] in ("keep", "discard", "crash")
        if e.kind == "noise":
            assert row[3] == "keep" and row[4].startswith("noise floor of the baseline, seed "), row
        elif e.kind == "verify":
            assert row[3] == program.ledger.experiment(e.rerun_of).status
            assert row[4].startswith(f"verification of #{e.rerun_of}, seed "), row
    noise = [row for row, e in zip(rows, experiments, strict=True) if e.kind == "noise"]
    assert len(noise) == 3


def test_a_short_run_still_tries_ideas_and_says_what_rigor_costs(tmp_path):
    program = _program(tmp_path, rigor="\n[rigor]\nnoise_runs = 5\n")
    out = cli("run", str(program.root), "--max-experiments", "8").stdout
    assert "rigor first: 2 noise-floor runs of the baseline" in out, out
    experiments = program.ledger.experiments()
    ideas = [e for e in experiments if e.kind == "proposal"]
    assert len(ideas) >= 5 and all(e.description != "baseline" for e in ideas), [e.description for e in ideas]


def test_help_is_plain_and_short_flags_work():
    for args in ([], ["run"], ["submit"], ["bench"], ["check"]):
        text = cli(*args, "-h").stdout
        assert text.startswith("Usage: python -m researchorg") and "<bool>" not in text, text
    assert "{directory}" not in cli("run", "-h").stdout


def test_a_tuner_on_a_task_without_knobs_is_refused_by_check_and_run_not_only_by_the_agent(tmp_path):
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().split("[[knobs]]")[0])
    init = cli("init", str(tmp_path / "p"), "--task", str(task)).stdout
    assert "warning:" in init and "the tuner backend tunes the task's knobs" in init
    for command in ("check", "run"):
        proc = cli(command, str(tmp_path / "p"), check=False)
        assert proc.returncode == 1 and "roles.researcher: the tuner backend tunes the task's knobs" in proc.stderr
    assert Program(tmp_path / "p").ledger.count() == 0


def test_init_that_fails_or_is_interrupted_leaves_nothing_behind(tmp_path):
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    base = toml.read_text()
    toml.write_text('prepare = "python -c \'import sys; sys.exit(3)\'"\n' + base)
    proc = cli("init", str(tmp_path / "p"), "--task", str(task), check=False)
    assert proc.returncode == 1 and "failed" in proc.stderr and not (tmp_path / "p").exists()
    toml.write_text('prepare = "python -c \'import time; time.sleep(30)\'"\n' + base)
    init = subprocess.Popen([sys.executable, "-m", "researchorg", "init", str(tmp_path / "p"), "--task", str(task)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".p.init-") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    init.send_signal(signal.SIGINT)
    _, err = init.communicate(timeout=30)
    assert init.returncode != 0 and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".p", "p"))] == [], list(tmp_path.iterdir())


def test_two_resumed_tuners_do_not_sample_the_same_stream(tmp_path):
    program = _program(tmp_path, rigor="\n[rigor]\nnoise_runs = 0\n", backend="random")
    org = (program.root / "org.toml").read_text().replace("count = 1", "count = 2")
    (program.root / "org.toml").write_text(org)
    Runtime(Program(program.root)).run(Limits(max_experiments=5))
    before = program.ledger.count()
    Runtime(Program(program.root)).run(Limits(max_experiments=15))
    later = [e for e in program.ledger.experiments()[before:] if e.kind == "proposal"]
    mine = {agent: [e.description.split("->")[-1] for e in later if e.agent == agent]
            for agent in ("researcher-1", "researcher-2")}
    assert all(len(v) >= 3 for v in mine.values()) and len(set(mine["researcher-1"]) & set(mine["researcher-2"])) <= 1


def test_a_keep_whose_verification_was_interrupted_is_verified_and_merged_on_resume(tmp_path):
    program = _program(tmp_path)

    def stop_at_verify(kind: str, data: dict) -> None:
        if kind == "experiment_started" and data["experiment"].kind == "verify":
            runtime.interrupt()
    runtime = Runtime(program, on_event=stop_at_verify)
    assert runtime.run(Limits(max_experiments=30)).stopped_by == "interrupted"
    (cut,) = [e for e in program.ledger.experiments(status="keep") if e.kind == "proposal"][-1:]
    assert not program.ledger.merges() and not program.ledger.verifications()
    said = []
    resumed = Runtime(Program(program.root), on_event=lambda kind, data: said.append((kind, data)))
    resumed.run(Limits(max_experiments=program.ledger.count(exclude=("interrupted",)) + 1))
    assert [v.experiment_id for v in program.ledger.verifications()] == [cut.id]
    assert [m.experiment_id for m in program.ledger.merges()] == [cut.id]
    assert any(kind == "merge_decided" and data["experiment"].id == cut.id for kind, data in said)


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_short_runs_small_noise_floor_is_topped_up_later_and_a_tiny_run_claims_no_failure(tmp_path):
    program = _program(tmp_path, rigor="\n[rigor]\nnoise_runs = 5\n")
    tiny = cli("run", str(program.root), "--max-experiments", "1").stdout
    assert "noise floor" not in tiny and "fewer than" not in tiny, tiny
    cli("run", str(program.root), "--max-experiments", "5")
    assert len(program.ledger.noise_floor().runs) == 2
    out = cli("run", str(program.root), "--max-experiments", "23").stdout
    assert "rigor first: 3 noise-floor runs" in out, out
    assert len(program.ledger.noise_floor().runs) == 5 and len(program.ledger.experiments(kind="noise")) == 5


ONE_STORY = ('name = "one-story"\npolicy = "greedy"\n[[roles]]\nname = "researcher"\nbackend = "scripted"\n'
             '[rigor]\nnoise_runs = 2\n[[processes]]\nkind = "merge"\n[[processes]]\nkind = "verify"\nruns = 2\n')


def test_every_report_tells_the_story_of_main_and_names_a_kept_run_main_rejected(tmp_path):
    """A kept run the lab would not merge (its verification could not be paid) is a candidate everywhere, and
    every report leads with main: the summary, status, the plot, the dashboard and results.tsv."""
    from rich.console import Console

    from researchorg.dashboard.data import ProgramData
    from researchorg.report.console import summary_table
    from tests.conftest import SCRIPTS, set_line

    org = tmp_path / "org.toml"
    org.write_text(ONE_STORY)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    SCRIPTS["researcher"] = [("threshold 0.6", set_line("train.py", "THRESHOLD", "0.6")),
                             ("threshold 0.7", set_line("train.py", "THRESHOLD", "0.7"))]
    # 2 noise-floor runs, a proposal, its 2 verifications, and a proposal whose verification is not paid for
    said: list[str] = []
    view = RunView(program.task, program.ledger, 6, lambda line: said.append(line.plain), program.org())
    Runtime(program, on_event=view.on_event).run(Limits(max_experiments=6))
    ledger = program.ledger
    rendered = Console(width=200, file=io.StringIO())
    rendered.print(summary_table(program_summary(ledger, program.task.metric, program.org()), program.task, ledger))
    run = "\n".join(said) + "\n" + rendered.file.getvalue()
    merges = ledger.merges()
    assert [ledger.experiment(m.experiment_id).description for m in merges] == ["threshold 0.6"]
    summary = program_summary(ledger, program.task.metric, program.org())
    main, candidate = summary.main, summary.candidate
    assert main.description == "threshold 0.6" and summary.result is main
    assert candidate is not None and candidate.description == "threshold 0.7" and candidate.status == "keep"
    assert summary.steps[-1][0] is main  # the step line ends at main, not at the better candidate
    status = cli("status", str(program.root)).stdout
    for report in (run, status):
        flat = " ".join(report.replace("│", " ").split())
        assert f"main {summary.describe(main)}" in flat, flat
        assert f"candidate {summary.describe(candidate)}: threshold 0.7; not on main: it could not be verified" \
               in flat, flat
        assert "best " not in flat.split("candidate")[0].split("baseline")[-1]  # the candidate is not a best
    plotted = cli("plot", str(program.root), "-o", str(tmp_path / "p.png")).stdout
    assert summary.headline("accuracy") in " ".join(plotted.split())
    assert summary.headline("accuracy").startswith(f"main {summary.describe(main, 4)}: ")
    frontier = ProgramData(program.root).frontier()
    assert frontier["headline"] == summary.headline("accuracy") and frontier["main"][-1]["id"] == main.id
    assert frontier["candidate"] == summary.describe(candidate)
    rows = [line.split("\t") for line in program.results_path.read_text().splitlines()[1:]]
    kept = [row[0] for row in rows if row[3] == "keep"]
    assert kept[0] == ledger.program().baseline_commit[:7] and kept[-1] == main.commit[:7]
    assert {c for c in kept} <= {ledger.program().baseline_commit[:7], main.commit[:7]}
    rejected = next(row for row in rows if row[0] == candidate.commit[:7])
    assert rejected[3] == "discard" and rejected[4].startswith("[kept, not on main]"), rejected
