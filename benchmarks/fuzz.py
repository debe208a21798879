"""Fuzzing: every input works or is one readable error, never a traceback, a hang or a change on disk.

    python benchmarks/fuzz.py [--cases 10000] [--quick]

Hypothesis generates org.toml, task.toml and bench specs (structured documents
from the real keys and wrong values: missing keys, wrong types, huge, negative
and non-finite numbers, odd strings, paths; and byte-level corruptions of valid
files, non-UTF-8 included), command lines for every command, and an LLM's tool
calls (any tool name, any JSON). The `checks` kind generates specs that are
well-formed but meaningless, as a careless user writes them, beside good ones:
paths that climb out of the task or are absolute or empty, commands that are
empty or cannot be split, knobs whose file is missing or does not hold them,
bad knob bounds and types, budgets, timeouts and allowances that are not
finite positive numbers, bad metric patterns and directions, prompt files that
are missing or directories, a bench's landscape parameters of wrong types and
ranges and an unknown bench task. Each case runs the real entry point in this
process (`researchorg.cli.main` with its argv, or the agent's Toolbox.call)
under a time limit, and counts as a traceback when an exception escapes, a
traceback is printed, it hangs, a rejected input exits 0 with nothing said, an
error is not one line, a rejected input changed a file, or a spec known to be
meaningless is accepted without a word. Prints:

    fuzz_cases:       inputs tried
    fuzz_tracebacks:  inputs that ended in a traceback, a hang or a change (target 0)
    fuzz_seconds:     wall time

with the first few failures above them. tests/test_fuzz.py runs a few hundred
cases of each kind in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_TASK = ROOT / "tests" / "fixtures" / "accuracy_task"
CASE_SECONDS = 20  # a case that takes longer hangs

VALID_ORG = """name = "fuzzed"
[[roles]]
name = "researcher"
backend = "tuner"
count = 2
[rigor]
noise_runs = 2
"""
VALID_TASK = (ACCURACY_TASK / "task.toml").read_text()
SIM_ORG = """name = "fuzzsim"
[[roles]]
name = "researcher"
backend = "simulated"
count = 2
"""
VALID_BENCH = """name = "fuzzbench"
task = "simulated"
repeats = 2
[compute]
slots = 2
experiments = 4
[landscape]
n_ideas = 20
[[orgs]]
label = "a"
file = "org.toml"
"""

ORG_KEYS = ["name", "roles", "backend", "count", "prompt", "model", "in_flight", "rigor", "noise_runs", "alpha",
            "processes", "lead", "leads", "submits", "tools", "verify_runs", "decision", "threads", "slots",
            "standup", "every", "interactive", "description", "extra"]
TASK_KEYS = ["name", "command", "editable", "protected", "budget_seconds", "timeout_seconds", "seed", "metric",
             "direction", "source", "pattern", "knobs", "file", "type", "low", "high", "log", "choices", "prepare",
             "requires", "network", "pass_env", "description", "sealed", "data", "interpreter", "startup_allowance",
             "handoff_allowance", "cpu", "set", "limits", "summary_keys", "seed_check"]
LANDSCAPE_KEYS = ["n_ideas", "sigma", "base", "p_win", "p_harm", "win_sigmas", "harm_sigmas", "interactions",
                  "saturation", "seconds", "crash_p", "slot_speed_spread", "busy_p", "busy_spell", "busy_slowdown",
                  "busy_cores", "throughput_slope", "steps", "fidelity_slope", "fidelity_deviation", "fidelity_sigma",
                  "effects", "win_mean", "win_shape", "harm_mean", "scale_spread", "insight", "preset"]
BENCH_KEYS = ["name", "task", "repeats", "compute", "experiments", "hours", "machine_slots", "orgs", "label", "file",
              "slots", "threads", "budget", "seed", "landscape", *LANDSCAPE_KEYS]


@dataclass
class Tally:
    cases: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failures.append(what)


# -- documents ---------------------------------------------------------------------------------------------------

def _scalars() -> st.SearchStrategy:
    return st.one_of(
        st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(), st.text(max_size=40), st.sampled_from(["", "..", "/", "/etc/passwd", "tuner", "llm", "tinylm",
                                                             "simulated", "maximize", "minimize", "harness", "x" * 300,
                                                             "train.py", "../../escape", "\x00", "é"]))


def _values(keys: list[str]) -> st.SearchStrategy:
    names = st.one_of(st.sampled_from(keys), st.text(min_size=1, max_size=12))
    return st.recursive(_scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=5)), max_leaves=12)


def documents(valid: str, keys: list[str]) -> st.SearchStrategy[bytes]:
    """TOML bytes: a valid document with keys changed, removed or added, or its bytes corrupted."""
    import tomllib
    base = tomllib.loads(valid)
    names = st.one_of(st.sampled_from(keys), st.text(min_size=1, max_size=12))

    @st.composite
    def edited(draw) -> bytes:
        doc = json.loads(json.dumps(base))
        for _ in range(draw(st.integers(1, 4))):
            target = doc
            path = draw(st.lists(st.sampled_from(keys + ["0"]), max_size=2))
            for step in path:
                nxt = target.get(step) if isinstance(target, dict) else None
                if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict):
                    nxt = nxt[0]
                if not isinstance(nxt, dict):
                    break
                target = nxt
            key = draw(names)
            if draw(st.booleans()) and target:
                target.pop(draw(st.sampled_from(sorted(target))), None)
            else:
                target[key] = draw(_values(keys))
        return to_toml(doc).encode()

    @st.composite
    def corrupted(draw) -> bytes:
        data = bytearray(valid.encode())
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            choice = draw(st.integers(0, 2))
            if choice == 0:
                data[at:at + 1] = b""
            elif choice == 1:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[at:]
        return bytes(data)

    return st.one_of(edited(), corrupted())


def to_toml(doc: dict, prefix: str = "") -> str:
    """A small TOML writer for generated documents (tables, arrays of tables, inline values)."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value, False))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value, True))
        else:
            lines.append(f"{_key(key)} = {_inline(value)}")
    out = "\n".join(lines) + "\n"
    for key, value, array in tables:
        name = f"{prefix}{_key(key)}"
        for table in (value if array else [value]):
            out += f"\n[{'[' if array else ''}{name}{']' if array else ''}]\n" + to_toml(table, name + ".")
    return out


