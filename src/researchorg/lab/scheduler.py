"""The scheduler: every experiment of every agent goes through one queue onto the compute slots.

A slot runs one experiment at a time. When a slot frees up it goes to the
waiting agent with the least slot time so far, divided by its role's priority
(weighted fair share); ties go to whoever asked first. Agents that are not
waiting are thinking, so with at least as many agents as slots no slot idles.

`detect_slots` makes one slot per visible GPU (pinned with CUDA_VISIBLE_DEVICES),
or on a CPU machine the requested number of CPU slots, each with its own cores
(affinity) and thread count.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

from researchorg.errors import ConfigError
from researchorg.lab.runner import Slot


@dataclass
class _Waiter:
    agent: str
    priority: float
    order: int
    hardware: str | None = None  # only a slot of this hardware class will do

    def fits(self, slot: Slot) -> bool:
        return self.hardware is None or slot.hardware() == self.hardware


class Scheduler:
    """Hands slots to agents; thread-safe."""

    def __init__(self, slots: list[Slot]):
        if not slots:
            raise ConfigError("the scheduler needs at least one compute slot")
        self.slots = list(slots)
        self._free = list(slots)
        self._waiting: list[_Waiter] = []
        self._used: dict[str, float] = {}  # slot-seconds per agent
        self._busy_seconds = 0.0
        self._order = itertools.count()
        self._cond = threading.Condition()

    def acquire(self, agent: str, priority: float = 1.0, cancel: threading.Event | None = None,
                hardware: str | None = None) -> Slot | None:
        """Block until a slot (of `hardware` class, if given) is this agent's turn; None if `cancel` is set first."""
        me = _Waiter(agent, max(priority, 1e-9), next(self._order), hardware)
        with self._cond:
            self._waiting.append(me)
            try:
                while self._next() is not me:
                    if cancel is not None and cancel.is_set():
                        return None
                    self._cond.wait(timeout=0.1)
                slot = next(s for s in self._free if me.fits(s))
                self._free.remove(slot)
                return slot
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()

    def release(self, slot: Slot, agent: str, seconds: float) -> None:
        with self._cond:
            self._used[agent] = self._used.get(agent, 0.0) + seconds
            self._busy_seconds += seconds
            self._free.append(slot)
            self._free.sort(key=self.slots.index)
            self._cond.notify_all()

    def used(self) -> dict[str, float]:
        with self._cond:
            return dict(self._used)

    @property
    def busy_seconds(self) -> float:
        """Slot-seconds spent running experiments so far."""
        with self._cond:
            return self._busy_seconds

    def _next(self) -> _Waiter | None:
        """Whose turn it is: of the waiters a free slot fits, the least used for its priority."""
        ready = [w for w in self._waiting if any(w.fits(s) for s in self._free)]
        return min(ready, key=lambda w: fair_share_key(self._used.get(w.agent, 0.0), w.priority, w.order),
                   default=None)


def fair_share_key(used_seconds: float, priority: float, order: int) -> tuple[float, int]:
    """Who gets a free slot first: the least slot time for its priority, then whoever asked first."""
    return used_seconds / priority, order


def detect_slots(count: int | None = None, threads: int | None = None) -> list[Slot]:
    """One slot per visible GPU; else `count` CPU slots (default 1) sharing the cores evenly."""
    gpus = _visible_gpus()
    if gpus and threads is None:
        chosen = gpus[:count] if count else gpus
        return [Slot(f"gpu{gpu}", gpu=gpu, gpu_name=name) for gpu, name in chosen]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    count = count or 1
    per_slot = threads or max(1, len(cores) // count)
    if count * per_slot > len(cores):
        raise ConfigError(f"{count} slots x {per_slot} threads need {count * per_slot} cores; "
                          f"this machine has {len(cores)}")
    return [Slot(f"cpu{i}", threads=per_slot, cores=tuple(cores[i * per_slot:(i + 1) * per_slot]))
            for i in range(count)]


def _visible_gpus() -> list[tuple[str, str]]:
    """(CUDA_VISIBLE_DEVICES value, name) of each GPU nvidia-smi lists, honouring CUDA_VISIBLE_DEVICES."""
    if shutil.which("nvidia-smi") is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = [tuple(part.strip() for part in line.split(",", 1)) for line in out.splitlines() if "," in line]
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed:
        gpus = [g for g in gpus if g[0] in allowed.split(",")]
    return gpus

