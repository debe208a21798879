"""Bad input and leftover state: one readable error, a non-zero exit, nothing half-written, no hang."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.errors import ConfigError
from researchorg.world.git import Git
from tests.conftest import cli, copy_task, write_org

ROLE = '[[roles]]\nname = "r"\nbackend = "tuner"\n'


def _one_error(proc, expected: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and expected in proc.stderr, proc.stderr
    if proc.returncode == 1:  # our errors are one line; usage errors (exit 2) are click's usage text
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("text, expected", [
    (b'name = "x\xff"\n' + ROLE.encode(), "not UTF-8"),
    (b'name = "x"\n[[roles]]\nname = "r"\ncount = 2\nbackend = "tuner"\n[[roles]]\nname = "r-1"\nbackend = "tuner"\n',
     "two agents would both be named 'r-1'"),
    (b'name = "x"\n[[roles]]\nname = "r"\ncount = 1000000000\nbackend = "tuner"\n', "less than or equal to 100000"),
    (b'name = "x"\n[rigor]\nsigmas = nan\n' + ROLE.encode(), "finite number"),
])
def test_a_bad_org_file_is_one_line(tmp_path, text, expected):
    org = tmp_path / "org.toml"
    org.write_bytes(text)
    started = time.monotonic()
    _one_error(cli("check", str(org), check=False), expected)
    assert time.monotonic() - started < 20


def test_a_directory_where_the_org_file_should_be_is_one_line(tmp_path):
    (tmp_path / "org.toml").mkdir()
    _one_error(cli("check", str(tmp_path / "org.toml"), check=False), "org.toml")


@pytest.mark.parametrize("edit, expected", [
    (lambda t: 'prepare = "no-such-command --flag"\n' + t, "cannot run its prepare command"),
    (lambda t: t.replace('direction = "maximize"', 'direction = "maximize"\npattern = "acc(uracy"'),
     "metric.pattern: Value error, not a regular expression"),
    (lambda t: t.replace('direction = "maximize"', 'direction = "maximize"\npattern = "accuracy: .*"'),
     "needs a group"),
    (lambda t: t.replace("budget_seconds = 1", "budget_seconds = inf"), "finite number"),
    (lambda t: t.replace("budget_seconds = 1", "budget_seconds = -1"), "greater than 0"),
])
def test_a_bad_task_fails_init_and_leaves_nothing(tmp_path, edit, expected):
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    toml.write_text(edit(toml.read_text()))
    _one_error(cli("init", str(tmp_path / "p"), "--task", str(task), check=False), expected)
    assert not (tmp_path / "p").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".p.")]


@pytest.mark.parametrize("budget", ["inf", "nan", "-2", "0"])
def test_a_non_finite_or_negative_budget_is_refused(tmp_path, budget):
    _one_error(cli("init", str(tmp_path / "p"), "--task", str(copy_task(tmp_path)), "--budget", budget,
                   check=False), "is not a positive number of seconds")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args, expected", [
    (["--slots", "0"], "Invalid value for '--slots'"), (["--threads", "0"], "Invalid value for '--threads'"),
    (["--max-hours", "nan"], "not a positive number of hours"), (["--max-hours", "-1"], "not a positive number"),
    (["--max-experiments", "-1"], "Invalid value for '--max-experiments'"),
])
def test_bad_run_limits_are_refused_before_anything_runs(tmp_path, args, expected):
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)))
    started = time.monotonic()
    _one_error(cli("run", str(program.root), *args, check=False), expected)
    assert time.monotonic() - started < 20 and program.ledger.count() == 0


def test_the_library_refuses_the_same_limits():
    for bad in (dict(max_hours=math.nan), dict(max_hours=math.inf), dict(max_hours=-1.0), dict(max_experiments=-1)):
        with pytest.raises(ConfigError):
            Limits(**bad)
    for slots, threads in ((0, None), (-1, None), (1, 0)):
        with pytest.raises(ConfigError):
            detect_slots(slots, threads)


def test_a_ledger_that_is_not_a_database_is_one_line_and_stays_as_it_was(tmp_path):
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)))
    ledger = program.state_dir / "ledger.db"
    ledger.write_bytes(b"not a database at all\n" * 100)
    for command in ("status", "run", "results"):
        _one_error(cli(command, str(program.root), check=False), "cannot open the ledger: file is not a database")
    assert ledger.read_bytes() == b"not a database at all\n" * 100


def test_submit_from_an_agent_that_proposes_on_its_own_is_refused(tmp_path):
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)),
                           org_file=write_org(tmp_path / "org.toml", "tuner"))
    Runtime(program).run(Limits(max_experiments=1))
    worktree = Path(program.ledger.agent("researcher").worktree)
    proc = cli("submit", "-m", "my change", cwd=worktree, check=False)
    _one_error(proc, "agent researcher is run by the tuner backend")
    assert program.ledger.take_submission("researcher") is None


def test_every_run_evidence_included_has_its_ref(tmp_path):
    org = write_org(tmp_path / "org.toml", "tuner", rigor="\n[rigor]\nnoise_runs = 3\n[[processes]]\nkind = \"merge\"\n"
                    "[[processes]]\nkind = \"verify\"\nruns = 1\n")
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=org)
    Runtime(program).run(Limits(max_experiments=10))
    refs = set(Git(program.root)("for-each-ref", "--format=%(refname)", "refs/experiments").split())
    experiments = program.ledger.experiments()
    assert {e.kind for e in experiments} >= {"noise", "proposal", "verify"}
    assert refs == {f"refs/experiments/{e.id}" for e in experiments}
    for e in experiments:
        assert Git(program.root)("rev-parse", f"refs/experiments/{e.id}") == e.commit


def test_a_tuner_resumes_after_its_knobs_range_shrank(tmp_path):
    """The study is rebuilt from the ledger: a recorded point outside the knob's new range is a failed trial,
    not a crash, and the trial numbers go on."""
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)),
                           org_file=write_org(tmp_path / "org.toml", "tuner"))
    Runtime(program).run(Limits(max_experiments=4))
    task = program.root / "task.toml"
    task.write_text(task.read_text().replace("high = 1.0", "high = 0.01"))
    Runtime(Program(program.root)).run(Limits(max_experiments=6))
    experiments = program.ledger.experiments()
    assert len(experiments) == 6 and all(e.status in ("keep", "discard") for e in experiments)
    trials = [e.proposal["trial"] for e in experiments if "trial" in e.proposal]
    assert trials == sorted(set(trials))
    assert all(e.proposal["params"]["THRESHOLD"] <= 0.01 for e in experiments[4:])


def test_a_baseline_that_fails_alike_stops_the_run_after_the_noise_floor_with_one_line(tmp_path):
    """Every run of the unchanged baseline would fail as the noise floor's did: the run stops there, the
    cause and its fix in one line, instead of spending the budget on the same failure."""
    task = copy_task(tmp_path)
    (task / "train.py").write_text((task / "train.py").read_text().replace('MODE = "ok"', 'MODE = "crash"'))
    org = write_org(tmp_path / "org.toml", "tuner", rigor="\n[rigor]\nnoise_runs = 3\n")
    Program.init(tmp_path / "lab", str(task), org_file=org)
    ran = cli("run", str(tmp_path / "lab"), "--max-experiments", "8", check=False)
    _one_error(ran, "the baseline failed 2 times alike, so every run would")
    assert "exit code 1" in ran.stderr and "fix the task's code" in ran.stderr
    runs = Program(tmp_path / "lab").ledger.experiments()
    floor = [e for e in runs if e.kind == "noise"]
    assert len(floor) >= 2 and all(e.status == "crash" for e in floor)
    assert len(runs) <= 4, [(e.kind, e.status) for e in runs]  # the floor's runs and one in flight, then nothing
