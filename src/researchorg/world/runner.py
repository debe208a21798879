"""The runner: one experiment command in a worktree, held to its time limit.

For a task whose metric comes from its protected harness (`[metric] source =
"harness"`), the result is the harness's verdict file (RESEARCHORG_RESULT,
beside the log), not anything printed: see harness/protected.py.

The command runs in its own process group (a new session), so a timeout or a
Ctrl-C kills everything it started, and a Ctrl-C in the terminal reaches the
lab, not the training. It gets a scratch directory of its own as TMPDIR
(`scratch`), removed when the run ends however it ends, so an interrupted run
leaves no temporary files behind. Its output goes to a log file. The metric and the
summary block (`key: value` lines after the last `---`) are read from the log.

Other load on the machine slows a CPU run more than any seed does, so the
runner records `other_cpu_s`: the CPU seconds the whole machine spent (from
/proc/stat) minus what the run's own processes used, during the run.

The environment carries the seed, the budget, the slot and its thread count
(RESEARCHORG_SEED, RESEARCHORG_BUDGET, RESEARCHORG_SLOT, RESEARCHORG_THREADS,
OMP_NUM_THREADS), and puts the directory of this Python first on PATH so that
`python` in a task command is the interpreter that runs researchorg. It carries
only what a training run needs of the lab's environment (`sandbox.run_environment`:
locale, paths, Python, thread and GPU settings), so no API key, token, password
or credential-carrying URL reaches it, except what the task names in `pass_env`.

A task whose metric is the command's own output runs the whole command in the
kernel sandbox (harness/sandbox.py: the checkout, its scratch directory and the
system, protected files read-only, no network unless the task says `network =
true`). A protected harness is the task's trusted code: it runs outside, and
puts the training code it runs in the sandbox itself.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from researchorg.errors import LabError
from researchorg.harness import sandbox
from researchorg.harness.protected import RESULT_ENV
from researchorg.harness.sealed import SEAL_KEY_ENV, machine_key
from researchorg.task.spec import TaskSpec
from researchorg.world.limits import CappedLog, RunWatch
from researchorg.world.protocol import RunResult
from researchorg.world.slots import Slot

CRASH_LOG_LINES = 50
_SUMMARY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


POLL_SECONDS = 0.05


def run_command(task: TaskSpec, worktree: Path, log_path: Path, *, seed: int, slot: Slot,
                on_start: Callable[[int], None] | None = None,
                cancel: threading.Event | None = None, scratch: Path | None = None,
                passed: dict[str, str] | None = None, seal_key: str | None = None) -> RunResult:
    """Run the task's command in `worktree` on `slot`; return how it ended.

    `scratch` (created, and removed afterwards with whatever is in it) is the command's TMPDIR. `passed` are the
    values of the task's `pass_env` from elsewhere (the head of a cluster), over this process's own; `seal_key`
    the head's key of sealed data's private copies (default: this machine's, harness/sealed.py).

    Setting `cancel` (from another thread) kills the run and returns `interrupted`.
    A KeyboardInterrupt in this thread kills the run and is re-raised.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = run_environment(task, seed, slot, passed)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        env.update(TMPDIR=str(scratch), TEMP=str(scratch), TMP=str(scratch))
    try:
        return _run(task, worktree, log_path, env, slot, on_start, cancel, seal_key)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(task: TaskSpec, worktree: Path, log_path: Path, env: dict[str, str], slot: Slot,
         on_start: Callable[[int], None] | None, cancel: threading.Event | None, seal_key: str | None) -> RunResult:
    start, busy_before = time.monotonic(), _machine_busy_seconds()
    scratch = [Path(env["TMPDIR"])] if "TMPDIR" in env else []
    watch = RunWatch(task.limits, [worktree, *scratch], f"{os.getpid()}-{threading.get_ident()}-{log_path.stem}")
    env["RESEARCHORG_MAX_FILE_BYTES"] = str(task.limits.disk_bytes)  # no single file past the disk limit
    with open(log_path, "wb") as log_file:
        log = CappedLog(log_file, task.limits.output_bytes)
        if task.metric.source == "harness":  # the protected harness's verdict, in a file the guest never learns of
            verdict_path(log_path).unlink(missing_ok=True)
            env[RESULT_ENV] = str(verdict_path(log_path))
            env[SEAL_KEY_ENV] = seal_key or machine_key()  # for the harness's private copy of sealed data
        argv = shlex.split(task.command) if task.harness is None else _adopted_harness(task, env, log_path)
        policy = None
        if task.metric.source != "harness":  # the command is the agent's code: all of it runs in the sandbox
            data = [p for p in task.data_paths() if p.exists()]
            policy = sandbox.policy_for(worktree, scratch, network=task.network,
                                        read=[*(Path(p) for p in interpreter_roots(task)), *data],
                                        readonly=[worktree / p for p in task.protected_files()],
                                        limits=sandbox.Limits(file_size=task.limits.disk_bytes,
                                                              processes=task.limits.processes))
            argv = sandbox.confined(argv, policy, worktree)
            if scratch:  # the user's home is out of the sandbox's sight: caches go to the run's scratch
                env.update(HOME=str(scratch[0]), XDG_CACHE_HOME=str(scratch[0] / ".cache"))
                sandbox.link_home(data, scratch[0])
        cores = slot.cores

        def enter() -> None:  # in the child before it execs: nothing it starts escapes the pinning or the cgroup
            if cores:
                os.sched_setaffinity(0, cores)
            watch.enter()
        try:
            proc = subprocess.Popen(argv, cwd=worktree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=enter)
        except OSError as err:
            watch.close()
            return RunResult("crash", reason=f"cannot start `{task.command}`: {err.strerror or err}")
        watch.root = proc.pid
        if on_start is not None:
            on_start(proc.pid)
        ended, limit = None, None
        try:
            ended, limit = _wait(proc, start + task.timeout(slot.gpu is not None), cancel, watch, log)
        except BaseException:
            kill_group(proc.pid, proc)
            raise
        finally:
            if proc.returncode is None or limit is not None:  # ended from here: what left its group (setsid) too
                below = sandbox.descendants(proc.pid)
                kill_group(proc.pid, proc)
                _kill_all(below)
            kill_group(proc.pid)  # anything the command left running in its group
            _drain(proc, log)
            log.close()
            watch.close()
    wall = time.monotonic() - start
    limit = limit or watch.check_disk()  # what the run left behind counts too
    if limit is not None:
        return RunResult("crash", reason=f"the run passed a limit: {limit}", wall_seconds=wall)
    if ended is None:
        if cancel is not None and cancel.is_set():
            return RunResult("interrupted", reason="stopped: the lab was interrupted (Ctrl-C or a signal)",
                             wall_seconds=wall)
        return RunResult("timeout", reason=f"killed after {task.timeout(slot.gpu is not None):.0f} s (timeout)",
                         wall_seconds=wall)
    returncode, own_cpu = ended
    result = _read_result(task, log_path, returncode, wall)
    if policy is not None:
        result.summary.setdefault("sandbox", sandbox.summary(policy))
    if busy_before is not None:
        other = _machine_busy_seconds() - busy_before - own_cpu
        result.summary["other_cpu_s"] = round(max(other, 0.0), 2)
    return result


def _adopted_harness(task: TaskSpec, env: dict[str, str], log_path: Path) -> list[str]:
    """The command line of the lab's harness for a task that names its protected evaluation function
    (harness/adopted.py), with its configuration beside the run's log (out of every sandbox)."""
    script, args = task.script()
    config = {"script": script, "args": args, "python": task.python(), "budget": task.budget_seconds,
              "seed": int(env["RESEARCHORG_SEED"]), "sealed": [str(p) for p in task.sealed_paths()],
              "data": [str(p) for p in task.data_paths() if p.exists()], "read": interpreter_roots(task),
              "protected": task.protected_files(), "entry": task.harness.entry, "call": task.harness.call,
              "seq_len": task.harness.seq_len, "metric": task.metric.name,
              "preload": ["torch", "torch._dynamo"] if "torch" in task.requires else []}
    path = log_path.with_suffix(".harness.json")
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "researchorg.harness.adopted", str(path)]


