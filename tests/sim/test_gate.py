"""explore-gate's gate into main: what it keeps out, what it costs, and that a short verification never merges."""

from __future__ import annotations

import statistics

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld
from tests.sim.one_idea import register_one_idea

register_one_idea("one-helpful", lambda ideas: max(ideas, key=lambda idea: idea.effect))  # the most helpful


def _false_merges(world: SimWorld, landscape: Landscape) -> tuple[int, int]:
    previous, false = landscape.base, 0
    for merge in world.ledger.merges():
        value = world.true_value(merge.after)
        false += value >= previous
        previous = value
    return false, len(world.ledger.merges())


def test_the_gate_keeps_changes_without_a_true_gain_out_of_main_where_greedy_lets_them_in():
    """20 landscapes, one simulated researcher, 60 runs: what benchmarks/decisions.py measures, at a fixed set."""
    counts = {}
    for policy in ("greedy", "explore-gate"):
        false = merged = 0
        for seed in range(20):
            org = OrgSpec(name=policy, policy=policy, rigor={"noise_runs": 0 if policy == "greedy" else 5},
                          roles=[{"name": "researcher", "backend": "simulated", "idea_quality": 0.3,
                                  "think_seconds": 60}],
                          processes=[{"kind": "merge"}] + ([{"kind": "verify"}] if policy != "greedy" else []))
            landscape = Landscape.realistic(seed=seed)
            world = SimWorld(landscape, org)
            Runtime(world).run(Limits(max_experiments=60))
            f, m = _false_merges(world, landscape)
            false, merged = false + f, merged + m
        counts[policy] = false / merged
    assert counts["greedy"] > 0.15 and counts["explore-gate"] <= 0.05, counts


def test_a_verification_the_budget_cuts_short_does_not_merge():
    """One run of the budget is left for a kept change's verification of 2 runs: it is not spent, nothing merges."""
    org = OrgSpec(name="cut", policy="noise-aware", rigor={"noise_runs": 2},
                  roles=[{"name": "researcher", "backend": "one-helpful", "max_experiments": 1}],
                  processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2}])
    world = SimWorld(Landscape(seed=0, crash_p=0.0), org)
    Runtime(world).run(Limits(max_experiments=4))  # 2 floor runs, the proposal, 1 run left
    (proposal,) = world.ledger.experiments(kind="proposal")
    assert proposal.status == "keep"
    assert [e.kind for e in world.ledger.experiments()] == ["noise", "noise", "proposal"]  # none half-paid
    assert not world.ledger.merges() and not world.ledger.verifications()
    assert any(e.kind == "verification_cut" for e in world.ledger.events())


def test_explore_gate_gates_every_merge_even_without_a_verify_process():
    org = OrgSpec(name="gate", policy="explore-gate", rigor={"noise_runs": 3},
                  roles=[{"name": "researcher", "backend": "one-helpful", "max_experiments": 1}],
                  processes=[{"kind": "merge"}])
    world = SimWorld(Landscape(seed=0, crash_p=0.0), org)
    Runtime(world).run(Limits(max_experiments=10))
    (proposal,) = world.ledger.experiments(kind="proposal")
    (verification,) = world.ledger.verifications()
    assert verification.experiment_id == proposal.id and len(verification.runs) >= 2 and verification.reproduced
    assert [m.experiment_id for m in world.ledger.merges()] == [proposal.id]
    gate = next(e for e in world.ledger.events() if e.kind == "gate")
    assert gate.data["keep"] and gate.data["z"] > 2  # the fresh runs beat main by the noise-aware test


def test_a_branch_the_gate_found_no_better_than_main_goes_back_to_main():
    """A failed gate whose fresh runs show the branch's code no better than main: the agent's next proposal starts
    from main, not from the code that failed (its lucky keeps would otherwise ride along into every later gate)."""
    returned = 0
    for seed in range(12):
        world = SimWorld(Landscape(seed=seed), OrgSpec(
            name="back", policy="explore-gate", rigor={"noise_runs": 3},
            roles=[{"name": "researcher", "backend": "simulated", "idea_quality": 0.3, "think_seconds": 60}],
            processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2}]))
        Runtime(world).run(Limits(max_experiments=60))
        ledger = world.ledger
        for v in ledger.verifications():
            if v.reproduced or v.mean is None:
                continue
            judged = ledger.experiment(v.experiment_id)
            main_before = [m.after for m in ledger.merges() if m.at <= ledger.experiment(max(v.runs)).ended_at]
            main = main_before[-1] if main_before else ledger.program().baseline_commit
            main_value = statistics.fmean(e.metric for e in ledger.runs_of(world.tree_of(main))
                                          if e.kind in ("noise", "verify", "incumbent"))
            later = [e for e in ledger.experiments(agent=judged.agent, kind="proposal") if e.id > max(v.runs)]
            if v.mean >= main_value and later:  # no better than main on the full budget's fresh runs
                assert later[0].parent_commit == main, (seed, v.experiment_id)
                returned += 1
    assert returned >= 3  # the case happened, and each time the branch went back to main
