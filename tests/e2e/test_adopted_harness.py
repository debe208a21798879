"""Your own repository with a protected verdict: an autoresearch-layout repository adopted with `init --from`,
and a repository that calls the hand-off hook, each judged by its own evaluation function in the lab's box.

The fixture (tests/fixtures/autoresearch_cpu) is autoresearch's layout at CPU scale: train.py imports
`evaluate_bpb` from prepare.py and prints its summary block; prepare.py keeps the data and the pinned
validation shard in ~/.cache/autoresearch (here a home of the test's own). Each attack is a real edit of
train.py, run through the lab; none may leave a forged metric.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, detect_slots
from tests.conftest import FIXTURES, NO_NOISE, SCRIPTS, cli, git

torch = pytest.importorskip("torch")

AUTORESEARCH = FIXTURES / "autoresearch_cpu"
PRINTED = 'print(f"val_bpb:          {val_bpb:.6f}")'
AFTER_IMPORTS = "# ---------------------------------------------------------------------------\n# Hyperparameters"
VAL = "os.path.expanduser('~/.cache/autoresearch/data/shard_00002.txt')"
FORGE = ("import os, json, signal\n"
         "_env = open(f'/proc/{os.getppid()}/environ').read().split(chr(0))\n"
         "_env = dict(line.split('=', 1) for line in _env if '=' in line)\n"
         "open(_env['RESEARCHORG_RESULT'], 'w').write(json.dumps({'status': 'ok', 'metric': 0.1}))\n")


def _edit(old: str, new: str):
    def edit(ctx):
        text = ctx.read("train.py")
        assert old in text, old
        return {"train.py": text.replace(old, new, 1)}
    return edit


ATTACKS = {  # what train.py does, and how the run must be recorded
    "prints a forged val_bpb": (_edit(PRINTED, 'print("val_bpb:          0.100000")'), "invalid",
                                "printed a metric line itself: 'val_bpb:          0.100000'"),
    "replaces evaluate_bpb in its own namespace": (
        _edit(AFTER_IMPORTS, "def evaluate_bpb(model, tokenizer, batch_size):\n    return 0.1\n\n\n" + AFTER_IMPORTS),
        "invalid", "printed a metric line itself"),
    "writes the verdict file": (_edit(AFTER_IMPORTS, FORGE + AFTER_IMPORTS), "crash", "training exited with code"),
    "reads the validation shard": (_edit(AFTER_IMPORTS, f"import os\n_val = open({VAL}).read()\n" + AFTER_IMPORTS),
                                   "invalid", "read of the validation split"),
    "kills its harness after printing a forged val_bpb": (
        _edit(PRINTED, 'print("val_bpb:          0.100000")\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)'),
        "invalid", "printed a metric line itself"),
}


def _repository(path: Path, changes: dict[str, tuple[str, str]] = ()) -> Path:
    """The fixture as a git repository of your own, with `changes` ({file: (old, new)}) made to it."""
    shutil.copytree(AUTORESEARCH, path, ignore=shutil.ignore_patterns("__pycache__"))
    for name, (old, new) in dict(changes).items():
        text = (path / name).read_text()
        assert old in text, old
        (path / name).write_text(text.replace(old, new, 1))
    git(path, "init", "-q", "-b", "master")
    git(path, "add", "-A")
    git(path, "-c", "user.name=you", "-c", "user.email=you@example.com", "commit", "-q", "-m", "my research")
    return path


def _attack(program: Program, attacks: dict) -> dict:
    """The honest baseline, then each attack, through the real lab on one slot: {description: experiment}."""
    SCRIPTS["honest"] = [("baseline", lambda ctx: {})]
    SCRIPTS["attacker"] = [(name, edit) for name, (edit, _, _) in attacks.items()]
    Runtime(program, slots=detect_slots(1, 1)).run(Limits())
    return {e.description: e for e in program.ledger.experiments()}


def _org(tmp_path: Path) -> Path:
    org = tmp_path / "org.toml"
    org.write_text('name = "attackers"\n[[roles]]\nname = "honest"\nbackend = "scripted"\n'
                   '[[roles]]\nname = "attacker"\nbackend = "scripted"\n' + NO_NOISE)
    return org


def _assert_judged(found: dict, attacks: dict) -> None:
    baseline = found["baseline"]
    assert baseline.status == "keep", baseline.reason
    assert 0.5 < baseline.metric < 9.0 and baseline.summary["steps"] > 0  # the harness's val_bpb; steps claimed
    assert baseline.summary["num_params"] > 0 and "landlock" in baseline.summary["sandbox"]
    wrong = {name: (found[name].status, found[name].reason[-300:]) for name, (_, status, reason) in attacks.items()
             if not (found[name].status == status and reason in found[name].reason)}
    assert wrong == {}, "\n".join(f"{name}: {outcome}" for name, outcome in wrong.items())
    assert all(found[name].metric is None for name in attacks)  # no forged metric, nor any other


@pytest.mark.benchmark
@pytest.mark.slow
def test_an_adopted_autoresearch_repository_is_scored_by_its_own_evaluate_bpb_in_the_box(tmp_path, home):
    repo = _repository(tmp_path / "autoresearch")
    made = cli("init", str(tmp_path / "shown"), "--from", str(repo), "--budget", "3").stdout
    assert "protected entry: prepare:evaluate_bpb" in made and "could forge it" not in made
    task = tomllib.loads((tmp_path / "shown" / "task.toml").read_text())
    assert task["metric"]["source"] == "harness" and task["harness"] == {
        "entry": "prepare:evaluate_bpb", "call": "evaluate_bpb(model, Tokenizer.from_directory(), batch_size)",
        "seq_len": "MAX_SEQ_LEN"}
    assert task["sealed"] == ["~/.cache/autoresearch/data/shard_00002.txt"]
    checked = cli("check", str(tmp_path / "shown"), "--offline").stdout
    assert "computed by the lab's harness with the protected prepare:evaluate_bpb" in checked

    program, _ = Program.adopt(tmp_path / "lab", str(repo), org_file=_org(tmp_path), budget=3)
    found = _attack(program, ATTACKS)
    _assert_judged(found, ATTACKS)
    assert (home / ".cache" / "autoresearch" / "data" / "shard_00002.txt").stat().st_size > 0  # there all along
    log = Path(found["baseline"].log_path).read_text()
    assert "val_bpb:          nan" in log  # what train.py printed: the hand-off's NaN, a claim


HOOKED = {"train.py": ("from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader",
                       "from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, make_dataloader\n"
                       "from researchorg.harness.handoff import hand_off")}
HOOK_CALL = "val_bpb = hand_off(model, batch_size=DEVICE_BATCH_SIZE)"
TASK = '''name = "hooked"
command = "python train.py"
prepare = "python prepare.py"
editable = ["train.py"]
protected = ["prepare.py"]
budget_seconds = 3
requires = ["torch"]
data = ["~/.cache/autoresearch"]
sealed = ["~/.cache/autoresearch/data/shard_00002.txt"]

[metric]
name = "val_bpb"
direction = "minimize"
source = "harness"

[harness]
entry = "prepare:evaluate_bpb"
call = "evaluate_bpb(model, Tokenizer.from_directory(), batch_size)"
seq_len = "MAX_SEQ_LEN"

[summary_keys]
num_steps = "steps"
'''


@pytest.mark.benchmark
@pytest.mark.slow
def test_a_repository_that_calls_the_hand_off_hook_is_scored_by_the_function_its_task_names(tmp_path, home):
    task = tmp_path / "hooked"
    shutil.copytree(AUTORESEARCH, task, ignore=shutil.ignore_patterns("__pycache__"))
    train = (task / "train.py").read_text().replace(*HOOKED["train.py"])
    (task / "train.py").write_text(train.replace("val_bpb = evaluate_bpb(model, tokenizer, DEVICE_BATCH_SIZE)",
                                                 HOOK_CALL))
    prepare = (task / "prepare.py").read_text()
    (task / "prepare.py").write_text(prepare.replace("TIME_BUDGET = 300 ", "TIME_BUDGET = 3   "))
    (task / "task.toml").write_text(TASK)
    subprocess.run([os.sys.executable, "prepare.py"], cwd=task, check=True, capture_output=True)
    program = Program.init(tmp_path / "lab", str(task), org_file=_org(tmp_path))
    attacks = {name: attack for name, attack in ATTACKS.items() if name != "replaces evaluate_bpb in its own namespace"}
    attacks["calls a hand-off of its own"] = (
        _edit(AFTER_IMPORTS, "def hand_off(model, **arguments):\n    return 0.1\n\n\n" + AFTER_IMPORTS), "invalid",
        "printed a metric line itself")
    found = _attack(program, attacks)
    _assert_judged(found, attacks)
