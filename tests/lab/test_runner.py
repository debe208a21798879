"""The runner on real subprocesses: metric and summary, crash tail, timeout that kills the whole group."""

import json
import subprocess
import sys
import time

from researchorg import Slot
from researchorg.task import load_task
from researchorg.world.runner import parse_summary, run_command
from tests.conftest import alive, copy_task, pids_in_log


def _task_with_mode(tmp_path, mode):
    task_dir = copy_task(tmp_path)
    train = task_dir / "train.py"
    train.write_text(train.read_text().replace('MODE = "ok"', f'MODE = "{mode}"'))
    return load_task(task_dir)


def test_ok_run_reads_metric_summary_and_environment(tmp_path):
    task = _task_with_mode(tmp_path, "ok")
    result = run_command(task, task.root, tmp_path / "run.log", seed=123, slot=Slot("cpu1", threads=1))
    assert result.status == "ok" and result.metric == 0.8
    assert result.summary["peak_mem_mb"] == 10.0
    assert result.summary["other_cpu_s"] >= 0.0  # CPU time the rest of the machine used meanwhile
    assert "seed 123 budget 1" in (tmp_path / "run.log").read_text()


def test_crash_keeps_the_last_50_lines(tmp_path):
    task = _task_with_mode(tmp_path, "crash")
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "crash" and result.metric is None
    tail = result.reason.splitlines()
    assert tail[0] == "exit code 1"
    assert tail[-1] == "RuntimeError: deliberate crash"
    assert "line 79" in result.reason and "line 33\n" not in result.reason
    assert "RuntimeError" not in result.summary  # no summary block: nothing parsed from a traceback
    assert len(tail) == 51


def test_timeout_kills_the_whole_process_group(tmp_path):
    task = _task_with_mode(tmp_path, "hang")
    started = time.monotonic()
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "timeout"
    assert time.monotonic() - started < task.timeout + 5
    assert "child accuracy-child-" in (tmp_path / "run.log").read_text()  # it had started its child
    time.sleep(0.2)
    assert not any(alive(pid) for pid in pids_in_log(str(tmp_path / "run.log"))), \
        "the hanging run's child survived the timeout"


def test_missing_command_is_a_crash_not_an_exception(tmp_path):
    task = load_task(copy_task(tmp_path)).model_copy(update={"command": "no-such-program-xyz"})
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "crash" and "cannot start" in result.reason


def test_cpu_used_by_other_processes_is_recorded(tmp_path):
    task = load_task(copy_task(tmp_path)).model_copy(
        update={"command": "python -c 'import time; time.sleep(1.5); print(\"accuracy: 1\")'"})
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    finally:
        busy.kill()
    assert result.status == "ok"
    assert result.summary["other_cpu_s"] > 0.5  # the busy loop, not the sleeping run


def test_summary_block_after_the_last_separator():
    assert parse_summary("val_bpb: 2.5\n") == {}
    text = "val_bpb: 9\n---\nval_bpb:          2.5\nnum_steps:        10\ncorpus_hash:      abc123\n"
    assert parse_summary(text) == {"val_bpb": 2.5, "num_steps": 10.0, "corpus_hash": "abc123"}


def test_a_run_gets_no_secret_of_the_labs_environment(tmp_path, monkeypatch):
    for name, value in {"ANTHROPIC_API_KEY": "sk-ant", "OPENAI_API_KEY": "sk", "AWS_SECRET_ACCESS_KEY": "x",
                        "DATABASE_URL": "postgres://u:p@h/db", "GITHUB_TOKEN": "ghp", "WANDB_API_KEY": "w",
                        "SOME_RANDOM_SETTING": "y"}.items():
        monkeypatch.setenv(name, value)
    script = "import os, json; print(json.dumps(sorted(os.environ))); print('accuracy: 1.0')"
    task = load_task(copy_task(tmp_path)).model_copy(update={"command": f'python -c "{script}"',
                                                             "pass_env": ["WANDB_API_KEY"]})
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "ok", result.reason
    names = json.loads((tmp_path / "run.log").read_text().splitlines()[0])
    assert "WANDB_API_KEY" in names and "RESEARCHORG_SEED" in names and "PATH" in names  # what the task named
    assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "GITHUB_TOKEN",
                "SOME_RANDOM_SETTING"} & set(names)