def run_prepare(task: TaskSpec, cwd: Path) -> str:
    """Run the task's prepare command in `cwd` (the task directory, or a node's copy of it); its output, or
    LabError with its last line."""
    argv = shlex.split(task.prepare or "")
    if not argv:
        return ""
    if argv[0] == "python":
        argv[0] = task.python()
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise LabError(f"task {task.name}: cannot run its prepare command `{task.prepare}`: "
                       f"{err.strerror or err}") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise LabError(f"task {task.name}: its prepare step `{task.prepare}` failed: {last[0][:300]}")
    return proc.stdout


def ask_python(task: TaskSpec, code: str, *args: str, timeout: float = 120) -> str:
    """What the task's interpreter prints for `python -c code args...`; LabError where it does not run."""
    try:
        done = subprocess.run([task.python(), "-c", code, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LabError(f"the task's interpreter {task.python()} does not run: {err}") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise LabError(f"the task's interpreter {task.python()} failed: {last[0][:300]}")
    return done.stdout


@functools.cache
def _roots_of(python: str) -> tuple[str, ...]:
    ask = "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
    try:
        done = subprocess.run([python, "-c", ask], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        roots = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        roots = []
    prefixes = [os.path.realpath(p) for p in roots[:3] if isinstance(p, str) and os.path.isabs(p)]
    prefixes += [os.path.dirname(python), os.path.dirname(os.path.realpath(python))]
    # sys.path entries only inside its prefixes: an editable install's .pth can name the source repository
    # (its untracked files, its .git), which a run must not read
    inside = [p for p in roots[3:] if isinstance(p, str) and os.path.isabs(p)
              and any(os.path.realpath(p).startswith(q.rstrip("/") + "/") for q in prefixes)]
    return tuple(p for p in dict.fromkeys([*prefixes, *inside]) if os.path.exists(p))


def interpreter_roots(task: TaskSpec) -> list[str]:
    """Where the task's own interpreter loads code from (asked of it once), for a run's sandbox to read; empty
    for the lab's own interpreter, whose roots the sandbox always reads."""
    return [] if task.interpreter is None else list(_roots_of(task.python()))


def _wait(proc: subprocess.Popen, deadline: float, cancel: threading.Event | None, watch: RunWatch,
          log: CappedLog) -> tuple[tuple[int, float] | None, str | None]:
    """Copy `proc`'s output to the log and reap it by its deadline: ((exit code, CPU seconds it and its reaped
    children used) or None, the limit it passed or None)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline and not (cancel is not None and cancel.is_set()):
            for key, _ in selector.select(timeout=POLL_SECONDS):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                limit = log.write(chunk)
                if limit is not None:
                    return None, limit
            limit = watch.check()
            if limit is not None:
                return None, limit
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return (proc.returncode, usage.ru_utime + usage.ru_stime), None
            if not selector.get_map():
                time.sleep(POLL_SECONDS)  # output closed, process still running
        return None, None
    finally:
        selector.close()


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _drain(proc: subprocess.Popen, log: CappedLog) -> None:
    """The output left in the pipe once the run's group is gone (bounded: the log caps what it keeps)."""
    os.set_blocking(proc.stdout.fileno(), False)
    while True:
        try:
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            break
        if not chunk or log.write(chunk) is not None:
            break
    proc.stdout.close()


def verdict_path(log_path: Path) -> Path:
    return log_path.with_suffix(".verdict.json")


def _read_verdict(log_path: Path, returncode: int, wall: float) -> RunResult:
    """The result of a task whose protected harness computes the metric: only its verdict file counts, and only
    from a harness that finished normally (training code that wrote the file and killed its harness forged it)."""
    text = log_path.read_text(errors="replace")
    if returncode != 0:
        return RunResult("crash", returncode=returncode, wall_seconds=wall,
                         reason=f"the harness did not finish normally (exit code {returncode}): no verdict counts\n"
                                f"{tail(text)}")
    try:
        verdict = json.loads(verdict_path(log_path).read_text())
    except (OSError, ValueError):
        return RunResult("crash", returncode=returncode, wall_seconds=wall,
                         reason=f"the harness wrote no verdict (exit code {returncode})\n{tail(text)}")
    status, metric = verdict.get("status"), verdict.get("metric")
    summary = verdict.get("summary") or {}
    if status == "ok" and isinstance(metric, int | float) and math.isfinite(metric):
        return RunResult("ok", metric=float(metric), summary=summary, returncode=returncode, wall_seconds=wall)
    if status in ("invalid", "crash"):
        return RunResult(status, summary=summary, returncode=returncode, wall_seconds=wall,
                         reason=verdict.get("reason") or status)
    return RunResult("crash", summary=summary, returncode=returncode, wall_seconds=wall,
                     reason=f"the harness's verdict has no finite metric: {verdict!r}"[:500])


def _read_result(task: TaskSpec, log_path: Path, returncode: int, wall: float) -> RunResult:
    if task.metric.source == "harness":
        result = _read_verdict(log_path, returncode, wall)
        _our_names(task, result.summary)
        return result
    text = log_path.read_text(errors="replace")
    summary = parse_summary(text)
    _our_names(task, summary)
    metric = task.read_metric(text)
    if returncode != 0:
        return RunResult("crash", summary=summary, returncode=returncode, wall_seconds=wall,
                         reason=f"exit code {returncode}\n{tail(text)}")
    if metric is None:
        return RunResult("crash", summary=summary, returncode=returncode, wall_seconds=wall,
                         reason=f"no finite `{task.metric.name}` in the log\n{tail(text)}")
    return RunResult("ok", metric=metric, summary=summary, returncode=0, wall_seconds=wall)


def _our_names(task: TaskSpec, summary: dict[str, Any]) -> None:
    """The task's names for what the lab compares, under the lab's names too (num_steps as steps)."""
    for theirs, ours in task.summary_keys.items():
        if theirs in summary and ours not in summary:
            summary[ours] = summary[theirs]


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


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (its leader may be gone while the others live on)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def run_environment(task: TaskSpec, seed: int, slot: Slot, passed: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: this one (with `passed` values of the task's pass_env over it), plus the seed,
    budget, slot, threads and GPU the lab chose."""
    env = sandbox.run_environment({**os.environ, **(passed or {})}, task.pass_env)
    env["PATH"] = os.pathsep.join([str(Path(task.python()).parent), env.get("PATH", "")])
    env.update({
        "RESEARCHORG_SEED": str(seed),
        "RESEARCHORG_BUDGET": f"{task.budget_seconds:g}",
        "RESEARCHORG_STARTUP_ALLOWANCE": f"{task.allowances(slot.gpu is not None)[0]:g}",
        "RESEARCHORG_HANDOFF_ALLOWANCE": f"{task.allowances(slot.gpu is not None)[1]:g}",
        "RESEARCHORG_SLOT": slot.name,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if slot.threads:
        env["RESEARCHORG_THREADS"] = str(slot.threads)
        env["OMP_NUM_THREADS"] = str(slot.threads)
    # a CPU slot sees no GPU: its hardware class says CPU (and a Ray worker without GPUs no longer hides them)
    env["CUDA_VISIBLE_DEVICES"] = slot.gpu if slot.gpu is not None else ""
    return env


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent not idle since boot, or None where /proc/stat is missing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
