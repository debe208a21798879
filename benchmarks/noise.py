"""Seed noise of a task's baseline, and what machine load does to it: the same code run with K seeds.

    python benchmarks/noise.py [--task tinylm] [--seeds 5] [--budget 30] [--threads 2] [--load N] [--quick]

Prints one line per seed and `baseline_mean:`, `baseline_sigma:` (sample
standard deviation) and `steps_sigma:`. The README's noise figure comes from here.

With `--load N` the same seeds run again while N processes spin on the CPU
(other work on the machine, as another user's job or a second lab would do),
and it prints what the realistic landscape (harness/landscape.py) takes from
it: `loaded_steps_ratio:` (the throughput a loaded run keeps: `1 -
busy_slowdown`), `loaded_other_cpu_s:` (what the runner records of the load),
`metric_per_ln_steps:` (the metric's change per unit of ln(steps), from the
idle and loaded runs together: `throughput_slope`), the same in units of the
seed sigma, and `steps_cv:` (run-to-run spread of the idle steps: the
landscape's `slot_speed_spread`).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
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
    parser.add_argument("--load", type=int, default=0, help="run the seeds again beside N spinning processes")
    parser.add_argument("--quick", action="store_true", help="the simulated task, 3 seeds (CI)")
    args = parser.parse_args()
    if args.quick:
        args.task, args.seeds = "simulated", 3
        args.load = min(args.load, 1)
    with tempfile.TemporaryDirectory() as tmp:
        program = Program.init(Path(tmp) / "noise", args.task, budget=args.budget)
        idle = _seeds(program, args, Path(tmp), "idle")
        loaded = None
        if args.load:
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
            for spinner in spinners:
                spinner.start()
            try:
                loaded = _seeds(program, args, Path(tmp), "loaded")
            finally:
                for spinner in spinners:
                    spinner.kill()
    values, steps = idle["metric"], idle["steps"]
    sigma = statistics.stdev(values)
    print(f"task: {program.task.name}")
    print(f"budget_seconds: {program.task.budget_seconds:g}")
    print(f"seeds: {len(values)}")
    print(f"baseline_mean: {statistics.mean(values):.6f}")
    print(f"baseline_sigma: {sigma:.6f}")
    print(f"steps_mean: {statistics.mean(steps):.1f}")
    print(f"steps_sigma: {statistics.stdev(steps):.1f}")
    if statistics.mean(steps) > 0:
        print(f"steps_cv: {statistics.stdev(steps) / statistics.mean(steps):.4f}")
    print(f"idle_other_cpu_s: {statistics.mean(idle['other']):.1f}")
    if loaded is not None:
        print(f"load_processes: {args.load}")
        print(f"loaded_failed: {len(loaded['failed'])} of {args.seeds}")
        if len(loaded["metric"]) < 2:
            return
        print(f"loaded_mean: {statistics.mean(loaded['metric']):.6f}")
        print(f"loaded_other_cpu_s: {statistics.mean(loaded['other']):.1f}")
        if statistics.mean(steps) > 0 and min(loaded["steps"]) > 0:
            print(f"loaded_steps_ratio: {statistics.mean(loaded['steps']) / statistics.mean(steps):.3f}")
            x = [math.log(v) for v in steps + loaded["steps"]]
            y = values + loaded["metric"]
            slope = -statistics.linear_regression(x, y).slope  # the metric lost per unit of ln(1 / steps)
            print(f"metric_per_ln_steps: {slope:.4f}")
            print(f"metric_per_ln_steps_in_sigmas: {slope / sigma:.2f}")


def _spin() -> None:
    while True:
        pass


def _seeds(program: Program, args: argparse.Namespace, tmp: Path, label: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"metric": [], "steps": [], "other": [], "failed": []}
    for seed in range(1, args.seeds + 1):
        result = run_command(program.task, program.root, tmp / f"{label}{seed}.log", seed=seed,
                             slot=Slot("cpu0", args.threads))
        if result.status != "ok" and label == "loaded":  # load can push a run past its budget: counted, not fatal
            out["failed"].append(seed)
            print(f"{label} seed {seed}: {result.status}: {result.reason}", flush=True)
            continue
        if result.status != "ok":
            raise SystemExit(f"seed {seed} ({label}): {result.status}: {result.reason}")
        out["metric"].append(result.metric)
        out["steps"].append(float(result.summary.get("steps", 0.0)))
        out["other"].append(float(result.summary.get("other_cpu_s", 0.0)))
        print(f"{label} seed {seed}: {program.task.metric.name} {result.metric:.6f}  steps {out['steps'][-1]:.0f}"
              f"  other_cpu_s {out['other'][-1]:.1f}", flush=True)
    return out


if __name__ == "__main__":
    main()
