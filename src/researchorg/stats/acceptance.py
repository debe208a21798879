"""Acceptance policies: whether a candidate is kept, from its runs, the incumbent's runs and the noise floor.

A policy sees every successful run of the candidate so far (one at first) and
of the incumbent (the code the agent's branch stands at), on one hardware
class, and the noise floor (sigma of one run, from the baseline run with K
seeds). It answers keep, discard, or "run it again with a new seed" (`keep`
None): the runtime then runs the candidate once more and asks again. With
`final` set (no budget left for another run) it must decide.

- `greedy`: autoresearch's rule, kept for comparison: keep when the mean beats
  the incumbent's mean at all. Never asks for a re-run.
- `noise-aware`: a sequential z-test. The gain is the difference
  of the means in the metric's good direction; its standard error is
  sqrt(v_c/n_c + v_i/n_i), where each side's variance v is its own sample
  variance shrunk toward the noise floor's (which counts as K-1 degrees of
  freedom): v = ((K-1) sigma^2 + (n-1) s^2) / (K-1 + n-1). Seed noise differs
  between configurations (a small model can be far steadier than the
  baseline), so one sigma for all would drop steady real gains; the shrinkage
  keeps a lucky tight pair of runs from claiming much. Keep when the gain
  exceeds `sigmas` standard errors (default 2); drop when it is not positive
  or after `max_runs` runs; in between (borderline) run again with a new seed.
- `explore-gate` (the default): explore fast, gate late. An agent's own branch
  moves on one run whose gain over the incumbent exceeds `explore_sigmas`
  standard errors (default 0: any gain, as greedy), so exploration runs at
  greedy's pace; rigor is paid at the gate into the program branch, where a
  candidate's fresh-seed runs (the verification) must beat main's unselected
  runs by the noise-aware test (`sigmas`, `max_runs`), re-running whichever
  side has fewer runs while it is borderline. A false keep on a branch costs
  one run and is undone when the agent adopts a better main; a false keep
  into main is what the gate stops. Its decisions compare runs made under
  matched machine load (`matched`: see engine/evidence.py).

- `screen-gate`: explore-gate on a short budget. An agent's proposals train
  for `screen` of the task's budget (a quarter by default) and its branch
  moves on them as explore-gate's does, compared only with runs on that same
  budget; the gate into the program branch runs at the full budget. Exploring
  costs a fraction of a run, so the same compute tries several times the
  ideas; what a short run says of a change is not what the full run says
  (benchmarks/fidelity.py measures how much on tinylm), which is what the
  full-budget gate is for.

A policy's `gate` is the test a candidate's verification must pass against
the program branch before it merges; without one (greedy, noise-aware) the
verification's mean must beat the incumbent the candidate was judged against.

Every decision carries its evidence: the policy, the runs and their means,
sigma, the standard error, z, the threshold and the rule that fired. The
runtime adds the confounds (stats/confounds.py).

The incumbent is measured by its unselected runs (`stats.score.code_sample`): a code
was kept because its runs came out well, so those runs overstate it (the
winner's curse), and with many agents the overstatement grows until nothing
can beat a lucky incumbent. Runs that no keep decision chose (the noise floor,
verifications, ablations) measure it without that bias; only a code that has
none is measured by all its runs. And while a decision is borderline, the side
with fewer runs runs again (`rerun_incumbent`): a sequential test that only
re-runs the candidate can never overcome an incumbent measured once, however
lucky that once was.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol

from researchorg.stats.score import gain
from researchorg.task.spec import MetricSpec


def rerun_incumbent(candidate: list[float], incumbent: list[float]) -> bool:
    """A borderline decision's next run: the incumbent's code when it has fewer runs than the candidate (its
    uncertainty then weighs more in the standard error), else the candidate's."""
    return len(incumbent) < len(candidate)


@dataclass
class Decision:
    keep: bool | None  # None: run the candidate again with a new seed before deciding
    evidence: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    name: str
    matched: bool  # decisions compare runs made under matched machine load (engine/evidence.py)
    screen: float  # the fraction of the task's budget a proposal trains for (1: the full budget)

    @property
    def gate(self) -> Policy | None: ...

    def decide(self, metric: MetricSpec, candidate: list[float], incumbent: list[float], sigma: float | None,
               final: bool = False, sigma_dof: int = 4) -> Decision: ...


