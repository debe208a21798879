"""Seed noise of a task's baseline: the same code run with K seeds through the lab's runner.

    python benchmarks/noise.py [--task tinylm] [--seeds 5] [--budget 30] [--threads 2] [--quick]

Prints one line per seed and `baseline_mean:`, `baseline_sigma:` (sample
standard deviation) and `steps_sigma:`. The README's noise figure comes from here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from researchorg import Program, Slot
from researchorg.world.runner import run_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="tinylm")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the simulated task, 3 seeds (CI)")
    args = parser.parse_args()
    if args.quick:
        args.task, args.seeds = "simulated", 3
    with tempfile.TemporaryDirectory() as tmp:
        program = Program.init(Path(tmp) / "noise", args.task, budget=args.budget)
        values, steps = [], []
        for seed in range(1, args.seeds + 1):
            result = run_command(program.task, program.root, Path(tmp) / f"seed{seed}.log", seed=seed,
                                 slot=Slot("cpu0", args.threads))
            if result.status != "ok":
                raise SystemExit(f"seed {seed}: {result.status}: {result.reason}")
            values.append(result.metric)
            steps.append(result.summary.get("steps", 0.0))
            print(f"seed {seed}: {program.task.metric.name} {result.metric:.6f}  steps {steps[-1]:.0f}", flush=True)
    print(f"task: {program.task.name}")
    print(f"budget_seconds: {program.task.budget_seconds:g}")
    print(f"seeds: {len(values)}")
    print(f"baseline_mean: {statistics.mean(values):.6f}")
    print(f"baseline_sigma: {statistics.stdev(values):.6f}")
    print(f"steps_mean: {statistics.mean(steps):.1f}")
    print(f"steps_sigma: {statistics.stdev(steps):.1f}")


if __name__ == "__main__":
    main()
