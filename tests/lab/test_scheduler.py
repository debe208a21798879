"""The scheduler: one experiment per slot, weighted fair share, cancellation."""

import threading
import time

import pytest

from researchorg.errors import ConfigError
from researchorg.lab.runner import Slot
from researchorg.lab.scheduler import Scheduler, detect_slots


def _grant_order(scheduler: Scheduler, waiters: list[tuple[str, float]]) -> list[str]:
    """Occupy the only slot, queue `waiters` in order, then release and record who gets it, one by one."""
    held = scheduler.acquire("holder")
    order, threads = [], []
    for agent, priority in waiters:
        def wait(agent=agent, priority=priority):
            slot = scheduler.acquire(agent, priority)
            order.append(agent)
            scheduler.release(slot, agent, 0.0)
        threads.append(threading.Thread(target=wait))
        threads[-1].start()
        while len(scheduler._waiting) < len(threads):
            time.sleep(0.01)
    scheduler.release(held, "holder", 0.0)
    for t in threads:
        t.join(timeout=5)
    return order


def test_the_agent_with_least_slot_time_goes_first():
    scheduler = Scheduler([Slot("s0")])
    scheduler._used.update({"busy": 100.0, "idle": 1.0})
    assert _grant_order(scheduler, [("busy", 1.0), ("idle", 1.0)]) == ["idle", "busy"]


def test_priority_weighs_the_fair_share():
    scheduler = Scheduler([Slot("s0")])
    scheduler._used.update({"chief": 100.0, "junior": 30.0})
    assert _grant_order(scheduler, [("junior", 1.0), ("chief", 5.0)]) == ["chief", "junior"]


def test_ties_go_in_order_of_asking():
    scheduler = Scheduler([Slot("s0")])
    assert _grant_order(scheduler, [("a", 1.0), ("b", 1.0), ("c", 1.0)]) == ["a", "b", "c"]


def test_a_slot_runs_one_experiment_at_a_time_and_cancel_unblocks():
    scheduler = Scheduler([Slot("s0"), Slot("s1")])
    a, b = scheduler.acquire("a"), scheduler.acquire("b")
    assert {a.name, b.name} == {"s0", "s1"}
    cancel = threading.Event()
    got = []
    waiter = threading.Thread(target=lambda: got.append(scheduler.acquire("c", cancel=cancel)))
    waiter.start()
    time.sleep(0.3)
    assert got == []  # both slots busy
    cancel.set()
    waiter.join(timeout=5)
    assert got == [None]
    scheduler.release(a, "a", 2.0)
    assert scheduler.acquire("c").name == a.name
    assert scheduler.used() == {"a": 2.0} and scheduler.busy_seconds == 2.0


def test_cpu_slots_split_the_cores():
    slots = detect_slots(2, 1)
    assert [s.name for s in slots] == ["cpu0", "cpu1"]
    assert [s.threads for s in slots] == [1, 1]
    assert len(set(slots[0].cores) | set(slots[1].cores)) == 2
    with pytest.raises(ConfigError, match="need 64 cores"):
        detect_slots(64, 1)
