"""Building blocks of a protected harness: a task entry point that computes the metric itself.

A task whose `[metric] source = "harness"` promises that its protected command
(e.g. tinylm's harness.py) runs the agent's training code as a watched guest
(harness/guest.py) under the time budget, evaluates what it produced in a
process the agent's code never ran in, and writes its verdict to the file
named by RESEARCHORG_RESULT. The lab reads only that file: a metric line the
agent's code prints is not a result (the harness even marks the run invalid
for it), and the agent's process never sees the file's name.

`run_guest` runs the guest and returns what happened; `verdict` writes the
result file. Task harnesses compose them with their own evaluation.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_ENV = "RESEARCHORG_RESULT"
ARTIFACT_ENV = "RESEARCHORG_ARTIFACT"


def flops_estimate(num_params: float, tokens: float) -> float:
    """Training FLOPs of a dense language model: 6 x parameters x tokens (a confound the harness reports)."""
    return 6.0 * num_params * tokens


@dataclass
class GuestRun:
    returncode: int | None  # None: killed for running past its deadline
    seconds: float  # wall time of the guest, start-up included
    peak_mem_mb: float  # the guest's peak resident memory
    violations: list[dict[str, str]] = field(default_factory=list)
    output_tail: list[str] = field(default_factory=list)
    metric_lines: list[str] = field(default_factory=list)  # lines that look like the task's metric


def run_guest(script: Path, *, budget: float, grace: float, seed: int, artifact_dir: Path,
              forbidden_reads: list[str], protected: list[str], metric_pattern: re.Pattern[str],
              preload: tuple[str, ...] = ()) -> GuestRun:
    """Run `script` as a watched guest; kill it at `budget + grace` seconds. Its output is echoed to ours."""
    report_read, report_write = os.pipe()
    spec = {"script": str(script), "seed": seed, "report_fd": report_write, "forbidden_reads": forbidden_reads,
            "protected": protected, "writable": [str(script.parent), str(artifact_dir)],
            "preload": list(preload)}
    spec_path = artifact_dir / "guest.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != RESULT_ENV}  # the guest never learns where the verdict goes
    env[ARTIFACT_ENV] = str(artifact_dir)
    scratch = artifact_dir / "tmp"  # the guest's temp dir: the machine's /tmp may hold other programs
    scratch.mkdir(exist_ok=True)
    env.update(TMPDIR=str(scratch), TEMP=str(scratch), TMP=str(scratch))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "researchorg.harness.guest", str(spec_path)], cwd=script.parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            pass_fds=(report_write,))  # in the harness's process group: what kills the run kills it
    os.close(report_write)
    run = GuestRun(None, 0.0, 0.0)
    reports = b""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(report_read, selectors.EVENT_READ, "report")
    pending = b""
    deadline = started + budget + grace
    killed = False
    while selector.get_map():
        timeout = max(0.0, deadline - time.monotonic())
        events = selector.select(timeout=min(timeout, 0.5))
        if not events and time.monotonic() >= deadline and not killed:
            _kill(proc.pid)  # what it started stays in the run's group, which the lab kills when the harness exits
            killed = True
            deadline = time.monotonic() + 5
            continue
        for key, _ in events:
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            if key.data == "report":
                reports += chunk
                continue
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _keep_line(run, line.decode(errors="replace"), metric_pattern)
    if pending:
        _keep_line(run, pending.decode(errors="replace"), metric_pattern)
    os.close(report_read)
    _, status, usage = os.wait4(proc.pid, 0)
    run.seconds = time.monotonic() - started
    run.returncode = None if killed else os.waitstatus_to_exitcode(status)
    run.peak_mem_mb = usage.ru_maxrss / 1024
    run.violations = [json.loads(line) for line in reports.decode(errors="replace").splitlines() if line.strip()]
    return run


def _keep_line(run: GuestRun, line: str, metric_pattern: re.Pattern[str]) -> None:
    run.output_tail = [*run.output_tail[-29:], line]
    if metric_pattern.search(line):
        run.metric_lines.append(line.strip())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def judge(run: GuestRun, budget: float, grace: float) -> tuple[str, str] | None:
    """Why the guest's run cannot be scored: (status, reason); None if it can."""
    if run.violations:
        first = run.violations[0]
        more = f" (+{len(run.violations) - 1} more)" if len(run.violations) > 1 else ""
        return "invalid", f"training code: {first['kind']}: {first['detail']}{more}"
    if run.metric_lines:
        return "invalid", f"training code printed a metric line itself: {run.metric_lines[0]!r}"
    if run.returncode is None:
        return "invalid", f"training ran past the budget: killed after {run.seconds:.1f} s " \
                          f"(budget {budget:g} s + {grace:g} s for start-up and export)"
    if run.returncode != 0:
        tail = "\n".join(run.output_tail[-15:])
        return "crash", f"training exited with code {run.returncode}\n{tail}"
    return None


def verdict(status: str, *, metric: float | None = None, reason: str = "",
            summary: dict[str, Any] | None = None) -> None:
    """Write the harness's verdict where the lab reads it (and say it on stdout for the log)."""
    result = {"status": status, "metric": metric, "reason": reason, "summary": summary or {}}
    target = os.environ.get(RESULT_ENV)
    if target:  # replaced whole, whatever the training code did to the file meanwhile
        fresh = Path(f"{target}.{os.getpid()}.tmp")
        fresh.write_text(json.dumps(result))
        os.replace(fresh, target)
    print(f"harness verdict: {status}" + (f" ({reason.splitlines()[0]})" if reason else ""))
