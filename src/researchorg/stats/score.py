"""What a version of the code scores, and which of two values is better: one function each, used everywhere.

A code (a git tree, or a set of ideas in simulation) is measured by its
successful runs. Its value is the mean of its unselected runs when it has any:
a code was kept because its runs came out well, so those runs overstate it
(the winner's curse), while runs that no keep decision chose (the noise floor,
fresh runs of an incumbent, verifications, ablations) measure it without that
bias. Only a code that has none is measured by all its runs.

The metric's direction lives here too: `gain` is how much a value beats
another in the metric's good direction, whatever that direction is.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from researchorg.stats.load import at_load, lightest
from researchorg.task.spec import MetricSpec

UNSELECTED_KINDS = frozenset({"noise", "incumbent", "verify", "ablation"})  # runs no keep decision chose


def code_sample(runs: Iterable[tuple[str, float]]) -> list[float]:
    """The metrics that measure a code, from its (kind, metric) runs: the unselected ones if it has any, else all."""
    runs = list(runs)
    unselected = [metric for kind, metric in runs if kind in UNSELECTED_KINDS]
    return unselected or [metric for _, metric in runs]


def code_value(runs: Iterable[tuple[str, float]]) -> float | None:
    """A code's value: the mean of `code_sample`; None if it never ran successfully."""
    sample = code_sample(runs)
    return statistics.fmean(sample) if sample else None


def measuring(runs: Iterable[Any], load_tolerance: float | None = None) -> list[tuple[str, float]]:
    """The (kind, metric) of the runs that measure a code, as every decision and report reads them: all of its
    runs; or, where decisions match machine load (`load_tolerance` set), those at its lightest load."""
    runs = list(runs)
    if load_tolerance is not None:
        runs = at_load(runs, lightest(runs), load_tolerance)
    return [(e.kind, e.metric) for e in runs]


def gain(metric: MetricSpec, candidate: float, incumbent: float) -> float:
    """How much `candidate` is better than `incumbent` (positive: better), whatever the metric's direction."""
    return incumbent - candidate if metric.direction == "minimize" else candidate - incumbent


def better(metric: MetricSpec, a: float, b: float) -> bool:
    """Whether value `a` is strictly better than `b`."""
    return gain(metric, a, b) > 0


def best(metric: MetricSpec, values: Iterable[float]) -> float:
    """The best of some values in the metric's direction."""
    return min(values) if metric.direction == "minimize" else max(values)
