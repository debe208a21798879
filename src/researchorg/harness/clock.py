"""The training clock: the budget counts training, as autoresearch means it, not start-up nor the hand-off.

Inside a watched guest (harness/guest.py) the clock starts when the first
optimizer step finishes (a global post-step hook on torch's optimizers, or an
explicit `training_starts()`): the sandbox, the interpreter, imports, data,
the model's construction and the first step, where `torch.compile` compiles,
are start-up, bounded by an allowance of their own. Training then has the
budget, and each later step's end is marked too (the harness lets the step
in flight end past the budget, as long as the longest step it saw).
`time_left()` says how much is left and `progress()` which fraction is
spent. The hand-off (`handing_over()`, then `handed_over(files)`) marks
the end of training: exporting and saving the model is bounded by its own
allowance and never counts in the budget.

Each mark is a line on the report descriptor the harness reads
(harness/protected.py), which keeps the deadlines from outside: a guest's own
clock tells it when to stop, the harness's decides when it is killed. Run by
hand (no harness), the clock still starts at the first optimizer step and
the marks go nowhere.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_state: dict[str, Any] = {"fd": None, "started": None, "handing": False, "handed": False, "hooked": False}


def attach(fd: int) -> None:
    """Send the marks to the harness on `fd` (the guest's report descriptor)."""
    _state["fd"] = fd


STEP_LINE = b'{"event": "step"}'  # a step's end: the one mark written at every step, read by protected.py


def watch_optimizers() -> None:
    """Start the clock when the first step of any torch optimizer finishes, and mark the end of every later
    step, so that the harness knows how long a step takes (once; idempotent)."""
    if _state["hooked"]:
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook
    _state["hooked"] = True

    def stepped(optimizer: Any, args: Any, kwargs: Any) -> None:
        if _state["started"] is None:
            training_starts()
        elif not _state["handing"] and _state["fd"] is not None:
            try:
                os.write(_state["fd"], STEP_LINE + b"\n")
            except OSError:
                pass

    register_optimizer_step_post_hook(stepped)


def training_starts() -> None:
    """Start of training (once): the budget counts from here."""
    if _state["started"] is None:
        _state["started"] = time.monotonic()
        _mark({"event": "training"})


def time_left(budget: float) -> float:
    """Seconds of the `budget` left: all of it until training starts."""
    started = _state["started"]
    return budget if started is None else started + budget - time.monotonic()


def progress(budget: float) -> float:
    """The fraction of the `budget` spent, from 0 to 1."""
    return min(1.0, max(0.0, 1.0 - time_left(budget) / budget))


def handing_over() -> None:
    """Training has ended: the hand-off (export, save) begins."""
    if not _state["handing"]:
        _state["handing"] = True
        _mark({"event": "handing over"})


def handed_over(files: list[str]) -> None:
    """The model is saved in `files` of the artifact directory: the harness takes them at once."""
    if not _state["handed"]:
        _state["handed"] = True
        _mark({"event": "handed over", "files": files})


def _mark(event: dict[str, Any]) -> None:
    if _state["fd"] is not None:
        try:
            os.write(_state["fd"], (json.dumps(event) + "\n").encode())
        except OSError:
            pass
