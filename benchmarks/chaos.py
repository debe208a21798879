"""Chaos: kill -9 the lab at random moments, restart it each time, and check that nothing is lost.

    python benchmarks/chaos.py [--kills 50] [--seed 0] [--quick]

A program of several agents (two tuners and a coding-CLI agent, the stand-in
`claude` of tests/fakes on PATH) works on the simulated task through the real
lab (`researchorg run`, a subprocess). At a random moment the lab is killed
with SIGKILL, and sometimes a training process or the agent's CLI first; then
it is started again, and so on. A last run ends normally. Then the program is
checked against itself:

- every experiment is recorded once, and none is left `running`;
- every experiment has its `refs/experiments/<id>` at its commit, and every
  such ref has its row;
- each agent's branch is where the ledger says, and main is at its last
  merge, with every merge's commit on main;
- results.tsv has a row per experiment, with the ledger's status;
- a restart is never held up (a stale lock would show as a slow restart).

Prints `chaos_kills:`, `lost:`, `duplicated:`, `inconsistent:` (targets 0) and
`restart_seconds_max:` (the longest a restarted lab took to start its first
experiment), with what was found above them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_BIN = ROOT / "tests" / "fakes" / "bin"
ORG = """name = "chaos"
[[roles]]
name = "tuner"
backend = "tuner"
count = 2
[[roles]]
name = "coder"
backend = "claude-code"
sandbox_paths = ["{plans}"]
[rigor]
noise_runs = 2
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
runs = 2
"""


def plan(steps: int, seed: int) -> list[dict]:
    """The stand-in CLI's answers: each call switches one idea on (a no-op where it is on already)."""
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        idea = f"IDEA_{rng.randrange(40):02d}"
        out.append({"edits": [{"path": "ideas.py", "old": f"{idea} = 0", "new": f"{idea} = 1"}],
                    "text": f"DESCRIPTION: switch {idea} on"})
    return out


