"""An audit of anyone's autoresearch run: which of its keeps are likely real, and what it likely gained.

Each row of a results.tsv is one seed, kept when it beat the best so far. A
keep's claimed gain is its value's improvement on the best so far: the true
gain of its change plus the noise of two single runs (the new one and the
best so far), so noise of `sigma` per run adds noise of `sqrt(2) sigma` to
the claim. The calibrated landscape's law of effects (harness/landscape.py,
`CALIBRATED`: most ideas gain a little or lose, few gain much), as fitted at
the seed noise nearest the run's (`calibrated_at`), is the prior on a
change's true gain, in the metric's units relative to the baseline.
Bayes' rule on a grid then gives, per keep, the chance that its true gain is
above zero and its expected true gain (the claim, shrunk toward what ideas
usually gain). The run's likely true improvement is the sum of the expected
gains of its keeps that beat the best so far (a keep by another rule, one
that did not, adds nothing), with a 90% interval from their spreads (taken as
independent). The keeps to re-run first are those whose claims most likely
rest on noise, weighted by what they claim.

The seed noise is given (`sigma`, in the metric's units, or relative to the
baseline with `%`) or estimated from code the run measured more than once
(rows of one commit: their pooled standard deviation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from researchorg.errors import ConfigError
from researchorg.harness.landscape import CALIBRATED_OTHER, calibrated_at
from researchorg.stats.acceptance import pooled_sigma
from researchorg.stats.traces import KEEP, Trace

GRID = 4001  # points of the true gain's grid


@dataclass
class KeepAudit:
    row: int  # 1-based row of the file's data (the baseline is row 1)
    description: str
    claimed: float  # its improvement on the best so far, in the metric's units (positive: better)
    p_real: float  # the chance its true gain is above zero
    expected: float  # its expected true gain (shrunk), in the metric's units


@dataclass
class Audit:
    name: str
    sigma: float  # seed noise per run, in the metric's units
    sigma_source: str
    baseline: float
    claimed_total: float  # baseline to best kept value, in the metric's units (positive: better)
    likely_total: float
    likely_interval: tuple[float, float]  # 90%
    keeps: list[KeepAudit] = field(default_factory=list)
    rerun_first: list[int] = field(default_factory=list)  # rows

    def to_dict(self) -> dict:
        return asdict(self)


def parse_sigma(text: str, baseline: float) -> float:
    """A seed noise: `0.0003` in the metric's units, or `0.03%` of the baseline's value."""
    try:
        value = float(text[:-1]) / 100 * abs(baseline) if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--sigma {text!r}: give a number (the metric's units) or a percentage such as 0.03%") \
            from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--sigma {text!r}: the seed noise must be a positive finite number"
                          + (" (a percentage of a baseline of 0)" if text.endswith("%") and not baseline else ""))
    return value


def estimated_sigma(trace: Trace) -> float | None:
    """The pooled standard deviation of the values of code measured more than once (rows of one commit); None
    where no code was."""
    groups: dict[str, list[float]] = {}
    for row in trace.rows:
        if row.commit and row.value is not None and row.commit.lower() not in ("baseline", "-", "none"):
            groups.setdefault(row.commit, []).append(row.value)
    pooled = pooled_sigma(list(groups.values()))
    return pooled if pooled else None


def _prior(grid: np.ndarray, params: dict) -> np.ndarray:
    """The calibrated law of a change's true gain on `grid` (relative gains), over the landscapes' units (their
    spread), as weights that sum to 1."""
    p_win, mean, shape, harm = (float(params[k]) for k in ("p_win", "win_mean", "win_shape", "harm_mean"))
    spread = float(params.get("scale_spread", 0.0))
    units = np.exp(spread * stats.norm.ppf((np.arange(9) + 0.5) / 9)) if spread else np.ones(1)
    density = np.zeros_like(grid)
    for unit in units:
        density += np.where(grid > 0, p_win * stats.gamma.pdf(grid, shape, scale=unit * mean / shape),
                            (1 - p_win) * stats.expon.pdf(-grid, scale=unit * harm))
    return density / density.sum()


def audit(trace: Trace, sigma: float, sigma_source: str, *, other_task: bool = False) -> Audit:
    """The audit of `trace` with seed noise `sigma` per run (the metric's units)."""
    base = trace.rows[0].value
    if base is None or base == 0:
        raise ConfigError("its baseline has no usable value (empty, or 0)")
    scale = abs(base)  # the prior is relative to the metric; claims are in its units
    if not 0 < sigma <= scale:
        raise ConfigError(f"a seed noise of {sigma:g} is not below the baseline's value {base:g}: give the noise "
                          f"of one run in the metric's units, or as a percentage such as 0.03%")
    params = CALIBRATED_OTHER if other_task else calibrated_at(sigma / scale)  # the law fitted at this noise
    noise = math.sqrt(2) * sigma / scale
    reach = max(30 * float(params["win_mean"]), 12 * noise, 10 * float(params["harm_mean"]))
    grid = np.linspace(-reach, reach, GRID)
    prior = _prior(grid, params)
    best, keeps, variance = base, [], 0.0
    for index, row in enumerate(trace.rows[1:], start=2):
        if row.status != KEEP or row.value is None:
            continue
        claimed = (row.value - best) if trace.higher else (best - row.value)
        p_real, mean, spread = _posterior(claimed / scale, prior, grid, noise)
        keeps.append(KeepAudit(index, row.description, claimed, p_real, mean * scale))
        if claimed > 0:  # a keep that did not beat the best (another rule) adds nothing to the total
            best = row.value
            variance += spread * scale * scale
    claimed_total = max(0.0, (best - base) if trace.higher else (base - best))
    moved = [k for k in keeps if k.claimed > 0]
    likely = sum(k.expected for k in moved)
    spread = math.sqrt(variance)
    z = stats.norm.ppf(0.95)
    rerun = sorted(moved, key=lambda k: -(1 - k.p_real) * k.claimed)[:3]
    return Audit(trace.name, sigma, sigma_source, base, claimed_total, likely, (likely - z * spread,
                 likely + z * spread), keeps, [k.row for k in rerun])


def _posterior(claimed: float, prior: np.ndarray, grid: np.ndarray, noise: float) -> tuple[float, float, float]:
    """(the chance the true gain is above zero, its mean, its variance) given a relative claim; a claim far past
    anything the prior allows is taken as it is."""
    posterior = prior * stats.norm.pdf((claimed - grid) / noise)
    total = posterior.sum()
    if total <= 0 or not math.isfinite(total):
        return (1.0 if claimed > 0 else 0.0), claimed, 0.0
    posterior /= total
    mean = float((posterior * grid).sum())
    return float(posterior[grid > 0].sum()), mean, float((posterior * (grid - mean) ** 2).sum())
