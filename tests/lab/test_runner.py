"""The runner on real subprocesses: metric and summary, crash tail, timeout that kills the whole group."""

import json
import subprocess
import sys
import time
from pathlib import Path

from researchorg import Slot
from researchorg.task import load_task
from researchorg.world.runner import parse_summary, run_command
from tests.conftest import alive, copy_task, eventually, pids_in_log


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
    assert time.monotonic() - started < task.timeout() + 5
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


def _task_running(tmp_path, code: str, **limits):
    """The accuracy task whose train.py runs `code` first, under the given [limits]."""
    task_dir = copy_task(tmp_path)
    train = task_dir / "train.py"
    train.write_text(train.read_text().replace("MODE = \"ok\"", f"MODE = \"ok\"\n{code}"))
    table = "".join(f"{key} = {value}\n" for key, value in limits.items())
    (task_dir / "task.toml").write_text((task_dir / "task.toml").read_text().replace("[metric]", f"[limits]\n{table}"
                                                                                     "\n[metric]"))
    return load_task(task_dir)


def test_a_run_that_prints_past_its_limit_is_a_crash_and_its_log_keeps_head_and_tail(tmp_path, monkeypatch):
    from researchorg.world import limits
    monkeypatch.setattr(limits, "LOG_KEEP", 1 << 16)
    flood = "print('first line'); [print('y' * 1000) for _ in range(3000)]; print('last line'); time.sleep(30)"
    task = _task_running(tmp_path, flood, output_mib=2)
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "crash" and result.reason == "the run passed a limit: it printed more than 2 MiB: ended"
    log = (tmp_path / "run.log").read_bytes()
    assert len(log) < 1 << 17 and b"first line" in log and b"of output cut here" in log

    calm = _task_running(tmp_path / "calm", "[print('y' * 1000) for _ in range(30)]", output_mib=2)
    assert run_command(calm, calm.root, tmp_path / "calm.log", seed=1, slot=Slot()).status == "ok"
    kept = (tmp_path / "calm.log").read_bytes()
    assert b"cut here" not in kept and kept.count(b"y" * 1000) == 30  # within what a log keeps: kept whole


def test_a_run_that_starts_too_many_processes_is_ended_and_nothing_of_it_lives_on(tmp_path):
    bomb = "subprocess.Popen(['sh', '-c', 'for i in $(seq 40); do sleep 61.25 & done; wait']); time.sleep(60)"
    task = _task_running(tmp_path, bomb, processes=16)
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "crash" and "processes" in result.reason and "limit" in result.reason, result.reason

    def sleepers() -> list[str]:  # the bomb's processes, known by their odd duration
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (entry / "cmdline").read_bytes() == b"sleep\x0061.25\x00":
                    found.append(entry.name)
            except OSError:
                continue
        return found
    eventually(lambda: sleepers() == [])  # killed with the run (a kill may take a moment to land)


def test_a_run_that_fills_the_disk_past_its_limit_is_ended(tmp_path):
    fill = ("fd = os.open('filler', os.O_WRONLY | os.O_CREAT); os.posix_fallocate(fd, 0, 8 << 20); "
            "fd = os.open('filler2', os.O_WRONLY | os.O_CREAT); os.posix_fallocate(fd, 0, 8 << 20); time.sleep(30)")
    task = _task_running(tmp_path, fill, disk_gib=0.01)
    result = run_command(task, task.root, tmp_path / "run.log", seed=1, slot=Slot())
    assert result.status == "crash" and "wrote more than 10.2 MiB to disk" in result.reason, result.reason
