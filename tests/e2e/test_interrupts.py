"""Ctrl-C at every stage of a tinylm program: nothing of the run is left running, and no temporary file stays.

The interrupt is the one Ctrl-C triggers (`Runtime.interrupt`, which the SIGINT handler calls), sent from a
watcher thread the moment the protected harness's training guest of a run of the stage's kind is alive.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.engine.runtime import Limits, Runtime
from researchorg.ledger import SqlLedger
from tests.conftest import SCRIPTS, set_line

pytest.importorskip("torch")

ORG = """name = "interrupts"
policy = "greedy"
[rigor]
noise_runs = 2
[[roles]]
name = "researcher"
backend = "scripted"
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
runs = 2
"""


def processes_of(root: Path) -> list[tuple[int, str]]:
    """Every live process working in the program's directory (its checkouts) or naming it on its command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == __import__("os").getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = Path(entry / "cwd").resolve()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.is_relative_to(root) or str(root) in cmdline):
            found.append((int(entry.name), cmdline))
    return found


def _guest_alive(root: Path) -> bool:
    return any("researchorg.harness.guest" in cmdline for _, cmdline in processes_of(root))


def _interrupt_when(runtime: Runtime, ledger_path: Path, kind: str, stop: threading.Event) -> None:
    """Interrupt `runtime` once a run of `kind` trains (its guest is alive)."""
    ledger = SqlLedger(ledger_path)
    root = ledger_path.parent.parent.resolve()
    while not stop.is_set():
        if any(e.kind == kind and e.pid for e in ledger.experiments(status="running")) and _guest_alive(root):
            time.sleep(0.5)  # let the training get going
            runtime.interrupt()
            return
        time.sleep(0.1)


def temp_entries() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(("tinylm-run-", "tmp"))}


@pytest.mark.benchmark
@pytest.mark.slow
def test_ctrl_c_at_each_stage_leaves_no_process_and_no_temp_dir(tmp_path):
    SCRIPTS["researcher"] = [("one layer", set_line("train.py", "N_LAYER", "1")),
                             ("one layer, small", lambda ctx: {"train.py": ctx.read("train.py").replace(
                                 "N_EMBD = 128", "N_EMBD = 64")})]
    org = tmp_path / "org.toml"
    org.write_text(ORG)
    program = Program.init(tmp_path / "lm", "tinylm", budget=8, org_file=org)
    root = program.root.resolve()
    before = temp_entries()
    interrupted = []
    for kind in ("noise", "proposal", "verify"):
        runtime = Runtime(Program(root))
        stop = threading.Event()
        watcher = threading.Thread(target=_interrupt_when, args=(runtime, program.state_dir / "ledger.db", kind,
                                                                 stop), daemon=True)
        watcher.start()
        report = runtime.run(Limits(max_experiments=12))
        stop.set()
        assert report.stopped_by == "interrupted", (kind, report)
        left = processes_of(root)
        assert not left, f"after Ctrl-C during a {kind} run these still run: {left}"
        scratch = program.state_dir / "tmp"
        assert not scratch.exists() or not any(scratch.iterdir()), f"{kind}: {list(scratch.iterdir())}"
        assert temp_entries() <= before, f"{kind}: left in /tmp: {temp_entries() - before}"
        interrupted += [e for e in Program(root).ledger.experiments(status="interrupted") if e.kind == kind]
        assert interrupted and interrupted[-1].kind == kind
    assert {e.kind for e in interrupted} == {"noise", "proposal", "verify"}
