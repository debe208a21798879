"""The scheduler: every run of every agent, and of the lab itself, goes through one queue onto the slots.

A slot runs one experiment at a time. When a slot frees up it goes to the
waiting agent with the fewest runs on the slots so far, divided by its role's
priority (weighted fair share); ties go to whoever asked first. The lab's
own runs (the noise floor, of infinite priority) go before any. Runs, not
seconds: every experiment has the same training budget, so a run is the unit
of compute an agent takes, and a run that a loaded machine slowed down does
not push its agent back; the schedule is then the same in the real lab and
in virtual time. A request may name a
hardware class (a re-run must be measured where its candidate was). Agents
that are not waiting are thinking, so with at least as many agents as slots
no slot idles.

Slots may come and go while the org runs (a cluster's nodes join and leave):
a slot that joins is free at once; one that leaves takes no new run, and a
waiter for a hardware class no slot has any more gets None.

The queue is a heap whose keys may be stale (an agent's count only grows):
a waiter popped with a key that has grown goes back with the new one, so a
thousand waiters cost a logarithm each, not a scan. It runs inside the
engine's event loop: no locks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

from researchorg.errors import ConfigError


class Slot(Protocol):
    name: str

    def hardware(self) -> str: ...


@dataclass(order=True)
class _Waiter:
    key: tuple[bool, float, int]
    agent: str = field(compare=False)
    priority: float = field(compare=False)
    hardware: str | None = field(compare=False)
    future: asyncio.Future = field(compare=False)

    def fits(self, slot: Slot) -> bool:
        return self.hardware is None or slot.hardware() == self.hardware


def fair_share_key(used_runs: float, priority: float, order: int) -> tuple[bool, float, int]:
    """Who gets a free slot first: a request of infinite priority (the lab's noise floor, which every decision
    waits for), then the fewest runs for its priority, then whoever asked first."""
    return not math.isinf(priority), used_runs / priority, order


class Scheduler:
    def __init__(self, slots: list) -> None:
        if not slots:
            raise ConfigError("the scheduler needs at least one compute slot")
        self.slots = list(slots)
        self._free = list(range(len(slots)))  # a heap of free slots' indices: the first free slot goes first
        self._heap: list[_Waiter] = []
        self._used: dict[str, float] = {}  # runs per agent
        self.busy_seconds = 0.0  # slot-seconds spent running experiments so far
        self._index = {id(slot): i for i, slot in enumerate(self.slots)}
        self._gone: set[int] = set()  # indices of slots that left
        self._classes: frozenset[str] | None = None  # the live slots' hardware classes, until a slot joins or leaves
        self._order = itertools.count()
        self._closed = False

    async def acquire(self, agent: str, priority: float = 1.0, hardware: str | None = None) -> Slot | None:
        """Wait until a slot (of `hardware` class, if given) is this agent's turn; None once the run stops, or at
        once when no slot of the run is of that class."""
        if self._closed or (hardware is not None and hardware not in self.hardware_classes()):
            return None  # stopped, or no slot of that class in this run
        priority = max(priority, 1e-9)
        order = next(self._order)
        waiter = _Waiter(fair_share_key(self._used.get(agent, 0.0), priority, order), agent, priority, hardware,
                         asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, waiter)
        self._dispatch()
        return await waiter.future

    def release(self, slot: Slot, agent: str, seconds: float) -> None:
        """A run of `agent` ended after `seconds` on `slot`."""
        self._used[agent] = self._used.get(agent, 0.0) + 1
        self.busy_seconds += seconds
        index = self._index[id(slot)]
        if index not in self._gone:
            heapq.heappush(self._free, index)
        self._dispatch()

    def used(self) -> dict[str, float]:
        return dict(self._used)

    @property
    def mean_run_seconds(self) -> float | None:
        """The mean time a run held its slot so far; None before any run ended."""
        runs = sum(self._used.values())
        return self.busy_seconds / runs if runs else None

    def live(self) -> list[Slot]:
        """The slots that have not left."""
        return [slot for i, slot in enumerate(self.slots) if i not in self._gone]

    def hardware_classes(self) -> frozenset[str]:
        if self._classes is None:
            self._classes = frozenset(slot.hardware() for slot in self.live())
        return self._classes

    def add(self, slot: Slot) -> None:
        """A slot joined (a node came up): it is free at once."""
        if id(slot) in self._index:
            return
        self._index[id(slot)] = len(self.slots)
        self.slots.append(slot)
        self._classes = None
        heapq.heappush(self._free, self._index[id(slot)])
        self._dispatch()

    def remove(self, slot: Slot) -> None:
        """A slot left (its node is gone): it takes no new run, and the run it holds ends as its world says.
        A waiter for a hardware class no live slot has any more gets None."""
        index = self._index.get(id(slot))
        if index is None or index in self._gone:
            return
        self._gone.add(index)
        self._classes = None
        if index in self._free:
            self._free.remove(index)
            heapq.heapify(self._free)
        classes = self.hardware_classes()
        stranded = [w for w in self._heap if w.hardware is not None and w.hardware not in classes]
        for waiter in stranded:
            if not waiter.future.done():
                waiter.future.set_result(None)
        self._heap = [w for w in self._heap if not any(w is s for s in stranded)]
        heapq.heapify(self._heap)

    def close(self) -> None:
        """The run stops: every waiter gets None, and so does every later request."""
        self._closed = True
        for waiter in self._heap:
            if not waiter.future.done():
                waiter.future.set_result(None)
        self._heap = []

    def _dispatch(self) -> None:
        """Give free slots to waiters in fair-share order; a waiter no free slot fits waits for its class."""
        unfit = []
        while self._free and self._heap:
            waiter = heapq.heappop(self._heap)
            if waiter.future.done():  # cancelled
                continue
            fresh = fair_share_key(self._used.get(waiter.agent, 0.0), waiter.priority, waiter.key[-1])
            if fresh > waiter.key:
                waiter.key = fresh
                heapq.heappush(self._heap, waiter)
                continue
            index = self._first_free(waiter)
            if index is None:
                unfit.append(waiter)
                continue
            waiter.future.set_result(self.slots[index])
        for waiter in unfit:
            heapq.heappush(self._heap, waiter)

    def _first_free(self, waiter: _Waiter) -> int | None:
        """Take the first free slot that fits the waiter (most often the first free slot of all)."""
        if waiter.hardware is None or self.slots[self._free[0]].hardware() == waiter.hardware:
            return heapq.heappop(self._free)
        fitting = sorted(i for i in self._free if waiter.fits(self.slots[i]))
        if not fitting:
            return None
        self._free.remove(fitting[0])
        heapq.heapify(self._free)
        return fitting[0]
