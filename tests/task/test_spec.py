"""The task spec: loading, validation errors that name the file and key, and knob edits."""

from pathlib import Path

import pytest

from researchorg import ConfigError
from researchorg.stats.score import better
from researchorg.task import find_task, load_task
from researchorg.task.knobs import read_knob, write_knob
from tests.conftest import ACCURACY_TASK, copy_task


def test_builtin_tinylm_loads_with_its_knobs():
    task = load_task(find_task("tinylm"))
    assert task.metric.name == "val_bpb" and task.metric.direction == "minimize"
    assert {k.name for k in task.knobs} >= {"N_LAYER", "N_EMBD", "LR"}
    assert task.is_editable("train.py") and not task.is_editable("prepare.py")
    assert task.is_protected("task.toml")  # always, even when not listed
    # a protected harness: start-up and hand-off allowances around the budget, then the evaluation's time
    startup, handoff = task.allowances(gpu=False)
    assert (startup, handoff) == (60.0, 30.0) and task.allowances(gpu=True) == (600.0, 120.0)
    assert task.timeout() == startup + handoff + 1.05 * task.budget_seconds + 660
    assert task.timeout(gpu=True) > task.timeout()


def test_maximize_task_compares_the_right_way():
    task = load_task(ACCURACY_TASK)
    assert better(task.metric, 0.9, 0.8) and not better(task.metric, 0.8, 0.9)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('direction = "maximize"', 'direction = "up"', "task.toml: metric.direction: Input should be 'minimize' or"),
        ("budget_seconds = 1", "budget_seconds = -1", "task.toml: budget_seconds: Input should be greater than 0"),
        ("budget_seconds = 1", "budget_secs = 1", "task.toml: budget_secs: Extra inputs are not permitted"),
        ('type = "float"', 'type = "float"\nchoices = []\nlow2 = 1', "task.toml: knobs.0.low2: Extra inputs"),
        ("high = 1.0", "high = 0.0", "knob THRESHOLD: an float knob needs `low` < `high`"),
        ('name = "accuracy"\ndirection', 'name = "acc uracy"\ndirection', "task.toml: metric.name: String should"),
        ("timeout_seconds = 4", "timeout_seconds = 0.5", "timeout_seconds (0.5) must exceed budget_seconds"),
        ('file = "train.py"', 'file = "evaluate.py"', "knob THRESHOLD: file 'evaluate.py' is not editable"),
        ("[metric]", "[metric", "task.toml: not valid TOML"),
    ],
)
def test_bad_task_toml_is_one_error_naming_file_and_key(tmp_path, replace, by, expected):
    task_dir = copy_task(tmp_path)
    toml = task_dir / "task.toml"
    assert replace in toml.read_text()
    toml.write_text(toml.read_text().replace(replace, by, 1))
    with pytest.raises(ConfigError) as err:
        load_task(task_dir)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_task_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no task 'nope'.*built-in task \\(gpulm, simulated, tinylm\\)"):
        find_task("nope")


def test_metric_is_read_from_the_last_matching_line():
    task = load_task(ACCURACY_TASK)
    assert task.read_metric("accuracy: 0.5\nnoise\naccuracy:   0.75\n") == 0.75
    assert task.read_metric("no metric here") is None
    assert task.read_metric("accuracy: nan") is None


def test_knob_edit_changes_only_the_value_and_keeps_the_comment():
    task = load_task(find_task("tinylm"))
    knobs = {k.name: k for k in task.knobs}
    text = (task.root / "train.py").read_text()
    assert read_knob(text, knobs["N_LAYER"]) == 4
    assert read_knob(text, knobs["DTYPE"]) == "float32"
    edited = write_knob(write_knob(text, knobs["DTYPE"], "bfloat16"), knobs["LR"], 0.0031234)
    assert read_knob(edited, knobs["DTYPE"]) == "bfloat16"
    assert read_knob(edited, knobs["LR"]) == 0.00312
    assert 'DTYPE = "bfloat16"  # "bfloat16" trains under autocast' in edited
    changed = [a for a, b in zip(text.splitlines(), edited.splitlines(), strict=True) if a != b]
    assert len(changed) == 2


def test_knob_that_is_not_a_single_top_level_line_is_an_error():
    task = load_task(find_task("tinylm"))
    knob = task.knobs[0]
    with pytest.raises(ConfigError, match="found no top-level"):
        read_knob("x = 1\n", knob)
    with pytest.raises(ConfigError, match="found 2 top-level"):
        read_knob(f"{knob.name} = 1\n{knob.name} = 2\n", knob)
