"""The simulated landscape and the simulated world: known truth, reproducible runs, thousands of runs in seconds."""

from __future__ import annotations

import statistics

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld, SqlLedger


def test_runs_are_deterministic_and_noisy_around_the_truth():
    landscape = Landscape(seed=3, crash_p=0.0)
    config = frozenset({"IDEA_01", "IDEA_05"})
    assert landscape.run(config, 7) == Landscape(seed=3, crash_p=0.0).run(config, 7)
    values = [landscape.run(config, seed).metric for seed in range(400)]
    assert abs(statistics.fmean(values) - landscape.true_value(config)) < 0.003
    assert abs(statistics.stdev(values) - landscape.sigma) < 0.0015


def test_the_landscape_has_wins_harms_nulls_interactions_and_diminishing_returns():
    landscape = Landscape(seed=0)
    effects = [i.effect for i in landscape.ideas]
    assert any(e > 0 for e in effects) and any(e < 0 for e in effects) and any(e == 0 for e in effects)
    assert len(landscape.pairs) == landscape.interactions
    wins = frozenset(i.name for i in landscape.ideas if i.effect > 0)
    raw = landscape.raw_gain(wins)
    assert landscape.base - landscape.true_value(wins) < raw  # the gains of many wins saturate
    crashes = sum(landscape.run(frozenset(), seed).metric is None for seed in range(2000))
    assert 20 < crashes < 100  # crash_p = 0.03


def test_the_simulated_world_runs_thousands_of_experiments_in_virtual_time_and_keeps_them(tmp_path):
    world = SimWorld(Landscape(seed=1, n_ideas=500), _org(count=8))
    report = Runtime(world, slots=world.default_slots(8)).run(Limits(max_experiments=3000))
    assert len(world.ledger.experiments()) == 3000  # its speed is measured by benchmarks/, not here
    assert world.ledger.merges() and report.wall_seconds > 3000  # virtual seconds: runs take ~300 s each
    assert report.utilization > 0.8  # with thinking shorter than runs, slots stay busy
    small = SimWorld(Landscape(seed=1), _org(count=1))
    Runtime(small).run(Limits(max_experiments=30))
    stored = SqlLedger(tmp_path / "ledger.db")
    stored.copy_from(small.ledger)
    rows = stored.experiments()
    assert rows == small.ledger.experiments() and stored.merges() == small.ledger.merges()
    assert stored.runs_of(rows[0].tree) and rows[0].hardware == "virtual"


def _org(count: int) -> OrgSpec:
    return OrgSpec(name="solo", roles=[{"name": "researcher", "count": count, "backend": "simulated",
                                        "idea_quality": 0.4, "think_seconds": 60}],
                   processes=[{"kind": "merge"}, {"kind": "verify"}])


def test_a_configs_value_does_not_depend_on_the_processs_hash_seed():
    import os
    import subprocess
    import sys

    code = ("from researchorg.harness.landscape import Landscape; l = Landscape(seed=3, n_ideas=400); "
            "print(repr(l.raw_gain(frozenset(i.name for i in l.ideas[::3]))))")
    values = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3, 4)}
    assert len(values) == 1


def test_the_best_code_of_a_landscape_is_one_no_single_idea_improves():
    landscape = Landscape(seed=2)
    best = landscape.best_config()
    assert landscape.true_value(best) < landscape.base
    assert not landscape.helpful(best, [i.name for i in landscape.ideas if i.name not in best])
    assert all(landscape.true_gain(best - {name}, best) < 0 for name in best)  # and each idea in it pulls weight


def test_the_calibrated_landscape_draws_continuous_effects_and_its_researchers_see_them():
    """Effects from a continuous law (no exact nulls), each landscape's unit its own, and a researcher with
    insight tries the ideas that look best first: on average better than a draw at random."""
    landscape = Landscape.calibrated(seed=1)
    effects = [i.effect for i in landscape.ideas]
    assert 0 not in effects and len(effects) == 2000
    wins = [e for e in effects if e > 0]
    assert abs(len(wins) / len(effects) - landscape.p_win) < 0.05
    assert 0.7 * landscape.win_mean < statistics.fmean(wins) < 1.3 * landscape.win_mean
    units = {Landscape.calibrated(seed=s, scale_spread=1.0).unit for s in range(5)}
    assert len(units) == 5 and Landscape.calibrated(seed=1, scale_spread=0.0).unit == 1.0
    role = {"name": "researcher", "backend": "simulated", "idea_quality": 0.0}
    org = OrgSpec(name="autoresearch", policy="greedy", rigor={"noise_runs": 0}, roles=[role],
                  processes=[{"kind": "merge"}])

    def first_tried(insight: float) -> float:
        tried = []
        for seed in range(6):
            world = SimWorld(Landscape.calibrated(seed=seed, insight=insight, crash_p=0.0), org)
            Runtime(world).run(Limits(max_experiments=10))
            tried += [world.landscape.idea(e.proposal["idea"]).effect for e in world.ledger.experiments()]
        return statistics.fmean(tried)

    assert first_tried(0.9) > first_tried(0.0) + 0.0005
