"""Soak: the lab for an hour, watched for leaks of memory, file descriptors and threads.

    python benchmarks/soak.py [--minutes 60] [--backend simulated|tuner] [--quick]

Four agents on two slots work on the simulated task through the real lab
(`researchorg run --max-hours`, a subprocess) while this script samples the
lab process every few seconds: resident memory, open file descriptors and
threads. It prints the growth between the first and the last ten minutes
(a sixth of the run in shorter ones; means over each window, so one busy
moment does not count).

The agents are the simulated task's own researchers (`simulated`), which keep
nothing per experiment: what grows is the lab's. `--backend tuner` runs
Optuna tuners instead, whose studies keep every trial (their model of the
search, a few KB each), so their figure is the lab's plus that.

    rss_growth_mb:    resident memory, MB (target about 0)
    fd_growth:        open file descriptors (target 0)
    threads_growth:   threads (target 0)
    experiments:      how many ran
    rss_mb_by_sixth:  mean resident memory in each sixth of the run (a leak climbs, warm-up levels off)
    rss_late_slope_mb_per_hour: the slope of resident memory over the run's second half (a leak's rate)

The quick mode (CI) runs two minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORG = """name = "soak"
[[roles]]
name = "researcher"
backend = "{backend}"
count = 4
[rigor]
noise_runs = 2
"""


def sample(pid: int) -> tuple[float, int, int] | None:
    """(resident MB, open fds, threads) of process `pid`, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # exited, not yet reaped: a zombie has no memory lines
        return None
    return int(fields["VmRSS"].split()[0]) / 1024, fds, int(fields["Threads"])


def soak(minutes: float, work: Path, backend: str = "simulated") -> dict[str, float]:
    (work / "org.toml").write_text(ORG.format(backend=backend))
    root = work / "program"
    subprocess.run([sys.executable, "-m", "researchorg", "init", str(root), "--task", "simulated", "--org",
                    str(work / "org.toml")], check=True, stdout=subprocess.DEVNULL)
    lab = subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(root), "--slots", "2",
                            "--max-hours", f"{minutes / 60:.6f}"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    samples: list[tuple[float, tuple[float, int, int]]] = []
    started = time.monotonic()
    every = max(1.0, minutes * 60 / 400)
    while lab.poll() is None:
        taken = sample(lab.pid)
        if taken is not None:
            samples.append((time.monotonic() - started, taken))
        time.sleep(every)
    lab.wait()
    span = samples[-1][0] if samples else 0.0
    window = min(600.0, span / 6)
    first = [s for t, s in samples if t <= window + every]
    last = [s for t, s in samples if t >= span - window]

    def growth(i: int) -> float:
        return statistics.mean(s[i] for s in last) - statistics.mean(s[i] for s in first)

    from researchorg import Program
    experiments = Program(root).ledger.count()
    marks = [statistics.mean(s[0] for t, s in samples if k * window <= t < (k + 1) * window) for k in range(6)
             if any(k * window <= t < (k + 1) * window for t, _ in samples)]
    late = [(t, s[0]) for t, s in samples if t >= span / 2]
    slope = statistics.linear_regression([t for t, _ in late], [m for _, m in late]).slope * 3600 \
        if len(late) >= 2 and len({t for t, _ in late}) > 1 else 0.0
    return {"rss_growth_mb": growth(0), "fd_growth": growth(1), "threads_growth": growth(2), "late_slope": slope,
            "experiments": experiments, "returncode": lab.returncode, "rss_by_sixth": marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--backend", choices=["simulated", "tuner"], default="simulated",
                        help="the four agents: the simulated task's researchers, or Optuna tuners")
    parser.add_argument("--quick", action="store_true", help="two minutes (CI)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="researchorg-soak-") as tmp:
        figures = soak(2 if args.quick else args.minutes, Path(tmp), args.backend)
    if figures["returncode"] != 0:
        print(f"the lab exited with {figures['returncode']}")
    print(f"rss_growth_mb:    {figures['rss_growth_mb']:.1f}")
    print(f"fd_growth:        {figures['fd_growth']:.1f}")
    print(f"threads_growth:   {figures['threads_growth']:.1f}")
    print(f"experiments:      {figures['experiments']}")
    print(f"rss_mb_by_sixth:  {' '.join(f'{m:.1f}' for m in figures['rss_by_sixth'])}")
    print(f"rss_late_slope_mb_per_hour: {figures['late_slope']:.2f}")


if __name__ == "__main__":
    main()
