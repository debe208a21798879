"""Building blocks of a protected harness: a task entry point that computes the metric itself.

A task whose `[metric] source = "harness"` promises that its protected command
(e.g. tinylm's harness.py) runs the agent's training code as a watched guest
(harness/guest.py) under the time budget, evaluates what it produced in the
evaluation box (harness/evaluate.py: a process and a sandbox of its own, which
runs checked tensor operators only), and writes its verdict to the file
named by RESEARCHORG_RESULT. The lab reads only that file: a metric line the
agent's code prints is not a result (the harness even marks the run invalid
for it), and the agent's process never sees the file's name.

The guest runs in the kernel sandbox of harness/sandbox.py (its checkout and
artifact directory writable, its protected files read-only, the system
read-only, the task's sealed data and everything else out of sight, no
network), so the watch's rules hold against native code too, and it can
neither see nor signal the harness. The budget counts training only, from the
guest's first optimizer step to its hand-off; start-up and the hand-off have
allowances of their own (harness/clock.py marks the phases inside the guest,
harness/timeline.py keeps their deadlines here): a guest past the deadline of
its phase is killed and the run is invalid.

`run_guest` runs the guest and returns what happened; `Evaluator` scores what
it handed over; `verdict` writes the result file. Task harnesses compose them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import selectors
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.harness import sandbox
from researchorg.harness.clock import STEP_LINE
from researchorg.harness.sealed import SEAL_KEY_ENV
from researchorg.harness.timeline import Allowances, Timeline

_REPORTS_MAX = 1 << 20  # bytes of the guest's reports read
_LINE_MAX = 1 << 16  # bytes of one output line kept
RESULT_ENV = "RESEARCHORG_RESULT"
ARTIFACT_ENV = "RESEARCHORG_ARTIFACT"


def flops_estimate(num_params: float, tokens: float) -> float:
    """Training FLOPs of a dense language model: 6 x parameters x tokens (a confound the harness reports)."""
    return 6.0 * num_params * tokens


@dataclass
class GuestRun:
    returncode: int | None  # None: killed at the deadline of a phase
    seconds: float  # wall time of the guest, start-up included
    peak_mem_mb: float  # the guest's peak resident memory
    sandbox: str = ""  # the protections in force (sandbox.summary)
    phases: dict[str, float] = field(default_factory=dict)  # startup_seconds, training_seconds, handoff_seconds
    killed: str | None = None  # why it was killed (a phase past its deadline); None if it was not
    overran: bool = False  # killed while training, past its budget: what a run that trains longer would do
    handed_over: bool = False  # it handed its model over (the files are in the harness's own folder)
    violations: list[dict[str, str]] = field(default_factory=list)
    output_tail: list[str] = field(default_factory=list)
    metric_lines: list[str] = field(default_factory=list)  # lines that look like the task's metric


def run_guest(script: Path, *, allowances: Allowances, seed: int, artifact_dir: Path, handed_dir: Path,
              protected: list[str],
              hidden: list[str], metric_pattern: re.Pattern[str], preload: tuple[str, ...] = (),
              read: list[Path] = (), network: bool = False, spare: tuple[int, ...] = (),
              seeds: str = "refuse", python: str = sys.executable, pythonpath: list[Path] = (),
              args: list[str] = (), handoff: dict[str, Any] | None = None) -> GuestRun:
    """Run `script` as a watched guest in its sandbox, its phases held to `allowances` (harness/timeline.py); the
    files of its hand-off are moved to `handed_dir` the moment it marks them handed over.

    `hidden` paths (the validation data) are out of its sight; `protected` files are read-only to it, and so are
    the `read` paths (training data outside the checkout). When it ends, whatever it started is killed, but
    not the `spare` processes (the evaluation box, started beside it). `seeds`: "refuse" (a reseed with
    anything but the run's seed is a violation) or "replace" (seeding calls get the run's seed instead).
    `python` runs it (a repository's own interpreter, with `pythonpath` first on its path: where it finds
    researchorg.harness), with `args`; `handoff` names the protected function that takes the model
    (harness/handoff.py). Its output is echoed to ours.
    """
    sandbox.become_subreaper()  # what the guest starts and detaches stays below us, to be killed at the end
    report_read, report_write = os.pipe()
    policy = sandbox.policy_for(script.parent, [artifact_dir], readonly=[Path(p) for p in protected],
                                hidden=[Path(p) for p in hidden], read=[Path(p) for p in read], network=network)
    enforced, _ = sandbox.protections(policy)
    spec = {"script": str(script), "args": list(args), "handoff": handoff, "artifact": str(artifact_dir),
            "seed": seed, "report_fd": report_write, "forbidden_reads": hidden,
            "protected": protected, "writable": [str(script.parent), str(artifact_dir)],
            "preload": list(preload), "policy": policy.to_json(), "seeds": seeds,
            "kernel_files": any(layer.startswith(("landlock", "namespaces")) for layer in enforced)}
    spec_path = artifact_dir / "guest.json"
    spec_path.write_text(json.dumps(spec))
    # the guest never learns where the verdict goes, nor the key of the sealed data's private copy
    env = {k: v for k, v in os.environ.items() if k not in (RESULT_ENV, SEAL_KEY_ENV)}
    env[ARTIFACT_ENV] = str(artifact_dir)
    scratch = artifact_dir / "tmp"  # the guest's temp dir and home: the machine's may hold other programs
    scratch.mkdir(exist_ok=True)
    env.update(TMPDIR=str(scratch), TEMP=str(scratch), TMP=str(scratch), HOME=str(scratch))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    sandbox.link_home([Path(p) for p in read], scratch)  # data under `~` is found at `~` by the guest too
    env["RESEARCHORG_BUDGET"] = f"{allowances.budget:g}"
    started = time.monotonic()
    argv = sandbox.command([python, "-m", "researchorg.harness.guest", str(spec_path)], policy, script.parent)
    proc = subprocess.Popen(argv, cwd=script.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, pass_fds=(report_write,))  # in the harness's process group
    os.close(report_write)
    run = GuestRun(None, 0.0, 0.0, sandbox="; ".join(enforced))
    timeline = Timeline(started, allowances, artifact_dir, handed_dir)
    reports = _watch(proc, report_read, run, timeline, metric_pattern)
    _, status, usage = os.wait4(proc.pid, 0)
    sandbox.kill_descendants(spare=spare)  # nothing the guest started outlives it (training on, writing)
    timeline.ended(time.monotonic())
    run.seconds = time.monotonic() - started
    run.returncode = None if timeline.killed_in else os.waitstatus_to_exitcode(status)
    run.peak_mem_mb = max(run.peak_mem_mb, usage.ru_maxrss / 1024)
    run.phases, run.killed, run.overran = timeline.seconds(), timeline.why_killed(), timeline.overran()
    run.handed_over = timeline.handed_at is not None
    run.violations = [{"kind": str(r.get("kind")), "detail": r["detail"] if isinstance(r.get("detail"), str) else ""}
                      for r in reports if "kind" in r]
    return run


STEP_MARK = {"event": "step"}
STALL_SECONDS = 0.5  # a wake-up later than this past its time is a stall of the machine, not of the guest


def _watch(proc: subprocess.Popen, report_read: int, run: GuestRun, timeline: Timeline,
           metric_pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    """Echo the guest's output, keep its tail and metric-like lines, stamp its clock's marks and kill it at the
    deadline of its phase; the reports it wrote (its violations and marks)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(report_read, selectors.EVENT_READ, "report")
    reports: list[dict[str, Any]] = []
    pending, told, received = b"", b"", 0
    peak_kb, sampled, killed_at = 0, 0.0, None
    tick, wait = time.monotonic(), 0.0
    while selector.get_map():
        now = time.monotonic()
        late = now - tick - wait - STALL_SECONDS  # the machine kept this loop from running, and the guest too
        if late > 0 and killed_at is None:
            timeline.stalled(late)
        deadline = killed_at + 5 if killed_at is not None else timeline.deadline()
        wait = min(max(0.0, deadline - now), 0.5)
        tick = now
        events = selector.select(timeout=wait)
        if time.monotonic() >= sampled + 0.2:  # a scan of /proc: not once per chunk of a flood of output
            peak_kb, sampled = max(peak_kb, _tree_peak_kb(proc.pid)), time.monotonic()
        if time.monotonic() >= deadline and killed_at is None:
            _kill(proc.pid)  # what it started stays in the run's group, which the lab kills when the harness exits
            timeline.killed(time.monotonic())
            killed_at = time.monotonic()
            continue
        for key, _ in events:
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            if key.data == "report":
                told += chunk
                *lines, told = told.split(b"\n")
                told = told[-_LINE_MAX:]
                for line in lines:
                    if line == STEP_LINE and killed_at is None:  # one a step: stamped, not kept
                        timeline.mark(STEP_MARK, time.monotonic())
                        continue
                    received += len(line)
                    if received > _REPORTS_MAX:  # a guest that floods the pipe gets no more of our memory
                        continue
                    report = _report(line)
                    reports.append(report)
                    if "event" in report and killed_at is None:
                        timeline.mark(report, time.monotonic())
                continue
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            pending = pending[-_LINE_MAX:]  # a line without end is kept by its tail only
            _keep_lines(run, lines, metric_pattern)
    if pending:
        _keep_lines(run, [pending], metric_pattern)
    os.close(report_read)
    run.peak_mem_mb = peak_kb / 1024
    return reports