def _key(key: str) -> str:
    return _string(key)


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes, and DEL escaped too (TOML refuses it raw, JSON leaves it)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _inline(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


# -- running one case --------------------------------------------------------------------------------------------

class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, BaseException | None]:
    """`researchorg ARGV` in this process: (exit code, what it printed, an exception that escaped main)."""
    from researchorg import cli
    out, err = io.StringIO(), io.StringIO()
    cli._stdout.stream = out  # the console's stdout, taken when the module was imported
    previous = os.getcwd()
    old_argv = sys.argv
    escaped = None
    code = 0
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(CASE_SECONDS)
    try:
        os.chdir(cwd)
        sys.argv = ["researchorg", *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer is looking for
        escaped = exc
        code = -1
    finally:
        signal.alarm(0)
        cli._stdout.stream = sys.stdout
        sys.argv = old_argv
        os.chdir(previous)
    return code, out.getvalue() + err.getvalue(), escaped


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in root.rglob("*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def judge_cli(tally: Tally, argv: list[str], cwd: Path, label: str, rejected_changes_nothing: bool = True) -> int:
    """Run `researchorg ARGV` and count a failure if it ends badly; its exit code (-1: it raised or hung)."""
    before = _snapshot(cwd)
    code, output, escaped = run_cli(argv, cwd)
    tally.cases += 1
    shown = f"{label}: researchorg {' '.join(argv)[:200]!r}"
    if isinstance(escaped, _Hang):
        tally.fail(f"{shown}: hung (over {CASE_SECONDS} s)")
        return -1
    if escaped is not None:
        tally.fail(f"{shown}: {type(escaped).__name__}: {escaped}"[:500])
        return -1
    if "Traceback (most recent call last)" in output:
        tally.fail(f"{shown}: printed a traceback:\n{output[-800:]}")
        return -1
    if code != 0:
        said = [line for line in output.strip().splitlines() if line.strip()]
        if not said:
            tally.fail(f"{shown}: exit {code} and nothing said")
            return code
        errors = [line for line in said if line.startswith(("error:", "Error:", "Usage:", "Try ", "│", "╭", "╰"))
                  or "error" in line.lower()]
        if not errors:
            tally.fail(f"{shown}: exit {code} without an error line:\n{output[-500:]}")
        elif rejected_changes_nothing and _snapshot(cwd) != before:
            tally.fail(f"{shown}: rejected, but changed files in {cwd}")
    return code


# -- the fuzzed entry points -------------------------------------------------------------------------------------

def _examples(n: int):
    """Hypothesis's settings for `n` cases: no deadline (a case runs a whole command), no example database."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="researchorg-fuzz-"))


def fuzz_org(tally: Tally, n: int) -> None:
    @_examples(n)
    @given(documents(VALID_ORG, ORG_KEYS))
    def case(data: bytes) -> None:
        work = _workdir()
        (work / "org.toml").write_bytes(data)
        judge_cli(tally, ["check", str(work / "org.toml"), "--offline"], work, "org.toml")
        _remove(work)
    case()


def fuzz_bench(tally: Tally, n: int) -> None:
    @_examples(n)
    @given(documents(VALID_BENCH, BENCH_KEYS))
    def case(data: bytes) -> None:
        work = _workdir()
        (work / "org.toml").write_text(SIM_ORG)
        (work / "bench.toml").write_bytes(data)
        code = judge_cli(tally, ["check", str(work / "bench.toml"), "--offline"], work, "bench.toml")
        if code == 0:
            _landscape_runs(tally, work / "bench.toml")
        _remove(work)
    case()


def _landscape_runs(tally: Tally, bench: Path) -> None:
    """A bench spec `check` accepted: its landscape (what `bench` builds first) is made and runs, no traceback."""
    from researchorg.bench.spec import load_bench
    try:
        spec, _ = load_bench(bench)
        if spec.task == "simulated":
            landscape = spec.landscape.build(spec.seed)
            config = frozenset(i.name for i in landscape.ideas[:3])
            landscape.run(config, seed=1, slot="s", at=10.0, fidelity=0.5)
            landscape.run(config, seed=2, slot="s", at=4000.0)
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer is looking for
        tally.fail(f"bench.toml accepted by check, but its landscape fails: {type(exc).__name__}: {exc}"[:500])


def fuzz_task(tally: Tally, n: int) -> None:
    @_examples(n)
    @given(documents(VALID_TASK, TASK_KEYS))
    def case(data: bytes) -> None:
        work = _workdir()
        task = work / "task"
        task.mkdir()
        for name in ("train.py", "evaluate.py"):
            (task / name).write_text((ACCURACY_TASK / name).read_text())
        (task / "task.toml").write_bytes(data)
        judge_cli(tally, ["init", str(work / "lab"), "--task", str(task)], work, "task.toml")
        if (work / "lab").exists() and not (work / "lab" / ".researchorg" / "ledger.db").exists():
            tally.fail(f"task.toml: init left a half-made program: {data[:200]!r}")
        _remove(work)
    case()


# -- well-formed but meaningless specs -------------------------------------------------------------------------
# What a careless user writes: each entry is known to be meaningless, so a spec holding it must be refused (with
# one line naming the key), never accepted without a word; the good values beside them must be accepted.

BAD_PATHS = ["../x.py", "../../etc/passwd", "a/../../x.py", "/etc/passwd", "/tmp/x.py", "~/x.py", "", "   ",
             "./train.py", "a//b.py", "src/", "x\x00y.py", " train.py"]
BAD_SEALED = ["../valid.bin", "data/../../valid.bin", "", "  ", "a\x00b"]
BAD_COMMANDS = ["", "   ", "\t", "python 'train.py", 'python "train.py', "python train.py '", "python \\",
                "python train.py \x00"]
BAD_NUMBERS = [0, -1, -0.5, float("nan"), float("inf"), float("-inf"), 1e300, True, False, "soon", "", [], [1.0],
               {"seconds": 1}]
BAD_KNOBS = [{"low": 1.0, "high": 0.0}, {"low": 0.5, "high": 0.5}, {"low": float("nan")}, {"high": float("inf")},
             {"low": -1e308, "high": 1e308}, {"log": True, "low": 0.0}, {"log": True, "low": -1.0},
             {"type": "integer"}, {"type": "Float"}, {"type": ""}, {"type": "int", "low": 0.2, "high": 0.8},
             {"type": "categorical"}, {"type": "categorical", "choices": []}, {"choices": [0.1, 0.2]},
             {"type": "int"},  # THRESHOLD = 0.5 in train.py: not an integer
             {"name": "NOT_THERE"}, {"name": "threshold"}, {"name": "1X"}, {"file": "evaluate.py"},
             {"file": "missing.py"}, {"file": "../train.py"}, {"file": "/etc/passwd"}, {"low": True}]
BAD_PATTERNS = ["(", "[a-", "*", "no group", "^accuracy: \\S+$", "(?P<x", "a{2,1}"]
BAD_DIRECTIONS = ["up", "down", "max", "MINIMIZE", "", "minimise"]
BAD_NAMES = ["", " ", "my module", "torch-nightly", "1torch", "a..b", "x\x00"]
BAD_PROMPTS = ["missing.md", "prompts", "../outside.md", "/etc/passwd", "", "  ", "~/x.md"]
BAD_LANDSCAPE: dict[str, list] = {
    "n_ideas": [0, 1, -5, 2.5, 10**9, "many", True, float("nan"), [40]],
    "interactions": [-1, 0.5, 10**9, "some", float("inf")],
    "sigma": [0, -0.01, float("nan"), float("inf"), "small", 1e300, [0.01]],
    "base": [float("nan"), float("inf"), -1e300, "one"],
    "p_win": [-0.1, 1.5, float("nan"), "half", True],
    "p_harm": [-0.1, 2, float("inf")],
    "win_sigmas": [[5.0, 1.0], [1.0], [1.0, 2.0, 3.0], [-1.0, 2.0], "1-5", 3.0, [float("nan"), 1.0]],
    "harm_sigmas": [[8.0, 1.0], [], [1.0, float("inf")]],
    "busy_slowdown": [[0.8, 0.3], [0.3, 1.0], [-0.1, 0.5], [0.5]],
    "saturation": [0, -0.25, float("nan")],
    "seconds": [0, -300, float("inf"), 1e12],
    "crash_p": [-0.01, 1.0, 1.5, float("nan")],
    "slot_speed_spread": [-0.1, 1.0, 2.0],
    "busy_p": [-0.5, 1.01],
    "busy_spell": [0, 0.5, -1800, float("inf")],
    "busy_cores": [-1, float("nan")],
    "throughput_slope": [-0.1, float("inf")],
    "steps": [0, -1000, float("nan")],
    "fidelity_slope": [float("nan"), float("inf")],
    "fidelity_deviation": [-0.84, float("inf")],
    "fidelity_sigma": [-1.13, float("nan")],
    "seed": [1],  # the repeat's: not a landscape override
    "ideas": [40], "n_idea": [40], "": [1],
}
GOOD_LANDSCAPE: dict[str, st.SearchStrategy] = {
    "n_ideas": st.integers(2, 200), "interactions": st.integers(0, 20),
    "sigma": st.floats(1e-4, 1.0), "base": st.floats(-10, 10), "p_win": st.floats(0, 0.5),
    "p_harm": st.floats(0, 0.5), "saturation": st.floats(1e-3, 10), "seconds": st.floats(1, 10_000),
    "crash_p": st.floats(0, 0.99), "slot_speed_spread": st.floats(0, 0.99), "busy_p": st.floats(0, 1),
    "busy_spell": st.floats(1, 1e5), "busy_cores": st.floats(0, 64), "throughput_slope": st.floats(0, 1),
    "steps": st.floats(1, 1e6), "fidelity_slope": st.floats(-2, 2), "fidelity_deviation": st.floats(0, 3),
    "fidelity_sigma": st.floats(0, 3),
    "win_sigmas": st.tuples(st.floats(0, 5), st.floats(0, 5)).map(lambda p: sorted(p)),
    "harm_sigmas": st.tuples(st.floats(0, 8), st.floats(0, 8)).map(lambda p: sorted(p)),
    "busy_slowdown": st.tuples(st.floats(0, 0.99), st.floats(0, 0.99)).map(lambda p: sorted(p)),
}


def _task_doc() -> dict:
    import tomllib
    return tomllib.loads(VALID_TASK)


@dataclass
class SpecCase:
    """A spec to try: the files of its directory, the command line (relative to it), and whether it must be
    refused (True), must be accepted (False) or either (None)."""
    what: str
    files: dict[str, str | bytes | None]  # None: a directory
    argv: list[str]
    refuse: bool | None


@st.composite
def task_checks(draw) -> SpecCase:
    """A task.toml with one meaningless value at one key (or a good one), checked by `check` or `init`."""
    doc = _task_doc()
    knob = doc["knobs"][0]
    kind = draw(st.sampled_from(["path", "sealed", "command", "number", "knob", "metric", "name", "good"]))
    refuse = True
    if kind == "path":
        key = draw(st.sampled_from(["editable", "protected", "knob.file", "cpu.set"]))
        bad = draw(st.sampled_from(BAD_PATHS))
        if key == "knob.file":
            doc["editable"] = ["*.py"]
            knob["file"] = bad
        elif key == "cpu.set":
            doc["cpu"] = {"set": {bad: {"THRESHOLD": 0.25}}}
        else:
            doc[key] = [*doc.get(key, []), bad]
    elif kind == "sealed":
        doc[draw(st.sampled_from(["sealed"]))] = [draw(st.sampled_from(BAD_SEALED))]
    elif kind == "command":
        doc[draw(st.sampled_from(["command", "prepare"]))] = draw(st.sampled_from(BAD_COMMANDS))
    elif kind == "number":
        key = draw(st.sampled_from(["budget_seconds", "timeout_seconds", "startup_allowance", "handoff_allowance",
                                    "cpu.budget_seconds"]))
        value = draw(st.sampled_from(BAD_NUMBERS))
        if key == "cpu.budget_seconds":
            doc["cpu"] = {"budget_seconds": value}
        else:
            doc[key] = value
    elif kind == "knob":
        edit = draw(st.sampled_from(BAD_KNOBS))
        if edit.get("file") == "missing.py":
            doc["editable"] = ["*.py"]
        knob.update(edit)
        if draw(st.booleans()) and "name" not in edit:
            doc["knobs"].append(dict(knob))  # the same knob twice
    elif kind == "metric":
        key = draw(st.sampled_from(["pattern", "direction"]))
        doc["metric"][key] = draw(st.sampled_from(BAD_PATTERNS if key == "pattern" else BAD_DIRECTIONS))
    elif kind == "name":
        doc[draw(st.sampled_from(["requires", "pass_env"]))] = [draw(st.sampled_from(BAD_NAMES))]
    else:
        refuse = False
        doc["budget_seconds"] = draw(st.floats(0.01, 3.0))
        doc["editable"] = draw(st.sampled_from([["train.py"], ["*.py"], ["train.py", "notes/*.md"]]))
        doc["sealed"] = draw(st.sampled_from([[], ["/data/heldout.pt"], ["~/.cache/x"], ["{stdlib}/idlelib"],
                                              ["valid.bin"]]))
        doc["prepare"] = draw(st.sampled_from(["python -c 'print(1)'", 'python -c "import sys"']))
        low = draw(st.floats(-1.0, 0.49))
        knob.update(low=low, high=draw(st.floats(low + 0.01, 2.0)))
        doc["startup_allowance"] = draw(st.floats(0.5, 3600))
        doc["metric"]["pattern"] = draw(st.sampled_from(["^accuracy:\\s*(\\S+)", "accuracy=(?P<v>[0-9.]+)"]))
    command = draw(st.sampled_from(["check", "check", "init"]))
    argv = ["check", "task", "--offline"] if command == "check" else ["init", "lab", "--task", "task"]
    files: dict[str, str | bytes | None] = {"task/task.toml": to_toml(doc), "task/org.toml": VALID_ORG}
    return SpecCase(f"task.toml {kind}", files, argv, refuse)


@st.composite
def org_checks(draw) -> SpecCase:
    """An org.toml whose role names a prompt file that is missing, a directory, or outside its folder."""
    good = draw(st.booleans())
    prompt = "prompt.md" if good else draw(st.sampled_from(BAD_PROMPTS))
    org = VALID_ORG.replace('backend = "tuner"', f'backend = "tuner"\nprompt = [{json.dumps(prompt)}]')
    files: dict[str, str | bytes | None] = {"org.toml": org, "prompt.md": "Be careful.\n", "prompts": None}
    argv = draw(st.sampled_from([["check", "org.toml", "--offline"],
                                 ["init", "lab", "--task", str(ACCURACY_TASK), "--org", "org.toml"]]))
    return SpecCase("org.toml prompt", files, argv, refuse=not good)


@st.composite
def bench_checks(draw) -> SpecCase:
    """A bench spec with a bad landscape parameter, an unknown task or a landscape on a real task (or good)."""
    import tomllib
    doc = tomllib.loads(VALID_BENCH)
    kind = draw(st.sampled_from(["landscape", "landscape", "landscape", "task", "real", "good", "random"]))
    refuse: bool | None = True
    if kind == "landscape":
        key = draw(st.sampled_from(sorted(BAD_LANDSCAPE)))
        doc["landscape"][key] = draw(st.sampled_from(BAD_LANDSCAPE[key]))
    elif kind == "task":
        doc["task"] = draw(st.sampled_from(["nonexistent", "../nowhere", "", "  ", "tinyLM", "/etc"]))
    elif kind == "real":
        doc["task"] = str(ACCURACY_TASK)  # a real task: its orgs are the tuner's, and a landscape means nothing
    elif kind == "good":
        refuse = False
        for key in draw(st.lists(st.sampled_from(sorted(GOOD_LANDSCAPE)), max_size=4, unique=True)):
            doc["landscape"][key] = draw(GOOD_LANDSCAPE[key])
        if doc["landscape"].get("p_win", 0) + doc["landscape"].get("p_harm", 0.3) > 1:
            doc["landscape"].pop("p_win")
    else:
        refuse = None
        for key in draw(st.lists(st.sampled_from(LANDSCAPE_KEYS), min_size=1, max_size=3, unique=True)):
            doc["landscape"][key] = draw(_scalars())
    org = VALID_ORG if kind == "real" else SIM_ORG
    files: dict[str, str | bytes | None] = {"bench.toml": to_toml(doc), "org.toml": org}
    return SpecCase(f"bench.toml {kind}", files, ["check", "bench.toml", "--offline"], refuse)


def fuzz_checks(tally: Tally, n: int) -> None:
    """Meaningless specs are refused in one line naming the key, good ones accepted, and nothing raises."""
    @_examples(n)
    @given(st.one_of(task_checks(), org_checks(), bench_checks()))
    def case(spec: SpecCase) -> None:
        work = _workdir()
        for name, content in spec.files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                path.mkdir(exist_ok=True)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        if (work / "task").is_dir():
            for name in ("train.py", "evaluate.py"):
                (work / "task" / name).write_text((ACCURACY_TASK / name).read_text())
        argv = [str(work / a) if a in ("task", "lab", "org.toml", "bench.toml") else a for a in spec.argv]
        failures = len(tally.failures)
        code = judge_cli(tally, argv, work, spec.what)
        if len(tally.failures) > failures:
            return _remove(work)
        if spec.refuse and code == 0:
            tally.fail(f"{spec.what}: accepted without a word: {spec.files}"[:600])
        elif spec.refuse is False and code != 0:
            tally.fail(f"{spec.what}: a good spec was refused: {spec.files}"[:600])
        elif code == 0 and "bench.toml" in spec.files:
            _landscape_runs(tally, work / "bench.toml")
        _remove(work)
    case()


COMMANDS = ["init", "run", "status", "results", "plot", "check", "messages", "submit", "bench", "ablate", "export",
            "demo", "--help", "-h", "--version", "nonsense"]
OPTIONS = ["--task", "--budget", "--org", "--slots", "--threads", "--max-hours", "--max-experiments", "--offline",
           "--agent", "--last", "-m", "--message", "--hypothesis", "--format", "--output", "--json", "--wait",
           "--no-wait", "--help", "-h", "--repeats", "--quick", "--debug", "--"]
VALUES = ["", "0", "-1", "1", "2", "1e400", "nan", "inf", "-inf", "1.5", "x", "tinylm", "simulated",
          "/etc/passwd", "/dev/null", ".", "..", "org.toml", "prog", "file.txt", "not-utf8",
          "corrupt", "é", "a" * 500, "--", "-", "99999999999999999999"]


def fuzz_cli(tally: Tally, n: int) -> None:
    work = _workdir()
    (work / "file.txt").write_text("not a program\n")
    (work / "not-utf8").mkdir()
    (work / "not-utf8" / "org.toml").write_bytes(b"name = \"\xff\xfe\"\n")
    (work / "org.toml").write_text(VALID_ORG)
    corrupt = work / "corrupt" / ".researchorg"
    corrupt.mkdir(parents=True)
    (corrupt / "ledger.db").write_bytes(b"garbage, not SQLite" * 10)
    (work / "corrupt" / "task.toml").write_text(VALID_TASK)
    token = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), st.text(max_size=15))

    @_examples(n)
    @given(st.sampled_from(COMMANDS), st.lists(token, max_size=6))
    def case(command: str, args: list[str]) -> None:
        argv = [command, *args]
        if command in ("run", "demo", "bench", "ablate", "init") and _could_start_work(argv, work):
            # never a real run: a directory that cannot exist (under a file), the rest still parsed
            argv = [command, str(work / "file.txt" / "lab"), *args]
        prog = work / "prog"
        judge_cli(tally, argv, work, "cli", rejected_changes_nothing=False)
        if prog.exists() and command != "init":
            tally.fail(f"cli: researchorg {' '.join(argv)!r} made a program")
        _remove(prog)
    case()
    _remove(work)


def _could_start_work(argv: list[str], work: Path) -> bool:
    """Whether the command line might start experiments (a run, a demo, a bench): the fuzzer keeps to parsing."""
    command = argv[0]
    if command == "init":
        return any(a in ("tinylm",) for a in argv)  # tinylm's prepare reads the corpus: slow, not wrong
    return True


TOOL_NAMES = ["list_files", "read_file", "write_file", "replace_in_file", "results", "best_diff", "read_messages",
              "send_message", "submit", "merge", "done", "nonsense", ""]


def fuzz_tools(tally: Tally, n: int) -> None:
    from researchorg.agents.base import AgentContext
    from researchorg.agents.tools import Toolbox
    from researchorg.config import RoleSpec
    from researchorg.world.program import Program
    work = _workdir()
    org = work / "org.toml"
    org.write_text(VALID_ORG)
    program = Program.init(work / "program", str(ACCURACY_TASK), org_file=org)
    worktree = program.ensure_agent("researcher", "researcher", "openai")
    ctx = AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                       role=RoleSpec(name="researcher", backend="tuner"))
    json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                                         st.sampled_from(["train.py", "evaluate.py", "../../ledger.db", "/etc/passwd",
                                                          ".git/config", "", "a/b/c.py"])),
                               lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                               max_leaves=8)
    arguments = st.one_of(
        st.dictionaries(st.sampled_from(["path", "content", "old", "new", "limit", "to", "body", "kind",
                                         "description", "hypothesis", "experiment", "summary", "x"]),
                        json_values, max_size=4),
        st.text(max_size=60), json_values.map(json.dumps))
    protected = {p: (worktree / p).read_bytes() for p in ("evaluate.py", "task.toml")}

    @_examples(n)
    @given(st.sampled_from(TOOL_NAMES), arguments)
    def case(name: str, args) -> None:
        box = Toolbox(ctx)
        tally.cases += 1
        try:
            answer = box.call(name, args)
        except BaseException as exc:  # noqa: BLE001
            return tally.fail(f"tool {name}({str(args)[:200]}): {type(exc).__name__}: {exc}"[:500])
        if not isinstance(answer, str):
            tally.fail(f"tool {name}({str(args)[:200]}): answered {type(answer).__name__}, not text")
        for path, data in protected.items():
            if (worktree / path).read_bytes() != data:
                tally.fail(f"tool {name}({str(args)[:200]}): changed protected {path}")
                (worktree / path).write_bytes(data)
        if (program.root / ".researchorg" / "escape").exists():
            tally.fail(f"tool {name}({str(args)[:200]}): wrote outside the worktree")
    case()
    program.ledger.close()
    _remove(work)


def _remove(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


KINDS: dict[str, Callable[[Tally, int], None]] = {"org": fuzz_org, "task": fuzz_task, "bench": fuzz_bench,
                                                   "checks": fuzz_checks, "cli": fuzz_cli, "tools": fuzz_tools}
SHARE = {"org": 0.25, "task": 0.15, "bench": 0.1, "checks": 0.15, "cli": 0.2, "tools": 0.15}


def fuzz(cases: int) -> Tally:
    tally = Tally()
    for kind, run in KINDS.items():
        run(tally, max(1, round(cases * SHARE[kind])))
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="200 cases (CI)")
    args = parser.parse_args()
    cases = 200 if args.quick else args.cases
    started = time.perf_counter()
    tally = fuzz(cases)
    for failure in tally.failures[:10]:
        print(f"FAIL {failure}")
    print(f"fuzz_cases:       {tally.cases}")
    print(f"fuzz_tracebacks:  {len(tally.failures)}")
    print(f"fuzz_seconds:     {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
