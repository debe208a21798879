"""Fuzzing: every input works or is one readable error, never a traceback, a hang or a change on disk.

    python benchmarks/fuzz.py [--cases 10000] [--quick]

Hypothesis generates org.toml, task.toml and bench specs (structured documents
from the real keys and wrong values: missing keys, wrong types, huge, negative
and non-finite numbers, odd strings, paths; and byte-level corruptions of valid
files, non-UTF-8 included), command lines for every command, and an LLM's tool
calls (any tool name, any JSON). Each case runs the real entry point in this
process (`researchorg.cli.main` with its argv, or the agent's Toolbox.call)
under a time limit, and counts as a traceback when an exception escapes, a
traceback is printed, it hangs, a rejected input exits 0 with nothing said, an
error is not one line, or a rejected input changed a file. Prints:

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
VALID_BENCH = """name = "fuzzbench"
task = "simulated"
repeats = 2
budget_experiments = 4
[[orgs]]
label = "a"
org = "org.toml"
"""

ORG_KEYS = ["name", "roles", "backend", "count", "prompt", "model", "in_flight", "rigor", "noise_runs", "alpha",
            "processes", "lead", "leads", "submits", "tools", "verify_runs", "decision", "threads", "slots",
            "standup", "every", "interactive", "description", "extra"]
TASK_KEYS = ["name", "command", "editable", "protected", "budget_seconds", "timeout_seconds", "seed", "metric",
             "direction", "source", "pattern", "knobs", "file", "type", "low", "high", "log", "choices", "prepare",
             "requires", "network", "pass_env", "description"]
BENCH_KEYS = ["name", "task", "repeats", "budget_experiments", "orgs", "label", "org", "slots", "threads",
              "budget_hours", "seed"]


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
    return json.dumps(key, ensure_ascii=False)


def _inline(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
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


def judge_cli(tally: Tally, argv: list[str], cwd: Path, label: str, rejected_changes_nothing: bool = True) -> None:
    before = _snapshot(cwd)
    code, output, escaped = run_cli(argv, cwd)
    tally.cases += 1
    shown = f"{label}: researchorg {' '.join(argv)[:200]!r}"
    if isinstance(escaped, _Hang):
        return tally.fail(f"{shown}: hung (over {CASE_SECONDS} s)")
    if escaped is not None:
        return tally.fail(f"{shown}: {type(escaped).__name__}: {escaped}"[:500])
    if "Traceback (most recent call last)" in output:
        return tally.fail(f"{shown}: printed a traceback:\n{output[-800:]}")
    if code != 0:
        said = [line for line in output.strip().splitlines() if line.strip()]
        if not said:
            return tally.fail(f"{shown}: exit {code} and nothing said")
        errors = [line for line in said if line.startswith(("error:", "Error:", "Usage:", "Try ", "│", "╭", "╰"))
                  or "error" in line.lower()]
        if not errors:
            return tally.fail(f"{shown}: exit {code} without an error line:\n{output[-500:]}")
        if rejected_changes_nothing and _snapshot(cwd) != before:
            return tally.fail(f"{shown}: rejected, but changed files in {cwd}")


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
        (work / "org.toml").write_text(VALID_ORG)
        (work / "bench.toml").write_bytes(data)
        judge_cli(tally, ["check", str(work / "bench.toml"), "--offline"], work, "bench.toml")
        _remove(work)
    case()


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
                                                   "cli": fuzz_cli, "tools": fuzz_tools}
SHARE = {"org": 0.3, "task": 0.15, "bench": 0.15, "cli": 0.25, "tools": 0.15}


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