def _report(line: bytes) -> dict[str, Any]:
    """One line the guest wrote on its report descriptor: a violation or a mark of its clock."""
    try:
        report = json.loads(line)
    except ValueError:
        report = None
    return report if isinstance(report, dict) else {"kind": "garbled report", "detail": line[:200].decode(
        errors="replace")}


def _tree_peak_kb(root: int) -> int:
    """The largest peak resident memory (VmHWM) among `root` and its descendants, read from outside the sandbox."""
    peak = 0
    for pid in [root, *sandbox.descendants(root)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return peak


def _keep_lines(run: GuestRun, lines: list[bytes], metric_pattern: re.Pattern[str]) -> None:
    """The last lines of the guest's output, and those that look like the metric (a flood of lines costs one
    pass of the pattern over its text, not a step a line)."""
    if not lines:
        return
    run.output_tail = [*run.output_tail, *(line[:_LINE_MAX].decode(errors="replace") for line in lines[-30:])][-30:]
    text = b"\n".join(lines).decode(errors="replace")
    if len(run.metric_lines) < 100:
        run.metric_lines += [m.group(0).strip() for m in _line_pattern(metric_pattern).finditer(text)]


@functools.cache
def _line_pattern(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern` over a whole line of a text of many lines."""
    return re.compile(f"(?m)^(?:{pattern.pattern.removeprefix('^')}).*$")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_artifact(artifact_dir: Path, name: str, limit: int = 1 << 30) -> bytes | None:
    """A file the guest left in its artifact directory, or None: a regular file only, opened without following
    a symlink (the guest could point one at anything this process may read), at most `limit` bytes."""
    try:
        fd = os.open(artifact_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(limit)


EVALUATION_SECONDS = 600.0  # the most an evaluation may take, from the model's hand-over to its verdict


class Evaluator:
    """The evaluation box of one run (harness/evaluate.py): started before or beside the guest so that it loads
    torch and the validation data meanwhile; `score` hands it the model's bytes and returns its verdict."""

    def __init__(self, prepare_dir: Path, read: list[Path], *, python: str = sys.executable,
                 pythonpath: list[Path] = (), request: dict[str, Any] | None = None):
        """A box that imports the task's files from `prepare_dir` and reads `read`; run by `python` (with
        `pythonpath`, where it finds researchorg.harness: a repository's own interpreter); `request` says how
        it scores (harness/evaluate.py: a built-in task's prepare module by default)."""
        self.scratch = tempfile.TemporaryDirectory(prefix="researchorg-eval-tmp-")
        policy = sandbox.evaluation_policy([prepare_dir, *read, *pythonpath], Path(self.scratch.name))
        start = ["-m", "researchorg.harness.evaluate"] if not pythonpath else \
            ["-c", f"import sys, runpy; sys.path[:0] = {[str(p) for p in pythonpath]!r}; "
                   "runpy.run_module('researchorg.harness.evaluate', run_name='__main__', alter_sys=True)"]
        argv = sandbox.command([python, "-I", *start], policy, prepare_dir)
        env = {k: v for k, v in os.environ.items() if k != RESULT_ENV}
        env.update(TMPDIR=self.scratch.name, TEMP=self.scratch.name, TMP=self.scratch.name)
        self.errors = tempfile.TemporaryFile()  # its stderr: read only to say why a box that failed failed
        self.proc = subprocess.Popen(argv, cwd=prepare_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors)
        request = {**(request or {}), "policy": policy.to_json(), "prepare_dir": str(prepare_dir)}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")  # within a pipe's buffer: it loads at once
        self.proc.stdin.flush()

    def score(self, model: bytes, meta: dict[str, Any], timeout: float = EVALUATION_SECONDS) -> dict[str, Any]:
        """The box's verdict on `model` (status, metric, reason, summary)."""
        head = json.dumps({**meta, "model_bytes": len(model)}).encode() + b"\n"
        try:
            out, _ = self.proc.communicate(head + model, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            return {"status": "crash", "reason": f"the evaluation took longer than {timeout:g} s: killed"}
        try:
            verdict = json.loads(out.splitlines()[0]) if out else None
        except ValueError:
            verdict = None
        if not isinstance(verdict, dict) or verdict.get("status") not in ("ok", "invalid", "crash"):
            self.errors.seek(0)
            last = (self.errors.read()[-4096:].decode(errors="replace").strip().splitlines() or [""])[-1]
            code = self.proc.returncode
            return {"status": "crash", "reason": f"the evaluation process ended without a verdict (exit code "
                                                 f"{code}): {re.sub(r'[0-9]+', '#', last)[:200]}"}
        return verdict

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()
        self.scratch.cleanup()


def judge(run: GuestRun) -> tuple[str, str] | None:
    """Why the guest's run cannot be scored: (status, reason); None if it can."""
    if run.violations:
        first = run.violations[0]
        more = f" (+{len(run.violations) - 1} more)" if len(run.violations) > 1 else ""
        return "invalid", f"training code: {first['kind']}: {first['detail']}{more}"
    if run.metric_lines:
        return "invalid", f"training code printed a metric line itself: {run.metric_lines[0]!r}"
    if run.killed is not None:  # past the budget is a gain nobody else had; a slow start-up or export a failure
        return ("invalid" if run.overran else "crash"), run.killed
    if run.returncode is not None and run.returncode != 0:
        tail = "\n".join(run.output_tail[-15:])
        return "crash", f"training exited with code {run.returncode}\n{tail}"
    return None


def print_summary(metric_name: str, metric: float, summary: dict[str, Any]) -> None:
    """The verdict in the log, as autoresearch's train.py prints its own: `---`, the metric, then the summary,
    rounded for people (82880 parameters, not 82880.000)."""
    def shown(value: Any) -> str:
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}" if isinstance(value, float) else str(value)
    print("---")
    print(f"{metric_name + ':':<18}{metric:.6f}")
    for key, value in summary.items():
        if key != "weights_sketch":  # for the lab's comparison of runs, not for a person reading the log
            print(f"{key + ':':<18}{shown(value)}")


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
