"""Adopting a repository (`researchorg init DIR --from REPO`): an autoresearch-style one by its layout, and one of
another shape by a command and a metric. The repositories are made here, real git on a branch not called main,
and run end to end through the real lab (CPU, no network)."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from researchorg import Program
from tests.conftest import cli, git

PREPARE = '''
"""Fixed constants, one-time data preparation and the evaluation (do not modify)."""
import os
import random
import sys

TIME_BUDGET = 300  # training time budget in seconds (5 minutes)
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "autoresearch")


def load(split):
    with open(os.path.join(CACHE_DIR, f"{split}.txt")) as f:
        return [float(line) for line in f]


def evaluate_bpb(w):
    val = load("val")
    return sum((x - w) ** 2 for x in val) / len(val)


if __name__ == "__main__":
    os.makedirs(CACHE_DIR, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 200), ("val", 50)):
        with open(os.path.join(CACHE_DIR, f"{split}.txt"), "w") as f:
            f.write("".join(f"{rng.gauss(3.0, 1.0)}\\n" for _ in range(n)))
    print("prepared", CACHE_DIR, file=sys.stderr)
'''

TRAIN = '''
"""A tiny model: one weight fitted to the data by gradient descent within the budget."""
import time

from prepare import TIME_BUDGET, evaluate_bpb, load

LEARNING_RATE = 0.01  # step size
NUM_EPOCHS = 4

t0 = time.time()
data, w, step = load("train"), 0.0, 0
for epoch in range(NUM_EPOCHS):
    for x in data:
        w -= LEARNING_RATE * 2 * (w - x)
        step += 1
    if time.time() - t0 >= TIME_BUDGET:
        break
print("---")
print(f"val_bpb:          {evaluate_bpb(w):.6f}")
print(f"training_seconds: {time.time() - t0:.1f}")
print(f"peak_vram_mb:     {0.0:.1f}")
print(f"num_steps:        {step}")
'''


def _repository(path: Path, files: dict[str, str], branch: str = "master") -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text).lstrip())
    git(path, "init", "-q", "-b", branch)
    git(path, "add", "-A")
    git(path, "-c", "user.name=you", "-c", "user.email=you@example.com", "commit", "-q", "-m", "my research")
    return path


def test_an_autoresearch_style_repository_is_adopted_with_its_history_and_runs_end_to_end(tmp_path, home):
    repo = _repository(tmp_path / "autoresearch", {
        "prepare.py": PREPARE, "train.py": TRAIN, "program.md": "# autoresearch\n\nLower val_bpb.\n",
        "pyproject.toml": '[project]\nname = "tiny"\ndescription = "A tiny autoresearch"\n',
        "results.tsv": "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"})  # yours, committed
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# not committed\n")
    refused = cli("init", str(tmp_path / "lab"), "--from", str(repo), check=False)
    assert refused.returncode == 1 and not (tmp_path / "lab").exists()
    assert "has uncommitted changes to train.py: commit or stash them first" in refused.stderr
    git(repo, "checkout", "--", "train.py")

    made = cli("init", str(tmp_path / "lab"), "--from", str(repo), "--budget", "2").stdout
    assert "budget_seconds = 2  (--budget 2 (prepare.py's TIME_BUDGET rewritten from 300 to 2 to match))" in made
    assert "the interpreter below" not in made and "run by the lab's own Python" in made  # it has no .venv
    assert 'metric = {name = "val_bpb", direction = "minimize"}  (train.py:' in made
    assert "an edit there could forge it" in made and "runs at the first `run`" in made
    assert "results.tsv was committed in the repository" in made
    lab = tmp_path / "lab"
    task = tomllib.loads((lab / "task.toml").read_text())
    assert (task["editable"], task["protected"][:3]) == (["train.py"], ["prepare.py", "program.md", "pyproject.toml"])
    assert task["metric"] == {"name": "val_bpb", "direction": "minimize"} and task["budget_seconds"] == 2
    assert task["summary_keys"] == {"peak_vram_mb": "peak_mem_mb", "num_steps": "steps"}
    assert [k["name"] for k in task["knobs"]] == ["LEARNING_RATE", "NUM_EPOCHS"]
    # the budget the lab enforces, its comment saying so
    assert "TIME_BUDGET = 2  # training time budget in seconds (2 seconds)\n" in (lab / "prepare.py").read_text()
    assert "budget_seconds = 2  # --budget 2 (" in (lab / "task.toml").read_text()
    # its history, on main, with the adoption on top; the repository itself is untouched
    assert git(lab, "branch", "--show-current").strip() == "main"
    assert [line.split(" ", 1)[1] for line in git(lab, "log", "--format=%h %s").splitlines()] == \
        ["researchorg: adopt " + str(repo) + " as task autoresearch", "my research"]
    assert "TIME_BUDGET = 300" in (repo / "prepare.py").read_text() and not (repo / "task.toml").exists()
    assert "ok" in cli("check", str(lab), "--offline").stdout
    assert not git(lab, "ls-files", "results.tsv").strip()  # the lab's own results.tsv is not a change to main

    cli("run", str(lab), "--max-experiments", "4")
    program = Program(lab)
    runs = program.ledger.experiments()
    assert len(runs) == 4 and all(e.status != "crash" for e in runs), [(e.status, e.reason) for e in runs]
    assert (home / ".cache" / "autoresearch" / "val.txt").is_file()  # prepared at the first run, in your home
    assert [e.kind for e in program.ledger.events()].count("prepared") == 1
    assert all(e.summary.get("steps") for e in runs)  # its summary's num_steps, compared as steps
    assert "metric: val_bpb is read from the run's output" in cli("status", str(lab)).stdout
    # results.tsv as autoresearch's analysis.ipynb reads it: the baseline first, as a keep
    first = (lab / "results.tsv").read_text().splitlines()[1].split("\t")
    baseline = min((e for e in runs if e.tree == runs[0].tree and e.metric is not None), key=lambda e: e.ended_at)
    assert first[3] == "keep" and first[1] == f"{baseline.metric:.6f}"
    assert not git(lab, "status", "--porcelain").strip()


def test_a_repository_with_only_a_command_and_a_metric_runs_end_to_end(tmp_path, home):
    repo = _repository(tmp_path / "classifier", {
        "model/threshold.py": "THRESHOLD = 0.1\n",
        "eval.py": '''
            import sys
            sys.path.insert(0, "model")
            from threshold import THRESHOLD
            POINTS = [(0.2, 0), (0.4, 0), (0.6, 1), (0.8, 1)]
            print("epochs", sys.argv[-1])
            print(f"accuracy: {sum((x >= THRESHOLD) == y for x, y in POINTS) / len(POINTS):.4f}")
        '''}, branch="dev")
    lab = tmp_path / "lab"
    made = cli("init", str(lab), "--from", str(repo), "--command", "python eval.py --epochs 1",
               "--metric", "accuracy:maximize", "--editable", "model/*.py", "--protected", "eval.py",
               "--budget", "5", "--org", str(_org(tmp_path))).stdout
    assert "command = \"python eval.py --epochs 1\"  (--command)" in made
    task = tomllib.loads((lab / "task.toml").read_text())
    assert task["editable"] == ["model/*.py"] and task["protected"] == ["eval.py"]
    cli("run", str(lab), "--max-experiments", "2")
    runs = Program(lab).ledger.experiments()
    assert len(runs) == 2 and runs[0].metric == 0.5  # the baseline's accuracy, printed by the protected eval.py
    assert all(e.status != "crash" for e in runs), [(e.status, e.reason) for e in runs]


def test_a_metric_the_baseline_never_prints_is_one_clear_error(tmp_path, home):
    repo = _repository(tmp_path / "quiet", {"fit.py": "print('loss 0.3')\n", "knob.py": "X = 4\n"})
    lab = tmp_path / "lab"
    cli("init", str(lab), "--from", str(repo), "--command", "python fit.py", "--metric", "loss:minimize",
        "--editable", "knob.py", "--budget", "5", "--org", str(_org(tmp_path)))
    ran = cli("run", str(lab), "--max-experiments", "3", check=False)
    assert ran.returncode == 1
    assert "the baseline printed no `loss`" in ran.stderr, ran.stderr
    assert len(Program(lab).ledger.experiments()) == 1  # one run, recorded, and nothing more spent


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_what_cannot_be_adopted_is_one_line(tmp_path, home):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "fit.py").write_text("print(1)\n")
    for args, message in [
        (["--from", str(plain)], "not an autoresearch-style repository (no train.py and prepare.py)"),
        (["--from", str(tmp_path / "nowhere")], "git clone failed"),
        (["--command", "python fit.py"], "--command, --metric, --metric-pattern, --editable and --protected go "
                                         "with --from"),
        (["--from", str(plain), "--task", "tinylm"], "--task and --from exclude each other"),
        (["--from", str(plain), "--command", "python fit.py", "--editable", "fit.py", "--metric", "loss"],
         "no training budget found"),
        (["--from", str(plain), "--command", "python fit.py", "--metric", "loss:sideways", "--editable", "fit.py",
          "--budget", "5"],
         "--metric loss:sideways: say NAME:minimize or NAME:maximize"),
    ]:
        done = cli("init", str(tmp_path / "lab"), *args, check=False)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "lab").exists()


def _org(tmp_path: Path) -> Path:
    """A one-tuner org without a noise floor's repeats: the baseline, then proposals."""
    org = tmp_path / "org.toml"
    org.write_text('name = "adopted"\n[[roles]]\nname = "researcher"\nbackend = "random"\n[rigor]\nnoise_runs = 1\n')
    return org


