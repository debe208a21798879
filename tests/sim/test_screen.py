"""screen-gate: proposals train on a fraction of the budget, are compared only with runs on that fraction, cost
that fraction of the experiment budget, and reach main only through a gate on the full budget."""

from __future__ import annotations

import statistics

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld, SqlLedger
from researchorg.engine.budget import Budget


def _org(**rigor: object) -> OrgSpec:
    return OrgSpec(name="screen", policy="screen-gate", rigor={"noise_runs": 5, **rigor},
                   roles=[{"name": "researcher", "backend": "simulated", "idea_quality": 0.3, "think_seconds": 60}],
                   processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2}])


def test_a_short_run_measures_its_own_effects_with_its_own_noise_and_takes_its_share_of_the_time():
    shape = {"fidelity_slope": 0.5, "fidelity_deviation": 1.0, "fidelity_sigma": 3.0}
    landscape = Landscape(seed=5, crash_p=0.0, n_ideas=400, **shape)
    config = frozenset({"IDEA_01", "IDEA_02"})
    # the full budget measures what it measured before short runs existed, whatever they measure
    assert Landscape(seed=5, crash_p=0.0, n_ideas=400, fidelity_slope=1.0, fidelity_deviation=0.0,
                     fidelity_sigma=1.0).run(config, 3) == landscape.run(config, 3)
    short = [landscape.run(config, seed, fidelity=0.25) for seed in range(400)]
    assert statistics.fmean(o.seconds for o in short) < 0.3 * landscape.seconds
    assert abs(statistics.stdev(o.metric for o in short) - 3.0 * landscape.sigma) < 0.005
    assert abs(statistics.fmean(o.metric for o in short) - landscape.true_value(config, 0.25)) < 0.005
    # each idea's short effect departs from half its full effect by its own amount, as much as the halved
    # effects spread (deviation 1): short and full effects correlate about 1/sqrt(2)
    full = [i.effect for i in landscape.ideas]
    short_effects = [landscape.base - landscape.true_value(frozenset({i.name}), 0.25) for i in landscape.ideas]
    assert 0.6 < statistics.correlation(full, short_effects) < 0.8
    assert landscape.true_value(config, 0.25) == Landscape(seed=5, n_ideas=400, **shape).true_value(config, 0.25)


def test_the_budget_counts_a_run_by_the_share_of_the_budget_it_trains_for():
    budget = Budget(Limits(max_experiments=2), 0.0, lambda: 0.0)
    assert all(budget.reserve(0.25) for _ in range(4))
    assert budget.reserve(1.0) and not budget.reserve(0.25) and budget.exhausted_by == "max_experiments"
    budget.settle(counted=False, cost=1.0)  # withdrawn: its share is free again
    assert budget.left() == 1.0 and not budget.reserve(1.5) and budget.reserve(0.5)


def test_screen_gate_screens_proposals_compares_within_a_budget_and_gates_main_on_the_full_one(tmp_path):
    landscape = Landscape.realistic(seed=2)
    world = SimWorld(landscape, _org())
    Runtime(world).run(Limits(max_experiments=30))
    ledger = world.ledger
    rows = [e for e in ledger.experiments() if e.status != "interrupted"]
    assert abs(ledger.spent(("interrupted",)) - sum(e.fidelity for e in rows)) < 1e-9
    assert 29.0 <= ledger.spent(("interrupted",)) <= 30.0 + 1e-9  # the compute of 30 full runs, all but a run
    assert len(rows) > 45  # many more runs than 30: most are screens
    proposals = [e for e in rows if e.kind == "proposal"]
    assert proposals and {e.fidelity for e in proposals} == {0.25}
    for e in proposals:  # every decision compared the candidate with the incumbent's runs on the short budget
        decision = e.summary.get("decision", {})
        if e.status in ("keep", "discard") and "incumbent_tree" in decision:
            assert decision["fidelity"] == 0.25
            assert ledger.runs_of(decision["incumbent_tree"], fidelity=0.25)
    assert {e.fidelity for e in rows if e.kind == "noise"} == {0.25, 1.0}  # a floor on each budget
    merges = ledger.merges()
    assert merges
    for merge in merges:  # nothing reached main without fresh full-budget runs that passed the gate
        verified = [v for v in ledger.verifications() if v.experiment_id == merge.experiment_id]
        assert verified and verified[-1].reproduced
        assert all(ledger.experiment(i).fidelity == 1.0 for i in verified[-1].runs)
    stored = SqlLedger(tmp_path / "ledger.db")  # the fidelity is kept on disk, and the budget's sum with it
    stored.copy_from(ledger)
    assert [e.fidelity for e in stored.experiments()] == [e.fidelity for e in ledger.experiments()]
    assert stored.spent(("interrupted",)) == ledger.spent(("interrupted",))
    assert stored.runs_of(world.tree_of(merges[-1].after), fidelity=None)


def test_a_resumed_screening_run_spends_only_what_is_left():
    world = SimWorld(Landscape(seed=4), _org())
    Runtime(world).run(Limits(max_experiments=12))
    first = world.ledger.spent(("interrupted",))
    Runtime(world).run(Limits(max_experiments=20))
    assert first <= 12 + 1e-9 and 19.0 <= world.ledger.spent(("interrupted",)) <= 20 + 1e-9
