"""The scheduler: one experiment per slot, weighted fair share of runs, hardware classes, closing."""

import asyncio

import pytest

from researchorg import ConfigError, Slot, detect_slots
from researchorg.engine.scheduler import Scheduler


def _grant_order(scheduler: Scheduler, waiters: list[tuple[str, float]], runs: dict[str, int] | None = None) \
        -> list[str]:
    """Give agents the runs they already had, occupy the only slot, queue `waiters` in order, then release it
    and record who gets it, one by one."""
    async def main() -> list[str]:
        for agent, n in (runs or {}).items():
            for _ in range(n):
                scheduler.release(await scheduler.acquire(agent), agent, 1.0)
        held = await scheduler.acquire("holder")
        order = []

        async def wait(agent: str, priority: float) -> None:
            slot = await scheduler.acquire(agent, priority)
            order.append(agent)
            scheduler.release(slot, agent, 1.0)

        tasks = [asyncio.create_task(wait(agent, priority)) for agent, priority in waiters]
        await asyncio.sleep(0)  # every waiter is queued
        scheduler.release(held, "holder", 1.0)
        await asyncio.gather(*tasks)
        return order
    return asyncio.run(main())


def test_the_agent_with_fewest_runs_goes_first():
    scheduler = Scheduler([Slot("s0")])
    assert _grant_order(scheduler, [("busy", 1.0), ("idle", 1.0)], runs={"busy": 10, "idle": 1}) == ["idle", "busy"]


def test_priority_weighs_the_fair_share():
    scheduler = Scheduler([Slot("s0")])
    assert _grant_order(scheduler, [("junior", 1.0), ("chief", 5.0)], runs={"chief": 10, "junior": 3}) == \
        ["chief", "junior"]


def test_ties_go_in_order_of_asking():
    scheduler = Scheduler([Slot("s0")])
    assert _grant_order(scheduler, [("a", 1.0), ("b", 1.0), ("c", 1.0)]) == ["a", "b", "c"]


def test_a_slot_runs_one_experiment_at_a_time_and_closing_unblocks():
    async def main() -> None:
        scheduler = Scheduler([Slot("s0"), Slot("s1")])
        a, b = await scheduler.acquire("a"), await scheduler.acquire("b")
        assert {a.name, b.name} == {"s0", "s1"}
        waiter = asyncio.create_task(scheduler.acquire("c"))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # both slots busy
        scheduler.release(a, "a", 2.0)
        assert (await waiter).name == a.name  # the slot freed goes to the one waiting
        late = asyncio.create_task(scheduler.acquire("d"))
        await asyncio.sleep(0)
        scheduler.close()  # the run stops: whoever waits gets None, and so does anyone who asks later
        assert await late is None and await scheduler.acquire("e") is None
        assert scheduler.used() == {"a": 1} and scheduler.busy_seconds == 2.0
    asyncio.run(main())


def test_a_request_for_a_hardware_class_waits_for_a_slot_of_that_class():
    class Gpu(Slot):
        def hardware(self) -> str:
            return "cuda:H100"

    async def main() -> None:
        scheduler = Scheduler([Slot("cpu0"), Gpu("gpu0")])
        gpu = await scheduler.acquire("a", hardware="cuda:H100")
        assert gpu.name == "gpu0"
        waiter = asyncio.create_task(scheduler.acquire("b", hardware="cuda:H100"))
        await asyncio.sleep(0)
        assert not waiter.done()  # a CPU slot is free, but it is not of the class asked for
        scheduler.release(gpu, "a", 1.0)
        assert (await waiter).name == "gpu0"
    asyncio.run(main())


def test_cpu_slots_split_the_cores():
    slots = detect_slots(2, 1)
    assert [s.name for s in slots] == ["cpu0", "cpu1"]
    assert [s.threads for s in slots] == [1, 1]
    assert len(set(slots[0].cores) | set(slots[1].cores)) == 2
    with pytest.raises(ConfigError, match="need 64 cores"):
        detect_slots(64, 1)
