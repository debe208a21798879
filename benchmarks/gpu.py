"""The GPU check: gpulm's noise floor and a short tuner program on every GPU of this machine.

    python benchmarks/gpu.py [--budget 300] [--noise-runs 3] [--tuner-runs 4] [--quick]

Through the real command line (`researchorg init --task gpulm`, then `researchorg run`): prepare.py writes
the shards and trains the tokenizer (cached in ~/.cache/researchorg/gpulm), one slot per GPU, the noise
floor's runs of the baseline, then tuner proposals judged against it. Prints, from the ledger and, on a GPU,
from `nvidia-smi` sampled every second while the program runs:

    experiments_per_hour_per_gpu:     finished runs per hour of the program's compute phase (first run's start
                                      to last run's end), per slot; autoresearch's limit is 12 at 5 minutes
                                      (its GPU idles while the agent thinks)
    training_seconds_per_experiment:  the training process's wall time (start to exit: its imports, compile
                                      and hand-off included), as the harness measured it
    overhead_seconds_per_experiment:  slot time per run beyond that (the harness's start, the evaluation,
                                      the lab's git and ledger work, waiting for a proposal)
    slot_idle_fraction:               of the slots' time in the compute phase, the part no run held
    gpu_idle_fraction:                of the GPUs' time in the compute phase, the part nvidia-smi saw them at
                                      0% utilization (GPU machines only)
    noise_sigma:                      the noise floor's sigma of one run's val_bpb (and relative to its mean)

Without a GPU the task is in its tiny CPU configuration (a 12 s budget) and the figures are the CPU slot's;
the script says so. `--quick` runs 2 noise-floor runs and 1 tuner run per slot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from researchorg import Program
from researchorg.world.slots import visible_gpus

ORG = """name = "gpu-check"
[[roles]]
name = "tuner"
backend = "tuner"
count = {count}

[rigor]
noise_runs = {noise}
"""


class Utilization:
    """nvidia-smi's utilization.gpu of every GPU, sampled every second from a thread: (time, [percent])."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.samples.append((time.time(), [int(v) for v in out.split() if v.strip().isdigit()]))
            except (OSError, subprocess.TimeoutExpired):
                continue

    def idle_fraction(self, start: float, end: float) -> float | None:
        values = [v for at, per_gpu in self.samples if start <= at <= end for v in per_gpu]
        return sum(v == 0 for v in values) / len(values) if values else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "researchorg", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"researchorg {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=None,
                        help="training budget per run, seconds (default: the task's, 300 s on a GPU)")
    parser.add_argument("--noise-runs", type=int, default=3)
    parser.add_argument("--tuner-runs", type=int, default=4, help="tuner proposals per slot")
    parser.add_argument("--quick", action="store_true", help="2 noise-floor runs and 1 tuner run per slot")
    args = parser.parse_args()
    if args.quick:
        args.noise_runs, args.tuner_runs = 2, 1
    gpus = visible_gpus()
    slots = len(gpus) or 1
    print(f"gpus: {len(gpus)} ({', '.join(name for _, name in gpus)})" if gpus else
          "gpus: 0 (no GPU visible: gpulm's tiny CPU configuration on one CPU slot; the figures are the CPU's)")
    with tempfile.TemporaryDirectory(prefix="researchorg-gpu-") as tmp:
        org = Path(tmp) / "org.toml"
        org.write_text(ORG.format(count=slots, noise=args.noise_runs))
        lab = Path(tmp) / "lab"
        t0 = time.perf_counter()
        cli("init", str(lab), "--task", "gpulm", "--org", str(org),
            *(["--budget", f"{args.budget:g}"] if args.budget else []))
        print(f"prepare_seconds: {time.perf_counter() - t0:.1f}")
        sampler = Utilization() if gpus else None
        runs = args.noise_runs + args.tuner_runs * slots
        try:
            cli("run", str(lab), "--max-experiments", str(runs))
        finally:
            if sampler is not None:
                sampler.stop()
        program = Program(lab)
        budget = program.task.budget_seconds
        done = [e for e in program.ledger.experiments() if e.ended_at is not None]
        if not done:
            raise SystemExit("no run finished")
        start, end = min(e.started_at for e in done), max(e.ended_at for e in done)
        span = end - start
        held = sum(e.ended_at - e.started_at for e in done)
        statuses = {s: sum(e.status == s for e in done) for s in sorted({e.status for e in done})}
        print(f"budget_seconds: {budget:g}")
        print(f"runs: {len(done)} ({', '.join(f'{n} {s}' for s, n in statuses.items())})")
        print(f"experiments_per_hour_per_gpu: {len(done) / (span / 3600) / slots:.1f}")
        trained = [e.training_seconds for e in done if e.training_seconds]
        training = sum(trained) / len(trained) if trained else 0.0
        print(f"training_seconds_per_experiment: {training:.1f} (the training process, start to exit)")
        print(f"overhead_seconds_per_experiment: {slots * span / len(done) - training:.1f}")
        print(f"slot_idle_fraction: {max(0.0, 1 - held / (slots * span)):.3f}")
        if sampler is not None:
            idle = sampler.idle_fraction(start, end)
            print(f"gpu_idle_fraction: {idle:.3f}" if idle is not None else "gpu_idle_fraction: nan (no samples)")
        floor = program.ledger.noise_floor()
        if floor is not None:
            print(f"noise_sigma: {floor.sigma:.5f} (val_bpb, {100 * floor.sigma / floor.mean:.2f}% of the mean "
                  f"{floor.mean:.4f}, {len(floor.runs)} runs)")
        else:
            print("noise_sigma: nan (no noise floor: fewer than 2 of its runs succeeded)")
        scored = [e.metric for e in done if e.metric is not None]
        if scored:
            print(f"best_val_bpb: {min(scored):.4f}")
        peaks = [e.summary.get("peak_vram_mb") for e in done if e.summary.get("peak_vram_mb")]
        if peaks:
            print(f"peak_vram_mb: {max(peaks):.0f}")


if __name__ == "__main__":
    main()
