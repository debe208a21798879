"""Topologies in the virtual lab, read from org files as the real runtime reads them: solo, chief, standup;
and the incumbent measured by its unselected runs, re-run when it has fewer runs than the candidate."""

from __future__ import annotations

import tomllib
from collections import Counter

import pytest

from researchorg.config import OrgSpec
from researchorg.errors import ConfigError
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import VirtualLab

RESEARCHERS = '''name = "{name}"
[[roles]]
name = "researcher"
count = 8
backend = "simulated"
idea_quality = 0.3
think_seconds = 60
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
'''
CHIEF = '''name = "chief"
[[roles]]
name = "chief"
backend = "simulated"
submits = false
merges = true
idea_quality = 0.5
think_seconds = 100
[[roles]]
name = "junior"
count = 8
backend = "simulated"
waits_for_assignment = true
think_seconds = 30
[[processes]]
kind = "verify"
'''


def _org(text: str) -> OrgSpec:
    return OrgSpec.model_validate(tomllib.loads(text))


def _proposals(result) -> list:
    return [r for r in result.runs if r.kind == "proposal"]


def test_a_chief_assigns_one_idea_at_a_time_never_twice_and_only_juniors_run():
    landscape = Landscape(seed=2, n_ideas=200)
    result = VirtualLab.from_org(_org(CHIEF), landscape, slots=8, max_experiments=150).run()
    proposals = _proposals(result)
    assert proposals and {r.agent for r in result.runs if r.kind != "noise"} <= {f"junior-{i}" for i in range(1, 9)}
    ideas = [r.description for r in proposals]
    assert len(ideas) == len(set(ideas))  # the chief knows everything that was assigned
    # one chief thinking 100 s per assignment is the bottleneck: the k-th proposal cannot start before k
    # assignments and the junior's 30 s of implementing it, after the noise floor
    start = max(r.ended for r in result.runs if r.kind == "noise")
    starts = sorted(r.started for r in proposals)
    assert all(t >= start + 100 * (k + 1) + 30 - 1e-6 for k, t in enumerate(starts))
    assert result.merges and len({r.agent for r in proposals}) == 8


def test_at_a_standup_everyone_hears_what_was_tried_and_tries_it_less_often():
    landscape = Landscape(seed=5, n_ideas=400)
    solo = VirtualLab.from_org(_org(RESEARCHERS.format(name="solo")), landscape, slots=8,
                               max_experiments=300).run()
    standup_org = _org(RESEARCHERS.format(name="standup") + '[[processes]]\nkind = "standup"\nevery_experiments = 8\n')
    standup = VirtualLab.from_org(standup_org, landscape, slots=8, max_experiments=300).run()
    assert solo.standups == 0 and standup.standups == pytest.approx(len(_proposals(standup)) / 8, abs=1)

    def repeats(result) -> int:  # proposals of an idea someone already proposed
        counts = Counter(r.description for r in _proposals(result))
        return sum(n - 1 for n in counts.values())

    assert repeats(standup) < repeats(solo) / 2
    assert len(standup.runs) == len(solo.runs) == 300  # equal compute: nobody stops early


def test_juniors_without_a_lead_are_a_clear_error():
    text = CHIEF.replace("submits = false\n", "")
    with pytest.raises(ConfigError, match="no role assigns them"):
        VirtualLab.from_org(_org(text), Landscape(seed=0), max_experiments=10)


def test_a_lucky_incumbent_measured_once_is_run_again_until_a_real_gain_can_beat_it():
    landscape = Landscape(seed=1, n_ideas=400)
    org = _org(RESEARCHERS.format(name="many").replace("count = 8", "count = 64"))
    result = VirtualLab.from_org(org, landscape, slots=64, max_hours=3, seed_offset=1000).run()
    kinds = Counter(r.kind for r in result.runs)
    assert kinds["incumbent"] > 0  # fresh runs of incumbents measured by fewer runs than their challengers
    # merges go on through the run: a lucky value of main does not stop the organization
    assert len(result.merges) >= 5 and result.merges[-1][0] > 1.5 * 3600
    true_gains = [b - a for (_, _, b), (_, _, a) in zip(result.merges, result.merges[1:], strict=False)]
    assert sum(g > 0 for g in true_gains) >= 0.8 * len(true_gains)
