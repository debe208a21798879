"""The engine under faults, in virtual time: a lead with nothing to assign, agents that raise, Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld, register_backend
from researchorg.agents.options import SimulatedOptions
from researchorg.agents.simulated import SimulatedAgent
from researchorg.bench.measures import measure


class _SilentLead(SimulatedAgent):
    """A lead that reads its news and never assigns anything."""

    def act(self, ctx) -> None:
        ctx.idle()


class _ClumsyResearcher(SimulatedAgent):
    """A researcher whose bookkeeping fails after every result."""

    def observe(self, ctx, experiment) -> None:
        raise RuntimeError("observe fell over")


register_backend("silent-lead", lambda role, ctx, index: _SilentLead(ctx, 0.5, index), SimulatedOptions)
register_backend("clumsy", lambda role, ctx, index: _ClumsyResearcher(ctx, 0.5, index), SimulatedOptions)


def _org(*roles: dict) -> OrgSpec:
    return OrgSpec(name="faults", rigor={"noise_runs": 3}, roles=list(roles),
                   processes=[{"kind": "merge"}, {"kind": "verify"}])


def test_researchers_whose_lead_assigns_nothing_stop_instead_of_waiting_forever():
    org = _org({"name": "chief", "backend": "silent-lead", "submits": False, "think_seconds": 10},
               {"name": "junior", "count": 3, "backend": "simulated", "waits_for_assignment": True})
    world = SimWorld(Landscape(seed=0), org)
    report = Runtime(world, slots=world.default_slots(2)).run(Limits(max_hours=100))
    assert report.stopped_by == "agents_done"  # not "virtual time stalled", and in the real lab not a hang
    assert {e.kind for e in world.ledger.experiments()} == {"noise"}


def test_an_agent_that_raises_after_its_result_is_paused_and_the_budget_holds():
    org = _org({"name": "researcher", "count": 3, "backend": "clumsy"},
               {"name": "steady", "count": 2, "backend": "simulated"})
    world = SimWorld(Landscape(seed=1), org)
    report = Runtime(world, slots=world.default_slots(3)).run(Limits(max_experiments=30))
    runs = world.ledger.experiments()
    assert len(runs) == 30 and not [e for e in runs if e.status == "running"]  # every run is counted once
    assert set(report.paused) == {"researcher-1", "researcher-2", "researcher-3"}
    assert all("observe fell over" in why for why in report.paused.values())
    # a bench's repeat carries them, so a failing agent cannot pass for a weak org (the bench prints each)
    result = measure(world.ledger, world.task.metric, "faults", 1)
    assert set(result.paused) == set(report.paused) and "observe fell over" in result.paused["researcher-1"]


def test_ctrl_c_stops_a_run_in_virtual_time():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a suite run as `cmd &` ignores it
    try:
        _ctrl_c_in_virtual_time()
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_in_virtual_time():
    world = SimWorld(Landscape(seed=2, n_ideas=400), _org({"name": "r", "count": 50, "backend": "simulated",
                                                            "think_seconds": 60}))
    runtime = Runtime(world, slots=world.default_slots(50))
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    report = runtime.run(Limits(max_experiments=10_000_000))
    assert report.stopped_by == "interrupted" and time.monotonic() - started < 30
    assert not [e for e in world.ledger.experiments() if e.status == "running"]
