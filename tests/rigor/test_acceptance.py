"""Acceptance policies, the noise floor and confounds, on numbers whose answer is known."""

from __future__ import annotations

import pytest

from researchorg.harness.protected import flops_estimate
from researchorg.stats import confounds
from researchorg.stats.acceptance import make_policy, pooled_sigma
from researchorg.stats.noise import estimate
from researchorg.task.spec import MetricSpec

LOSS = MetricSpec(name="loss", direction="minimize")
ACC = MetricSpec(name="acc", direction="maximize")


def test_greedy_keeps_anything_better_and_records_its_evidence():
    greedy = make_policy("greedy")
    assert greedy.decide(LOSS, [0.999], [1.0, 1.0], sigma=0.05).keep is True  # noise read as progress
    decision = greedy.decide(ACC, [0.7], [0.8], sigma=None)
    assert decision.keep is False and decision.evidence["gain"] == pytest.approx(-0.1)
    assert greedy.decide(LOSS, [1.0], [], sigma=None).evidence["rule"] == "first result of the agent"


def test_noise_aware_keeps_clear_gains_drops_losses_and_reruns_borderline_ones():
    policy = make_policy("noise-aware", sigmas=2.0, max_runs=3)
    incumbent = [1.0] * 5
    clear = policy.decide(LOSS, [0.9], incumbent, sigma=0.01)  # 10 sigma
    assert clear.keep is True and clear.evidence["z"] > 2 and clear.evidence["rule"].startswith("gain >")
    assert policy.decide(LOSS, [1.01], incumbent, sigma=0.01).keep is False  # worse: no gain
    # one run: the noise floor's variance; the incumbent's 5 identical runs shrink its variance to half of it
    borderline = policy.decide(LOSS, [0.99], incumbent, sigma=0.01)
    assert borderline.keep is None and borderline.evidence["se"] == pytest.approx((1e-4 + 0.5e-4 / 5) ** 0.5)
    assert policy.decide(LOSS, [0.99, 0.99, 0.99], incumbent, sigma=0.01).keep is False  # z = 1.76 at max_runs
    assert policy.decide(LOSS, [0.98, 0.98], incumbent, sigma=0.01).keep is True  # z = 2.83
    final = policy.decide(LOSS, [0.99], incumbent, sigma=0.01, final=True)
    assert final.keep is False and final.evidence["rule"].startswith("undecided, so not kept")


def test_noise_aware_without_a_noise_floor_estimates_sigma_from_the_runs():
    policy = make_policy("noise-aware")
    decision = policy.decide(ACC, [0.9, 0.92], [0.8, 0.82], sigma=None)
    assert decision.evidence["sigma"] == pytest.approx(pooled_sigma([[0.9, 0.92], [0.8, 0.82]]))
    assert decision.evidence["sigma_from"] == "these runs" and decision.keep is True
    assert make_policy("noise-aware").decide(ACC, [0.9], [0.8], sigma=None).evidence["sigma_from"].startswith("none")


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown acceptance policy 'lucky'"):
        make_policy("lucky")


def test_noise_floor_interval_matches_the_chi_square_distribution():
    floor = estimate([1.0, 1.02, 0.98, 1.01, 0.99])
    assert floor.mean == pytest.approx(1.0) and floor.sigma == pytest.approx(0.0158114, rel=1e-4)
    # 4 degrees of freedom: chi2 quantiles 0.4844 and 11.143
    assert floor.sigma_low == pytest.approx(floor.sigma * (4 / 11.1433) ** 0.5, rel=1e-3)
    assert floor.sigma_high == pytest.approx(floor.sigma * (4 / 0.48442) ** 0.5, rel=1e-3)
    assert "5 seeds" in floor.describe("loss")
    with pytest.raises(ValueError):
        estimate([1.0])


def test_confounds_read_beside_the_gain():
    found = confounds.compare({"num_params": 1.4e6, "tokens": 1e6, "flops": 8.4e12, "steps": 100},
                              {"num_params": 1.0e6, "tokens": 1e6, "flops": 6e12, "steps": 0})
    assert found["num_params"]["ratio"] == pytest.approx(1.4) and "steps" not in found  # nothing to compare to 0
    text = confounds.describe("val_bpb", -0.02, found)
    assert text == "-0.0200 val_bpb, +40% params, same tokens, +40% FLOPs"
    assert flops_estimate(1e6, 2e6) == 1.2e13


def test_a_steady_candidate_against_a_noisy_baseline_is_judged_by_both_variances():
    """tinylm at 10 s: one layer runs far steadier (sd 0.004) than the baseline (sd 0.07). With the baseline's
    sigma for both sides it was dropped at z = 1.97; each side's variance shrunk toward the noise floor keeps it."""
    candidate = [3.605284, 3.604927, 3.604307, 3.613128]
    incumbent = [3.692554, 3.617171, 3.75226, 3.618692, 3.76977, 3.739079]
    decision = make_policy("noise-aware").decide(LOSS, candidate, incumbent, sigma=0.0718245, sigma_dof=4)
    assert decision.keep is True and 2.2 < decision.evidence["z"] < 2.5
    assert decision.evidence["sigma_candidate"] < decision.evidence["sigma_incumbent"]
    # with the noise floor's sigma treated as exact (a huge prior), the old answer comes back: dropped after 4 runs
    assert make_policy("noise-aware").decide(LOSS, candidate, incumbent, sigma=0.0718245, sigma_dof=10**9).keep \
        is False


def test_explore_gate_moves_the_branch_on_one_run_and_gates_main_with_the_noise_aware_test():
    policy = make_policy("explore-gate")
    incumbent = [1.0] * 5
    assert policy.decide(LOSS, [0.999], incumbent, sigma=0.01).keep is True  # any gain: the branch moves
    assert policy.decide(LOSS, [1.001], incumbent, sigma=0.01).keep is False
    assert policy.decide(LOSS, [0.999], incumbent, sigma=0.01, final=False).keep is not None  # never re-runs
    strict = make_policy("explore-gate", explore_sigmas=1.0)
    assert strict.decide(LOSS, [0.995], incumbent, sigma=0.01).keep is False  # z = 0.46
    assert strict.decide(LOSS, [0.98], incumbent, sigma=0.01).keep is True  # z = 1.83
    gate = policy.gate  # the test a merge passes: noise-aware's, against main
    assert gate.sigmas == 2.0 and gate.decide(LOSS, [0.99], incumbent, sigma=0.01).keep is None
    assert policy.matched and not make_policy("greedy").matched and make_policy("noise-aware").gate is None
    # how far a branch's head beats main, in standard errors: what sends it to the gate
    assert policy.at_gate(LOSS, [0.97], incumbent, sigma=0.01) == pytest.approx(0.03 / (1e-4 + 0.5e-4 / 5) ** 0.5)
    assert policy.at_gate(LOSS, [1.01], incumbent, sigma=0.01) < 0
