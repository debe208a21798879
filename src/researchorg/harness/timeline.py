"""A guest's phases as the harness keeps them: start-up, training, hand-off, each with its own deadline.

The guest's clock (harness/clock.py) marks when training starts (the first
optimizer step has finished) and when the hand-off begins and ends; the
harness stamps each mark on its own clock and kills the guest at the deadline
of the phase it is in:

- start-up: `startup` seconds (its allowance: sandbox, imports, data, the
  model, the first step and its compilation). A guest that never marks the
  start of training gets its allowance and the budget as one;
- training: the `budget`, from the mark, then the step in flight: a little
  slack, and as long as the longest step the harness saw (the time between
  two marks of step ends on its own clock), at most a quarter of the budget.
  A guest that makes one step long to earn the time loses as much training.
  A start-up that overran its allowance is paid from the budget;
- hand-off: `handoff` seconds from its first mark (export, save);
- after the hand-off, a few seconds to print and exit: the model is in hand.

A stall of the harness itself (its loop did not run for seconds: the
machine's other work, memory reclaim) moves the deadline of the phase it
fell in by as much (`stalled`): what kept the harness from running kept the
guest too, and a run that stopped when its budget was spent is not killed
for time the machine took from it.

None of it runs in the guest, so nothing the guest does moves a deadline but
its marks: a phase's mark only ends that phase sooner, and step marks move
the training deadline by at most a quarter of the budget.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_SECONDS = 10.0  # after the hand-off: to print a summary and exit


def slack(budget: float) -> float:
    """Seconds past the training budget before the guest is killed, whatever its steps: to end the step in
    flight and stop, not to train."""
    return 2.0 + 0.05 * budget


STEP_SHARE = 0.25  # the most a long step adds to the training deadline, as a share of the budget


@dataclass(frozen=True)
class Allowances:
    """Seconds of a run's phases: `budget` of training; `startup` before it; `handoff` after it."""
    budget: float
    startup: float = 60.0
    handoff: float = 30.0

    @classmethod
    def from_environment(cls, budget: float) -> Allowances:
        """The allowances the runner set for this run (RESEARCHORG_STARTUP_ALLOWANCE, _HANDOFF_ALLOWANCE)."""
        def seconds(name: str, default: float) -> float:
            try:
                value = float(os.environ.get(name, default))
            except ValueError:
                return default
            return value if value > 0 else default
        return cls(budget, seconds("RESEARCHORG_STARTUP_ALLOWANCE", cls.startup),
                   seconds("RESEARCHORG_HANDOFF_ALLOWANCE", cls.handoff))


class Timeline:
    """The phases of one guest, from its start (`started`, monotonic seconds)."""

    def __init__(self, started: float, allowances: Allowances, artifact: Path, handed: Path):
        self.started, self.allowances = started, allowances
        self.artifact, self.handed = artifact, handed
        self.phase = "start-up"
        self.training_at: float | None = None
        self.handing_at: float | None = None
        self.handed_at: float | None = None
        self.ended_at: float | None = None
        self.killed_in: str | None = None
        self.lost = 0.0  # seconds the harness itself stalled in the current phase (`stalled`)
        self.last_step_at: float | None = None  # the last step's end, on our clock
        self.longest_step = 0.0  # the longest time between two step ends we saw

    def stalled(self, seconds: float) -> None:
        """The harness did not run for `seconds` (a busy machine): the current phase's deadline moves as much."""
        self.lost += max(0.0, seconds)

    def deadline(self) -> float:
        return self._deadline() + self.lost

    def _deadline(self) -> float:
        a = self.allowances
        as_one = self.started + a.startup + a.budget + slack(a.budget)
        if self.phase == "start-up":
            return as_one
        if self.phase == "training":
            if self.training_at - self.started > a.startup:
                return as_one
            return self.training_at + a.budget + self.grace()
        if self.phase == "handing over":
            return self.handing_at + a.handoff
        return self.handed_at + EXIT_SECONDS

    def grace(self) -> float:
        """Seconds past the budget for the step in flight: the slack, and the longest step seen (capped)."""
        budget = self.allowances.budget
        return slack(budget) + min(self.longest_step, STEP_SHARE * budget)

    def mark(self, event: dict[str, Any], now: float) -> None:
        """A mark of the guest's clock, stamped `now`; one that comes out of order is ignored."""
        kind = event.get("event")
        phase = self.phase
        if kind == "step" and self.phase == "training":
            self.longest_step = max(self.longest_step, now - (self.last_step_at or self.training_at))
            self.last_step_at = now
            return
        if kind == "training" and self.phase == "start-up":
            self.phase, self.training_at = "training", now
        elif kind == "handing over" and self.phase in ("start-up", "training"):
            self.phase, self.handing_at = "handing over", now
        elif kind == "handed over" and self.phase == "handing over":
            self.phase, self.handed_at = "handed over", now
            self._take(event.get("files"))
        if self.phase != phase:
            self.lost = 0.0  # a new phase, a new deadline: the stalls of the last one are paid

    def killed(self, now: float) -> None:
        self.killed_in, self.ended_at = self.phase, now

    def ended(self, now: float) -> None:
        if self.ended_at is None:
            self.ended_at = now

    def _take(self, files: Any) -> None:
        """Move the handed-over files out of the guest's reach: what it writes afterwards is not its model."""
        for name in files if isinstance(files, list) else []:
            if isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
                try:
                    os.rename(self.artifact / name, self.handed / name)
                except OSError:
                    continue

    def seconds(self) -> dict[str, float]:
        """startup_seconds, training_seconds, handoff_seconds: what each phase took (those it reached)."""
        end = self.ended_at or time.monotonic()
        found = {"startup_seconds": (self.training_at or self.handing_at or end) - self.started}
        if self.training_at is not None:
            found["training_seconds"] = (self.handing_at or end) - self.training_at
        if self.handing_at is not None:
            found["handoff_seconds"] = (self.handed_at or end) - self.handing_at
        return {key: round(value, 2) for key, value in found.items()}

    def overran(self) -> bool:
        """Whether the guest was killed for training past its budget (a start-up within its allowance, then
        training to the deadline): what a run that cheats on time does, unlike a slow start-up or hand-off."""
        return self.killed_in == "training" and self.training_at - self.started <= self.allowances.startup

    def why_killed(self) -> str | None:
        """Why the guest was killed, for the verdict; None if it was not, or only after its hand-off."""
        a = self.allowances
        if self.killed_in is None or self.killed_in == "handed over":
            return None
        if self.killed_in == "start-up":
            return (f"training never started: no optimizer step within its start-up allowance and budget "
                    f"({a.startup:g} + {a.budget:g} s)")
        if self.killed_in == "training":
            overran = self.training_at - self.started - a.startup
            if overran > 0:
                return (f"its start-up took {self.training_at - self.started:.1f} s, past its allowance of "
                        f"{a.startup:g} s, and the overrun was paid from its budget: raise startup_allowance")
            return (f"trained past the budget: killed {a.budget + self.grace():.1f} s after its first optimizer "
                    f"step (budget {a.budget:g} s of training, its longest step {self.longest_step:.1f} s)")
        return f"its hand-off (export and save) took longer than its allowance of {a.handoff:g} s"
