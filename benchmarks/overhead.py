"""Overhead of researchorg over running the same experiments bare.

    python benchmarks/overhead.py [--n 5] [--budget 30] [--task tinylm] [--quick]

Runs N experiments of the default org through `researchorg run` (the real
command: commit, guard, runner, ledger, tuner, results.tsv), then runs the very
same N commits bare (`python train.py` in a checkout of each commit, same
environment), in the same invocation, and prints:

    overhead_ratio:                   researchorg wall time / bare wall time
    overhead_seconds_per_experiment:  (researchorg - bare) / N
    outside_budget_fraction:          of each run's slot time, the part outside its training budget
                                      (harness start, sandbox, evaluation, exit), mean over the runs
    sandbox:                          the protections the runs had

The researchorg side includes everything a user waits for: interpreter start,
imports, the task's prepare check, and the final plot. Both sides run the
task's command as it is, the sandbox included (tinylm's harness puts train.py
in it). Targets at a 30 s budget: ratio <= 1.03, <= 0.5 s per experiment, and
outside_budget_fraction <= 0.10.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from researchorg import Program, Slot
from researchorg.world.git import Git
from researchorg.world.runner import run_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--budget", type=float, default=30)
    parser.add_argument("--task", default="tinylm")
    parser.add_argument("--quick", action="store_true", help="3 experiments of the simulated task (CI)")
    args = parser.parse_args()
    if args.quick:
        args.task, args.n, args.budget = "simulated", 3, 5
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "program"
        Program.init(root, args.task, budget=args.budget)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "researchorg", "run", str(root), "--max-experiments", str(args.n),
                        "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)
        with_lab = time.perf_counter() - started

        program = Program(root)
        experiments = program.ledger.experiments()
        env = run_environment(program.task, program.task.seed, Slot("cpu0", threads))
        bare = 0.0
        for e in experiments:
            checkout = Path(tmp) / f"bare-{e.id}"
            Git(root)("worktree", "add", "-q", "--detach", str(checkout), e.commit)
            started = time.perf_counter()
            subprocess.run(program.task.command.split(), cwd=checkout, env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bare += time.perf_counter() - started
    n = len(experiments)
    print(f"task: {args.task}")
    print(f"budget_seconds: {args.budget:g}")
    print(f"experiments: {n}")
    print(f"researchorg_seconds: {with_lab:.2f}")
    print(f"bare_seconds: {bare:.2f}")
    print(f"overhead_ratio: {with_lab / bare:.4f}")
    print(f"overhead_seconds_per_experiment: {(with_lab - bare) / n:.3f}")
    slot = [e.summary["slot_seconds"] for e in experiments if e.summary.get("slot_seconds")]
    outside = [max(0.0, s - args.budget) / s for s in slot]
    print(f"outside_budget_fraction: {sum(outside) / len(outside):.4f}" if outside else "outside_budget_fraction: -")
    print(f"sandbox: {experiments[0].summary.get('sandbox', 'none recorded') if experiments else '-'}")


if __name__ == "__main__":
    main()