def _base_evidence(name: str, metric: MetricSpec, candidate: list[float],
                   incumbent: list[float]) -> dict[str, Any] | Decision:
    """The means and the gain; with nothing to compare to, the decision itself: the agent's first result is kept."""
    if not incumbent:
        return Decision(True, {"policy": name, "rule": "first result of the agent", "candidate_runs": candidate})
    mean_c, mean_i = statistics.fmean(candidate), statistics.fmean(incumbent)
    return {"policy": name, "candidate_runs": [round(v, 6) for v in candidate],
            "incumbent_runs": [round(v, 6) for v in incumbent], "candidate_mean": mean_c,
            "incumbent_mean": mean_i, "gain": gain(metric, mean_c, mean_i)}


@dataclass
class Greedy:
    name: str = "greedy"
    matched: bool = False
    screen: float = 1.0
    gate: None = None

    def decide(self, metric: MetricSpec, candidate: list[float], incumbent: list[float], sigma: float | None,
               final: bool = False, sigma_dof: int = 4) -> Decision:
        evidence = _base_evidence(self.name, metric, candidate, incumbent)
        if isinstance(evidence, Decision):
            return evidence
        keep = evidence["gain"] > 0
        return Decision(keep, {**evidence, "rule": "better than the incumbent" if keep else "not better"})


@dataclass
class NoiseAware:
    sigmas: float = 2.0
    max_runs: int = 4
    name: str = "noise-aware"
    matched: bool = False
    screen: float = 1.0
    gate: None = None

    def decide(self, metric: MetricSpec, candidate: list[float], incumbent: list[float], sigma: float | None,
               final: bool = False, sigma_dof: int = 4) -> Decision:
        evidence = _base_evidence(self.name, metric, candidate, incumbent)
        if isinstance(evidence, Decision):
            return evidence
        if sigma is None:  # no noise floor measured: estimate it from the runs themselves, if there are some
            sigma = pooled_sigma([candidate, incumbent])
            evidence["sigma_from"] = "these runs" if sigma is not None else "none: no noise estimate"
            se = (sigma or 0.0) * math.sqrt(1 / len(candidate) + 1 / len(incumbent))
        else:
            v_c, v_i = shrunk_variance(candidate, sigma, sigma_dof), shrunk_variance(incumbent, sigma, sigma_dof)
            se = math.sqrt(v_c / len(candidate) + v_i / len(incumbent))
            evidence.update(sigma_candidate=math.sqrt(v_c), sigma_incumbent=math.sqrt(v_i))
        z = evidence["gain"] / se if se > 0 else math.copysign(math.inf, evidence["gain"]) if evidence["gain"] else 0.0
        evidence.update(sigma=sigma, se=se, z=z, threshold=self.sigmas, test="one-sided z on the difference of means")
        if z > self.sigmas:
            return Decision(True, {**evidence, "rule": f"gain > {self.sigmas:g} standard errors"})
        if z <= 0:
            return Decision(False, {**evidence, "rule": "no gain"})
        if final or len(candidate) >= self.max_runs:
            why = "undecided, so not kept: the experiment budget ran out before its re-runs" \
                if final and len(candidate) < self.max_runs else \
                f"still below {self.sigmas:g} standard errors after {len(candidate)} runs"
            return Decision(False, {**evidence, "rule": why})
        return Decision(None, {**evidence, "rule": "borderline: run again with a new seed"})


