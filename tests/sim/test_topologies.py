"""Topologies in the simulated world, read from org files as the real lab reads them: solo, chief, standup;
and the incumbent measured by its unselected runs, re-run when it has fewer runs than the candidate."""

from __future__ import annotations

import tomllib
from collections import Counter

import pytest

from researchorg import ConfigError, Landscape, Limits, OrgSpec, Runtime, SimWorld

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


def _run(org: OrgSpec, landscape: Landscape, slots: int, **limits) -> SimWorld:
    world = SimWorld(landscape, org)
    Runtime(world, slots=world.default_slots(slots), seed_offset=limits.pop("seed_offset", 0)).run(Limits(**limits))
    return world


def _proposals(world: SimWorld) -> list:
    return world.ledger.experiments(kind="proposal")


def test_a_chief_assigns_ideas_never_twice_thinks_before_each_turn_and_only_juniors_run():
    world = _run(_org(CHIEF), Landscape(seed=2, n_ideas=200), slots=8, max_experiments=150)
    proposals = _proposals(world)
    assert proposals and {e.agent for e in world.ledger.experiments() if e.kind != "noise"} <= \
        {f"junior-{i}" for i in range(1, 9)}
    ideas = [e.description for e in proposals]
    assert len(ideas) == len(set(ideas))  # the chief knows everything that was assigned
    assignments = {m.id: m for m in world.ledger.messages(kind="assignment")}
    assert all(e.proposal["assignment"] in assignments and e.proposal["assigned_by"] == "chief" for e in proposals)
    # one chief thinking 100 s before each of its turns is the bottleneck; a junior implements for 30 s
    turns = sorted({m.at for m in assignments.values()})
    assert all(b - a >= 100 - 1e-6 for a, b in zip(turns, turns[1:], strict=False))
    assert all(e.started_at >= assignments[e.proposal["assignment"]].at + 30 - 1e-6 for e in proposals)
    merges = world.ledger.merges()
    assert merges and {m.by for m in merges} == {"chief"} and len({e.agent for e in proposals}) == 8


def test_at_a_standup_everyone_hears_what_was_tried_and_tries_it_less_often():
    landscape = Landscape(seed=5, n_ideas=400)
    solo = _run(_org(RESEARCHERS.format(name="solo")), landscape, slots=8, max_experiments=300)
    standup_org = _org(RESEARCHERS.format(name="standup") + '[[processes]]\nkind = "standup"\nevery_experiments = 8\n')
    standup = _run(standup_org, landscape, slots=8, max_experiments=300)
    digests = standup.ledger.messages(kind="digest")
    assert not solo.ledger.messages(kind="digest")
    assert len(digests) == pytest.approx(len(_proposals(standup)) / 8, abs=1)

    def repeats(world: SimWorld) -> int:  # proposals of an idea someone already proposed
        counts = Counter(e.description for e in _proposals(world))
        return sum(n - 1 for n in counts.values())

    assert repeats(standup) < repeats(solo) / 2
    assert len(standup.ledger.experiments()) == len(solo.ledger.experiments()) == 300  # nobody stops early


def test_juniors_without_a_lead_are_a_clear_error():
    text = CHIEF.replace("submits = false\n", "")
    with pytest.raises(ConfigError, match="no role assigns them"):
        _run(_org(text), Landscape(seed=0), slots=1, max_experiments=10)


def test_a_lucky_incumbent_measured_once_is_run_again_until_a_real_gain_can_beat_it():
    org = _org(RESEARCHERS.format(name="many").replace("count = 8", "count = 64"))
    world = _run(org, Landscape(seed=1, n_ideas=400), slots=64, max_hours=3, seed_offset=1000)
    kinds = Counter(e.kind for e in world.ledger.experiments())
    assert kinds["incumbent"] > 0  # fresh runs of incumbents measured by fewer runs than their challengers
    # merges go on through the run: a lucky value of main does not stop the organization
    merges = world.ledger.merges()
    assert len(merges) >= 5 and merges[-1].at > 1.5 * 3600
    values = [world.true_value(m.after) for m in merges]
    true_gains = [a - b for a, b in zip(values, values[1:], strict=False)]
    assert sum(g > 0 for g in true_gains) >= 0.8 * len(true_gains)
