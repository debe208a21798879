"""Machine load as a confound: which runs were measured under the same conditions.

On a fixed wall-clock budget, other work on the machine costs a run its steps:
on tinylm one busy core took 20% of a 1-thread run's steps and 98% of a
2-thread run's (`python benchmarks/noise.py --load 1`), a shift of 1 to 23
seed sigmas. The runner records `other_cpu_s` on every run: the CPU seconds
the rest of the machine spent during it. A run's load is that over its slot
time: how many other cores were busy. Policies that match load
(explore-gate) compare runs whose loads are within `rigor.load_tolerance`
cores of each other, at the lighter of the two sides' loads, and measure a
code by its runs at its lightest load.
"""

from __future__ import annotations

from typing import Any, Protocol


class _Run(Protocol):
    summary: dict[str, Any]


def load_of(summary: dict[str, Any]) -> float | None:
    """How many other cores the machine kept busy during a run (`other_cpu_s` over its slot time); None where
    the run does not say."""
    other, seconds = summary.get("other_cpu_s"), summary.get("slot_seconds")
    if not isinstance(other, int | float) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return float(other) / float(seconds)


def lightest(runs: list[Any]) -> float:
    """The lightest load any of these runs ran under (0 where none says)."""
    loads = [x for e in runs if (x := load_of(e.summary)) is not None]
    return min(loads) if loads else 0.0


def at_load(runs: list[Any], level: float, tolerance: float) -> list[Any]:
    """The runs made under about `level` load (within `tolerance` cores; a run that does not say counts)."""
    return [e for e in runs if (x := load_of(e.summary)) is None or abs(x - level) <= tolerance]
