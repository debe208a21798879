"""The simulated landscape and the virtual lab: known truth, reproducible runs, thousands of runs in seconds."""

from __future__ import annotations

import statistics

from researchorg.ledger import Ledger
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import SimRole, VirtualLab


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


def test_the_virtual_lab_runs_thousands_of_experiments_and_writes_the_ledger(tmp_path):
    landscape = Landscape(seed=1, n_ideas=500)
    result = VirtualLab(landscape, [SimRole(count=8, quality=0.4)], slots=8, max_experiments=3000).run()
    assert len(result.runs) == 3000  # its speed is measured by benchmarks/, not here
    assert result.merges and result.seconds > 0
    assert result.slot_seconds / (result.seconds * 8) > 0.8  # with thinking shorter than runs, slots stay busy
    ledger = Ledger(tmp_path / "ledger.db")
    small = VirtualLab(Landscape(seed=1), [SimRole(quality=0.4)], max_experiments=30, ledger=ledger).run()
    rows = ledger.experiments()
    assert [(r.kind, r.seed, r.status) for r in rows] == [(r.kind, r.seed, r.status) for r in small.runs]
    assert ledger.runs_of(rows[0].tree) and rows[0].hardware == "virtual"


def test_a_configs_value_does_not_depend_on_the_processs_hash_seed():
    import os
    import subprocess
    import sys

    code = ("from researchorg.sim.landscape import Landscape; l = Landscape(seed=3, n_ideas=400); "
            "print(repr(l.raw_gain(frozenset(i.name for i in l.ideas[::3]))))")
    values = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3, 4)}
    assert len(values) == 1
