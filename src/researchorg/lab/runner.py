"""The runner: one experiment command in a worktree, held to its time limit.

The command runs in its own process group (a new session), so a timeout or a
Ctrl-C kills everything it started, and a Ctrl-C in the terminal reaches the
lab, not the training. Its output goes to a log file. The metric and the
summary block (`key: value` lines after the last `---`) are read from the log.

Other load on the machine slows a CPU run more than any seed does, so the
runner records `other_cpu_s`: the CPU seconds the whole machine spent (from
/proc/stat) minus what the run's own processes used, during the run.

The environment carries the seed, the budget, the slot and its thread count
(RESEARCHORG_SEED, RESEARCHORG_BUDGET, RESEARCHORG_SLOT, RESEARCHORG_THREADS,
OMP_NUM_THREADS), and puts the directory of this Python first on PATH so that
`python` in a task command is the interpreter that runs researchorg.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.task.spec import TaskSpec

CRASH_LOG_LINES = 50
_SUMMARY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


@dataclass
class Slot:
    """Where an experiment runs: a name, and the CPU threads it may use."""

    name: str = "cpu0"
    threads: int = 0  # 0: leave the command's default

    def hardware(self) -> str:
        """The hardware class: results are compared only within one."""
        return f"cpu:{_cpu_model()}:{self.threads or os.cpu_count()}t"


@dataclass
class RunResult:
    status: str  # ok | crash | timeout | interrupted
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0


def run_command(task: TaskSpec, worktree: Path, log_path: Path, *, seed: int, slot: Slot,
                on_start: Callable[[int], None] | None = None) -> RunResult:
    """Run the task's command in `worktree`; return how it ended. Re-raises KeyboardInterrupt after killing it."""
    env = _environment(task, seed, slot)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start, busy_before, own_before = time.monotonic(), _machine_busy_seconds(), _children_cpu_seconds()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(shlex.split(task.command), cwd=worktree, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            return RunResult("crash", reason=f"cannot start `{task.command}`: {err.strerror or err}")
        if on_start is not None:
            on_start(proc.pid)
        try:
            returncode = proc.wait(timeout=task.timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, proc)
            return RunResult("timeout", reason=f"killed after {task.timeout:.0f} s (timeout)",
                             wall_seconds=time.monotonic() - start)
        except BaseException:
            kill_group(proc.pid, proc)
            raise
        kill_group(proc.pid)  # anything the command left running in its group
    wall = time.monotonic() - start
    result = _read_result(task, log_path, returncode, wall)
    if busy_before is not None:
        other = _machine_busy_seconds() - busy_before - (_children_cpu_seconds() - own_before)
        result.summary["other_cpu_s"] = round(max(other, 0.0), 2)
    return result


def _read_result(task: TaskSpec, log_path: Path, returncode: int, wall: float) -> RunResult:
    text = log_path.read_text(errors="replace")
    summary = parse_summary(text)
    metric = task.read_metric(text)
    if returncode != 0:
        return RunResult("crash", summary=summary, returncode=returncode, wall_seconds=wall,
                         reason=f"exit code {returncode}\n{tail(text)}")
    if metric is None:
        return RunResult("crash", summary=summary, returncode=returncode, wall_seconds=wall,
                         reason=f"no finite `{task.metric.name}` in the log\n{tail(text)}")
    return RunResult("ok", metric=metric, summary=summary, returncode=0, wall_seconds=wall)


def parse_summary(text: str) -> dict[str, Any]:
    """The `key: value` lines after the last `---` line; numbers as floats. No `---`, no summary."""
    lines = text.splitlines()
    if "---" not in lines:
        return {}
    lines = lines[len(lines) - lines[::-1].index("---"):]
    summary: dict[str, Any] = {}
    for line in lines:
        match = _SUMMARY_LINE.match(line)
        if match:
            key, value = match.groups()
            try:
                summary[key] = float(value)
            except ValueError:
                summary[key] = value
    return summary


def tail(text: str, n: int = CRASH_LOG_LINES) -> str:
    return "\n".join(text.splitlines()[-n:])


def kill_group(pgid: int, proc: subprocess.Popen | None = None, grace: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        if proc is not None and sig == signal.SIGTERM:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
    if proc is not None and proc.poll() is None:
        proc.wait()


def _environment(task: TaskSpec, seed: int, slot: Slot) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({
        "RESEARCHORG_SEED": str(seed),
        "RESEARCHORG_BUDGET": f"{task.budget_seconds:g}",
        "RESEARCHORG_SLOT": slot.name,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if slot.threads:
        env["RESEARCHORG_THREADS"] = str(slot.threads)
        env["OMP_NUM_THREADS"] = str(slot.threads)
    return env


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent not idle since boot, or None where /proc/stat is missing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()
