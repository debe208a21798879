"""The noise floor: how much one run's metric moves when only the seed changes.

At the start of a program, and whenever a run uses a hardware class with no
estimate yet, the baseline runs K times with different seeds (org.toml
`[rigor] noise_runs`, default 5). The estimate (mean, sample sigma and a 95%
interval for sigma) goes to the ledger, the status display and every
noise-aware decision.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats


@dataclass
class NoiseEstimate:
    mean: float
    sigma: float  # sample standard deviation of one run
    sigma_low: float  # 95% interval of sigma
    sigma_high: float
    runs: int

    def describe(self, name: str) -> str:
        return (f"noise floor: {name} {self.mean:.4f} ± {self.sigma:.4f} (1 sigma of one run, "
                f"95% CI {self.sigma_low:.4f}–{self.sigma_high:.4f}, {self.runs} seeds)")


SPREADS = (("startup_seconds", "start-up", " s"), ("training_seconds", "training", " s"), ("steps", "steps", ""))


def spreads(summaries: list[dict]) -> str:
    """How the noise floor's runs spread apart from the metric, where all of them say: start-up (not in the
    budget), training time, steps ("start-up 4.6 ± 0.4 s, training 30.1 ± 0.0 s, steps 612 ± 25")."""
    parts = []
    for key, label, unit in SPREADS:
        values = [s.get(key) for s in summaries]
        if len(values) >= 2 and all(isinstance(v, int | float) for v in values):
            digits = 1 if unit else 0
            parts.append(f"{label} {statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}{unit}")
    return ", ".join(parts)


def estimate(values: list[float]) -> NoiseEstimate:
    """Mean and sample sigma of K runs, with a chi-square interval for sigma (K >= 2)."""
    if len(values) < 2:
        raise ValueError("a noise floor needs at least two runs")
    dof = len(values) - 1
    sigma = statistics.stdev(values)
    low, high = stats.chi2.ppf(0.975, dof), stats.chi2.ppf(0.025, dof)
    return NoiseEstimate(statistics.fmean(values), sigma, sigma * math.sqrt(dof / low),
                      sigma * math.sqrt(dof / high), len(values))


def fresh_seed(task_seed: int, used: set[int]) -> int:
    """The seed of an extra run (noise floor, re-run, verification, ablation): the lowest one this code never
    ran with, never the task seed, which belongs to a proposal's first run. Both worlds choose seeds
    here (through the one engine), so they run the same seeds."""
    seed = task_seed + 1
    while seed in used:
        seed += 1
    return seed
