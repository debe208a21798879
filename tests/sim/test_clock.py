"""The virtual clock: time jumps to the next timer, a real thread at work for the loop is waited for in real
time, and a loop with neither has stalled (one clear error)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from researchorg.errors import LabError
from researchorg.world.clock import VirtualClock


def _run(clock: VirtualClock, main) -> object:
    """The loop's whole life as asyncio.run lives it: run `main`, then shut the default executor down, close."""
    loop = clock.new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_virtual_time_jumps_to_the_next_timer():
    clock = VirtualClock()

    async def main():
        await asyncio.sleep(3600)
        return clock.now()

    assert _run(clock, main) == 3600


def test_a_thread_at_work_for_the_loop_is_waited_for_however_slow_it_is():
    """Nothing is scheduled while the thread works: the loop waits for it, in real time, and virtual time does
    not move meanwhile. The thread holds until the loop is certainly waiting (a busy machine's slow thread)."""
    clock, release = VirtualClock(), threading.Event()

    def slow() -> str:
        release.wait()
        return "done"

    async def main():
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(None, slow)
        loop.call_soon(threading.Timer(0.2, release.set).start)
        return await work, clock.now()

    assert _run(clock, main) == ("done", 0.0)


def test_closing_the_loop_waits_for_an_executor_thread_still_finishing():
    """decisions.py under load: the executor's shutdown joins a thread that is still busy."""
    clock, started = VirtualClock(), threading.Event()

    def lingering() -> None:
        started.set()
        time.sleep(0.3)

    async def main():
        asyncio.get_running_loop().run_in_executor(None, lingering)
        await asyncio.sleep(0)
        started.wait()
        return "main done"

    assert _run(clock, main) == "main done"


def test_a_loop_with_no_timer_and_no_thread_has_stalled():
    clock = VirtualClock()

    async def main():
        await asyncio.Event().wait()  # nobody will ever set it

    with pytest.raises(LabError, match="virtual time stalled"):
        _run(clock, main)
