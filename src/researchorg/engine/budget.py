"""What a run may spend and what it reports: limits, the experiment budget, the run's report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from researchorg.errors import ConfigError


@dataclass
class Limits:
    # the compute recorded in the program, in full-budget runs: a run on a fraction of the task's budget (a
    # screening run) counts that fraction; interrupted ones are not counted
    max_experiments: int | None = None
    max_hours: float | None = None  # time of this invocation (virtual hours in simulation)

    def __post_init__(self) -> None:
        if self.max_experiments is not None and self.max_experiments < 0:
            raise ConfigError(f"max_experiments must not be negative (got {self.max_experiments})")
        if self.max_hours is not None and not (math.isfinite(self.max_hours) and self.max_hours > 0):
            raise ConfigError(f"max_hours must be a positive number (got {self.max_hours})")


@dataclass
class RunReport:
    ran: int = 0  # how many experiments this invocation recorded (a count: a run of days holds nothing per run)
    stopped_by: str = "agents_done"  # agents_done | max_experiments | max_hours | interrupted
    paused: dict[str, str] = field(default_factory=dict)  # agent -> why it was paused
    slot_seconds: float = 0.0  # slot time spent running experiments
    wall_seconds: float = 0.0  # time from start to end (virtual seconds in simulation)
    slots: int = 1
    signal: int = 0  # the signal that interrupted it (SIGINT for Ctrl-C), 0 if none

    @property
    def utilization(self) -> float:
        span = self.wall_seconds * self.slots
        return self.slot_seconds / span if span > 0 else 0.0


class Budget:
    """How many more experiments may start. Each costs the fraction of the task's budget it trains for (1 for a
    full run), so that a limit of N experiments is N full runs' worth of compute, however it is spent."""

    def __init__(self, limits: Limits, recorded: float, now: Callable[[], float]):
        self.limits, self.recorded, self.in_flight, self.now = limits, recorded, 0.0, now
        self.deadline = now() + limits.max_hours * 3600 if limits.max_hours else None
        self.exhausted_by: str | None = None

    def available(self) -> bool:
        """Whether an experiment could start now (without reserving it); if not, which limit says so."""
        if self.limits.max_experiments is not None and \
                self.recorded + self.in_flight >= self.limits.max_experiments - _SLACK:
            self.exhausted_by = "max_experiments"
        elif self.deadline is not None and self.now() >= self.deadline:
            self.exhausted_by = "max_hours"
        else:
            return True
        return False

    def left(self) -> float | None:
        """How many more full runs the experiment limit allows (None: no such limit)."""
        if self.limits.max_experiments is None:
            return None
        return max(self.limits.max_experiments - self.recorded - self.in_flight, 0.0)

    def nearly_spent(self, runs: float, run_seconds: float | None, slots: int) -> bool:
        """Whether at most `runs` more experiments fit: by the experiment limit, or by the time limit at
        `run_seconds` a run on `slots` slots (with a run's time to spare: one in flight ends first)."""
        left = self.left()
        if left is not None and left <= runs:
            return True
        if self.deadline is not None and run_seconds:
            return self.deadline - self.now() <= run_seconds * (1 + math.ceil(runs / max(slots, 1)))
        return False

    def reserve(self, cost: float = 1.0) -> bool:
        """Hold `cost` (a run's fidelity) of the budget for a run about to start; False if it does not fit."""
        if not self.available():
            return False
        left = self.left()
        if left is not None and left < cost - _SLACK:
            self.exhausted_by = "max_experiments"
            return False
        self.in_flight += cost
        return True

    def settle(self, counted: bool, cost: float = 1.0) -> None:
        """A held run ended: it counts if it was recorded (not interrupted, not withdrawn)."""
        self.in_flight -= cost
        self.recorded += cost if counted else 0.0


_SLACK = 1e-9  # fractions of runs add up with rounding: a budget spent to within this is spent