def _processes_under(path: Path) -> list[tuple[int, str]]:
    """(pid, command) of processes whose working directory is under `path` (the lab's runs and agents)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(path)) and int(entry.name) != os.getpid():
            found.append((int(entry.name), cmd))
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _count(root: Path) -> tuple[int, int]:
    """(experiments, running) in the ledger, read with the standard library while the lab may be writing."""
    import sqlite3
    try:
        with sqlite3.connect(f"file:{root / '.researchorg' / 'ledger.db'}?mode=ro", uri=True, timeout=5) as db:
            total = db.execute("select count(*) from experiments").fetchone()[0]
            running = db.execute("select count(*) from experiments where status = 'running'").fetchone()[0]
            return total, running
    except sqlite3.Error:
        return 0, 0


def chaos(kills: int, seed: int, work: Path) -> dict[str, float]:
    rng = random.Random(seed)
    plans = work / "cli"  # the stand-in CLI's plan, in a directory its sandbox may write
    plans.mkdir()
    env = {**os.environ, "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}",
           "FAKE_CLI_PLAN": str(plans / "plan.json"), "PYTHONUNBUFFERED": "1"}
    (plans / "plan.json").write_text(json.dumps(plan(10_000, seed)))
    (work / "org.toml").write_text(ORG.replace("{plans}", str(plans)))
    root = work / "program"
    subprocess.run([sys.executable, "-m", "researchorg", "init", str(root), "--task", "simulated", "--org",
                    str(work / "org.toml")], check=True, env=env, stdout=subprocess.DEVNULL)
    restart_max, done = 0.0, 0
    for _ in range(kills):
        before, _ = _count(root)
        started = time.monotonic()
        lab = subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(root), "--slots", "2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.monotonic() - started < 60:  # until the restarted lab runs something new
            total, running = _count(root)
            if running or total > before:
                break
            time.sleep(0.02)
        restart_max = max(restart_max, time.monotonic() - started)
        time.sleep(rng.uniform(0.0, 5.0))
        victims = [p for p in _processes_under(root) if p[0] != lab.pid]
        if victims and rng.random() < 0.3:  # a training process, or the agent's CLI, goes first
            _kill(rng.choice(victims)[0])
            time.sleep(rng.uniform(0.0, 0.5))
        lab.send_signal(signal.SIGKILL)
        lab.wait()
        done += 1
    final = subprocess.run([sys.executable, "-m", "researchorg", "run", str(root), "--slots", "2",
                            "--max-experiments", "12"], env=env, capture_output=True, text=True, timeout=600)
    if final.returncode != 0:
        print(f"the last run failed ({final.returncode}):\n{final.stdout[-2000:]}\n{final.stderr[-2000:]}")
    return {"chaos_kills": done, "restart_seconds_max": restart_max, **check(root)}


def check(root: Path) -> dict[str, int]:
    from researchorg import Program
    from researchorg.world.git import Git
    program = Program(root)
    ledger = program.ledger
    experiments = ledger.experiments()
    problems: list[str] = []
    lost = [e.id for e in experiments if e.status == "running"]
    problems += [f"experiment #{i} left running" for i in lost]
    git = Git(root)
    refs = {}
    for line in git("for-each-ref", "--format=%(refname) %(objectname)", "refs/experiments").splitlines():
        name, commit = line.split()
        refs[int(name.rsplit("/", 1)[1])] = commit
    rows = {e.id: e for e in experiments}
    orphans = sorted(set(refs) - set(rows))
    lost += orphans
    problems += [f"refs/experiments/{i} has no row" for i in orphans]
    inconsistent = 0
    for e in experiments:
        if e.id not in refs:
            inconsistent += 1
            problems.append(f"#{e.id} ({e.status}) has no refs/experiments/{e.id}")
        elif refs[e.id] != e.commit:
            inconsistent += 1
            problems.append(f"refs/experiments/{e.id} is at {refs[e.id][:7]}, the row says {e.commit[:7]}")
    finished = Counter((e.commit, e.seed, e.kind) for e in experiments if e.status != "interrupted")
    duplicated = sum(n - 1 for n in finished.values() if n > 1)
    problems += [f"{key[0][:7]} seed {key[1]} ({key[2]}) recorded {n} times" for key, n in finished.items() if n > 1]
    for agent in ledger.agents():
        if agent.branch and git.head_of(agent.branch) != agent.head_commit:
            inconsistent += 1
            problems.append(f"branch {agent.branch} at {git.head_of(agent.branch)[:7]}, the ledger says "
                            f"{agent.head_commit[:7]}")
    merges = ledger.merges()
    main = git.head_of("main")
    if merges and merges[-1].after != main:
        inconsistent += 1
        problems.append(f"main at {main[:7]}, its last merge left it at {merges[-1].after[:7]}")
    for m in merges:
        if subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", m.after, main]).returncode != 0:
            inconsistent += 1
            problems.append(f"merge of #{m.experiment_id} ({m.after[:7]}) is not on main")
    with open(program.results_path, newline="") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    if len(table) != len(experiments):
        inconsistent += 1
        problems.append(f"results.tsv has {len(table)} rows for {len(experiments)} experiments")
    for problem in problems[:15]:
        print(f"FOUND {problem}")
    print(f"experiments:          {len(experiments)} ({len(merges)} merges, "
          f"{sum(e.status == 'interrupted' for e in experiments)} interrupted)")
    return {"lost": len(lost), "duplicated": duplicated, "inconsistent": inconsistent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5 kills (CI)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="researchorg-chaos-") as tmp:
        figures = chaos(5 if args.quick else args.kills, args.seed, Path(tmp))
    for name in ("chaos_kills", "lost", "duplicated", "inconsistent"):
        print(f"{name + ':':<22}{figures[name]}")
    print(f"{'restart_seconds_max:':<22}{figures['restart_seconds_max']:.2f}")


if __name__ == "__main__":
    main()