@dataclass
class ExploreGate:
    explore_sigmas: float = 0.0
    sigmas: float = 2.0
    max_runs: int = 4
    gate_trigger: float = 2.0
    name: str = "explore-gate"
    matched: bool = True
    screen: float = 1.0  # screen-gate: proposals train for this fraction of the budget

    def at_gate(self, metric: MetricSpec, head: list[float], main: list[float], sigma: float | None,
                sigma_dof: int = 4) -> float:
        """How many standard errors the branch's head beats main by on the runs so far (its z): at
        `gate_trigger` or more, it goes to the gate."""
        if not main or not head:
            return math.inf if head else 0.0
        gained = gain(metric, statistics.fmean(head), statistics.fmean(main))
        if sigma is None:
            sigma = pooled_sigma([head, main]) or 0.0
        se = math.sqrt(shrunk_variance(head, sigma, sigma_dof) / len(head)
                       + shrunk_variance(main, sigma, sigma_dof) / len(main)) if sigma else 0.0
        return gained / se if se > 0 else math.copysign(math.inf, gained) if gained else 0.0

    @property
    def gate(self) -> NoiseAware:
        return NoiseAware(self.sigmas, self.max_runs, name=f"{self.name} (gate)", matched=self.matched)

    def decide(self, metric: MetricSpec, candidate: list[float], incumbent: list[float], sigma: float | None,
               final: bool = False, sigma_dof: int = 4) -> Decision:
        """The branch's rule: one run, kept when its gain exceeds `explore_sigmas` standard errors."""
        evidence = _base_evidence(self.name, metric, candidate, incumbent)
        if isinstance(evidence, Decision):
            return evidence
        if sigma is None:
            se = 0.0
        else:
            v_c, v_i = shrunk_variance(candidate, sigma, sigma_dof), shrunk_variance(incumbent, sigma, sigma_dof)
            se = math.sqrt(v_c / len(candidate) + v_i / len(incumbent))
        z = evidence["gain"] / se if se > 0 else math.copysign(math.inf, evidence["gain"]) if evidence["gain"] else 0.0
        keep = z > self.explore_sigmas
        evidence.update(sigma=sigma, se=se, z=z, threshold=self.explore_sigmas)
        rule = (f"gain > {self.explore_sigmas:g} standard errors: the branch moves; main is gated"
                if keep else f"not above {self.explore_sigmas:g} standard errors")
        return Decision(keep, {**evidence, "rule": rule})


def shrunk_variance(runs: list[float], sigma: float, sigma_dof: int) -> float:
    """The variance of one run of this code: its sample variance shrunk toward the noise floor's sigma^2."""
    own = len(runs) - 1
    if own <= 0:
        return sigma ** 2
    return (sigma_dof * sigma ** 2 + own * sample_variance(runs)) / (sigma_dof + own)


def sample_variance(values: list[float]) -> float:
    """The sample variance of at least two values, in floats (statistics.variance computes exact fractions:
    a tenth of a 100,000-run simulation's time went there)."""
    return _squares(values) / (len(values) - 1)


def _squares(values: list[float]) -> float:
    """The sum of the values' squared deviations from their mean."""
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


def pooled_sigma(groups: list[list[float]]) -> float | None:
    """Pooled sample standard deviation of several groups of runs; None with no degree of freedom."""
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return None
    return math.sqrt(math.fsum(_squares(g) for g in groups if len(g) > 1) / dof)


def z_text(z: float) -> str:
    """A z for people: `z = 2.31`, or where the runs did not vary at all, `no spread measured`."""
    if math.isfinite(z):
        return f"z = {z:.2f}"
    return "no spread measured" if math.isnan(z) else f"z = {'+' if z > 0 else '-'}inf (no spread measured)"


def make_policy(name: str, sigmas: float = 2.0, max_runs: int = 4, explore_sigmas: float = 0.0,
                gate_trigger: float = 2.0, screen: float = 0.25) -> Policy:
    if name == "greedy":
        return Greedy()
    if name == "noise-aware":
        return NoiseAware(sigmas=sigmas, max_runs=max_runs)
    if name == "explore-gate":
        return ExploreGate(explore_sigmas=explore_sigmas, sigmas=sigmas, max_runs=max_runs,
                           gate_trigger=gate_trigger)
    if name == "screen-gate":
        return ExploreGate(explore_sigmas=explore_sigmas, sigmas=sigmas, max_runs=max_runs,
                           gate_trigger=gate_trigger, name=name, screen=screen)
    raise ValueError(f"unknown acceptance policy {name!r}; known: {', '.join(POLICIES)}")


POLICIES = ("greedy", "noise-aware", "explore-gate", "screen-gate")
DEFAULT_POLICY = "explore-gate"  # what benchmarks/decisions.py crowned (its table is in the guide's Rigor section)
