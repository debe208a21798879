"""Clocks: the engine runs on asyncio, under wall time or under virtual time, with the same code.

Why asyncio: the engine's rules read top-down as coroutines (`await` a slot,
`await` a run, `await` the re-runs a decision asks for), and the two worlds
differ only in what waiting means. Under the wall clock a run is a subprocess
watched from a worker thread and a slow agent (an LLM, a coding CLI) thinks in
a thread of its own, so the loop keeps every other agent and slot going. Under
the virtual clock nothing blocks: the loop never sleeps, and whenever no
coroutine is ready it jumps to the next timer, so a simulated day of a
thousand agents takes seconds. The virtual loop is asyncio's own selector loop
whose time is a number it moves itself; the only change is the selector,
which advances that number by the timeout asyncio asks it to wait.

A real thread may still work for the virtual loop (`run_in_executor`, the
executor's shutdown when the loop closes). While one does, a loop with no
timer waits for it in real time, as it would for I/O: on a busy machine the
thread may take a while, and that is not a stall. Only a loop with neither a
timer nor a thread at work has stalled, and says so in one error.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable
from typing import Any

from researchorg.errors import LabError


class WallClock:
    """Real time: the clock of a real lab."""

    virtual = False

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def new_loop(self) -> asyncio.AbstractEventLoop:
        self.loop = asyncio.new_event_loop()
        return self.loop

    def now(self) -> float:
        """Seconds since the epoch: what the ledger records."""
        return time.time()

    async def sleep(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait `seconds`, or less if the run stops first."""
        if seconds > 0:
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                pass


class _AdvancingSelector(selectors.DefaultSelector):
    """A selector that never waits: asked to wait t seconds for I/O, it moves the virtual time by t."""

    def __init__(self, clock: VirtualClock):
        super().__init__()
        self.clock = clock
        self._calls = 0
        self.threads = 0  # real threads at work for the loop: it waits for them, however long they take

    def select(self, timeout: float | None = None) -> list:
        if timeout is None:  # nothing is ready and nothing is scheduled
            if self.threads:  # a thread will wake the loop when it is done (call_soon_threadsafe)
                return super().select(None)
            raise LabError("virtual time stalled: every process is waiting and nothing is scheduled")
        self._calls += 1
        if timeout > 0:
            self.clock.seconds += timeout
        # the only file the loop watches is its wake-up pipe (a signal, such as Ctrl-C): look without waiting,
        # when time moves and now and then
        return super().select(0) if timeout > 0 or self._calls % 256 == 0 else []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self._advancing = _AdvancingSelector(clock)
        super().__init__(self._advancing)

    def time(self) -> float:
        return self.clock.seconds

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future:
        future = super().run_in_executor(executor, func, *args)
        self._advancing.threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future) -> None:
        self._advancing.threads -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        """asyncio's, which waits for a thread of its own that joins the executor's threads."""
        self._advancing.threads += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._advancing.threads -= 1


class VirtualClock:
    """Virtual time, from 0: the clock of a simulated lab."""

    virtual = True

    def __init__(self) -> None:
        self.seconds = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None

    def new_loop(self) -> asyncio.AbstractEventLoop:
        self.loop = _VirtualLoop(self)
        return self.loop

    def now(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float, stop: asyncio.Event) -> None:
        """Let `seconds` of virtual time pass (nothing stops a simulation midway)."""
        if seconds > 0:
            await asyncio.sleep(seconds)