def test_a_prepare_step_that_cannot_download_is_one_line_at_run_and_at_prepare(tmp_path, home):
    offline = PREPARE.replace('    os.makedirs(CACHE_DIR, exist_ok=True)',
                              '    sys.exit("cannot reach https://huggingface.co: no network")')
    repo = _repository(tmp_path / "autoresearch", {"prepare.py": offline, "train.py": TRAIN})
    lab = tmp_path / "lab"
    cli("init", str(lab), "--from", str(repo), "--budget", "2")  # offline: init runs no prepare step
    for command in (["run", str(lab), "--max-experiments", "1"], ["prepare", str(lab)]):
        done = cli(*command, check=False)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "its prepare step `python prepare.py` failed: cannot reach https://huggingface.co" in done.stderr
    assert Program(lab).ledger.experiments() == []


def test_check_reports_a_missing_module_with_the_line_run_stops_on(tmp_path, home):
    train = TRAIN.replace("import time\n", "import time\n\nimport researchorg_no_such_module  # noqa\n")
    repo = _repository(tmp_path / "autoresearch", {"prepare.py": PREPARE, "train.py": train})
    lab = tmp_path / "lab"
    cli("init", str(lab), "--from", str(repo), "--budget", "2")
    checked = cli("check", str(lab), "--offline", check=False)
    ran = cli("run", str(lab), "--max-experiments", "1", check=False)
    line = "needs the Python module(s) researchorg_no_such_module, not installed for"
    assert checked.returncode == ran.returncode == 1 and line in checked.stderr, checked.stderr
    assert "ok" in checked.stdout  # the files are valid; this machine lacks a module
    assert checked.stderr.strip().splitlines() == ran.stderr.strip().splitlines(), (checked.stderr, ran.stderr)


def test_the_interpreter_below_is_named_only_above_an_interpreter_line(tmp_path):
    from researchorg.task.adopt import infer, render

    repo = _repository(tmp_path / "autoresearch", {"prepare.py": PREPARE, "train.py": TRAIN})
    for venv in (False, True):
        if venv:
            (repo / ".venv" / "bin").mkdir(parents=True)
            (repo / ".venv" / "bin" / "python").write_text("")
        lines = render(infer(repo), str(repo)).splitlines()
        command = next(i for i, line in enumerate(lines) if line.startswith("command = "))
        assert ("the interpreter below" in lines[command]) == venv, lines[command]
        assert lines[command + 1].startswith("interpreter = ") == venv
        assert any(line.startswith("interpreter = ") for line in lines) == venv
