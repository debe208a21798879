"""Machine load as a confound: a noise floor measured on a loaded machine, then a candidate run on an idle one.

It happened on tinylm: with the floor measured while other work took 60-78 CPU-seconds per run, one run on
the then idle machine trained 25 times the steps, was kept at z = 9.9 and merged as a 44.7% improvement.
Here the same case runs in the simulated world: the landscape's machine is busy while the floor runs (other
work takes 96% of a run's throughput: 25 times fewer steps, as measured), idle afterwards, and the one
proposal is a change that truly hurts. A decision that reads the loaded floor as the incumbent keeps it and
merges it; explore-gate compares runs under matched load, runs the incumbent again on the idle machine, and
does not keep it.
"""

from __future__ import annotations

import pytest

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld
from tests.sim.one_idea import register_one_idea

LOADED_UNTIL = 800.0  # seconds: the three noise-floor runs (270-330 s each) start on the busy machine


class _LoadedAtStart(Landscape):
    """The realistic landscape, with a machine that is busy exactly while the noise floor runs."""

    def busy(self, at: float) -> bool:
        return at < LOADED_UNTIL


register_one_idea("one-harmful", lambda ideas: min(ideas, key=lambda idea: idea.effect))  # the most harmful


def _run(policy: str) -> tuple[SimWorld, Landscape]:
    landscape = _LoadedAtStart(seed=3, slot_speed_spread=0.0, busy_p=1.0, busy_slowdown=(0.96, 0.96),
                               busy_cores=1.0, throughput_slope=0.059, crash_p=0.0)
    org = OrgSpec(name=policy, policy=policy, rigor={"noise_runs": 3},
                  roles=[{"name": "researcher", "backend": "one-harmful", "max_experiments": 1}],
                  processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2}])
    world = SimWorld(landscape, org)
    Runtime(world).run(Limits(max_experiments=20))
    return world, landscape


def _proposal(world: SimWorld):
    (proposal,) = world.ledger.experiments(kind="proposal")
    return proposal


@pytest.mark.parametrize("policy", ["greedy", "noise-aware"])
def test_a_decision_blind_to_load_keeps_and_merges_a_harmful_change_run_on_an_idle_machine(policy):
    world, landscape = _run(policy)
    proposal = _proposal(world)
    floor = [e for e in world.ledger.experiments(kind="noise")]
    assert floor and all(e.summary["other_cpu_s"] > 0 and e.summary["steps"] == 40 for e in floor)
    assert proposal.summary["steps"] == 1000 and proposal.summary["other_cpu_s"] == 0  # 25 times the steps
    assert proposal.status == "keep"  # the load's 19-sigma effect read as a gain
    assert world.true_value(world.main()) > landscape.base  # merged: main is truly worse than the baseline


def test_explore_gate_compares_under_matched_load_and_does_not_keep_the_harmful_change():
    world, landscape = _run("explore-gate")
    proposal = _proposal(world)
    decision = proposal.summary["decision"]
    assert proposal.status == "discard", decision["rule"]
    assert decision["load"] == [0.0] and decision["unmatched_runs"] == 3  # the loaded floor did not count
    again = [e for e in world.ledger.experiments(kind="incumbent") if e.rerun_of == proposal.id]
    assert again and all(e.summary["other_cpu_s"] == 0 for e in again)  # the baseline ran again, idle
    assert decision["gain"] < 0  # measured under matched load, the change hurts
    assert world.main() == world.ledger.program().baseline_commit and not world.ledger.merges()

