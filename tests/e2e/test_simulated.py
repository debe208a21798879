"""One engine, two worlds: the simulated task through the real lab (git commits, subprocesses, SQLite, wall
time) and through the simulated world (sets of ideas, virtual time, memory) makes the same runs, decisions,
verifications, merges and messages, for solo, chief and standup organizations."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from researchorg import Landscape, Limits, Program, Runtime, SimWorld, detect_slots, load_org
from researchorg.task import find_task
from tests.conftest import cli

SOLO = '''name = "sim-solo"
policy = "{policy}"
[rigor]
noise_runs = 3
[[roles]]
name = "researcher"
backend = "simulated"
idea_quality = 0.3
seed = 4
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
runs = 2
'''
CHIEF = '''name = "sim-chief"
[rigor]
noise_runs = 3
[[roles]]
name = "chief"
backend = "simulated"
submits = false
merges = true
idea_quality = 0.6
seed = 1
[[roles]]
name = "junior"
count = 2
backend = "simulated"
waits_for_assignment = true
[[processes]]
kind = "verify"
runs = 2
'''
STANDUP = '''name = "sim-standup"
[rigor]
noise_runs = 3
[[roles]]
name = "researcher"
count = 2
backend = "simulated"
idea_quality = 0.4
seed = 7
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
runs = 2
[[processes]]
kind = "standup"
every_experiments = 3
'''


def _slow_task(tmp_path: Path, seconds: float) -> Path:
    """The simulated task whose real runs take `seconds`: with several agents on one slot, the lab's own work
    after a run (decide, record, merge, assign) then ends before the next run does, as it does in virtual
    time, where a run takes minutes; so both worlds see events in the same order."""
    task = tmp_path / "slow-simulated"
    shutil.copytree(find_task("simulated"), task)
    harness = task / "harness.py"
    harness.write_text(f"import time\ntime.sleep({seconds})\n" + harness.read_text())
    return task


def _both_worlds(tmp_path: Path, name: str, org_text: str, runs: int,
                 real_seconds: float = 0.0) -> tuple[Program, SimWorld]:
    org = tmp_path / f"{name}.toml"
    org.write_text(org_text)
    task = str(_slow_task(tmp_path, real_seconds)) if real_seconds else "simulated"
    program = Program.init(tmp_path / name, task, org_file=org)
    Runtime(program, slots=detect_slots(1)).run(Limits(max_experiments=runs))
    landscape = Landscape(**tomllib.loads((program.root / "landscape.toml").read_text()))
    world = SimWorld(landscape, load_org(org))
    Runtime(world).run(Limits(max_experiments=runs))
    return program, world


def _same(program: Program, world: SimWorld) -> list:
    """Everything both ledgers recorded, compared field by field where the worlds agree by construction."""
    real, virtual = program.ledger, world.ledger

    def runs(ledger):
        return [(e.id, e.agent, e.kind, e.description, e.seed, e.status, e.metric, e.rerun_of,
                 (e.summary.get("decision") or {}).get("rule"), e.proposal.get("assignment"))
                for e in ledger.experiments()]

    assert runs(real) == runs(virtual)
    assert [(v.experiment_id, v.agent, v.runs, v.mean, v.reproduced) for v in real.verifications()] == \
        [(v.experiment_id, v.agent, v.runs, v.mean, v.reproduced) for v in virtual.verifications()]
    assert [(m.experiment_id, m.agent, m.by, m.how, m.metric) for m in real.merges()] == \
        [(m.experiment_id, m.agent, m.by, m.how, m.metric) for m in virtual.merges()]
    assert [(m.id, m.sender, m.recipient, m.kind, m.body, m.experiment_id, m.data) for m in real.messages()] == \
        [(m.id, m.sender, m.recipient, m.kind, m.body, m.experiment_id, m.data) for m in virtual.messages()]
    assert real.noise_floor().sigma == virtual.noise_floor().sigma
    assert real.reproduction("role") == virtual.reproduction("role")
    return real.experiments()


@pytest.mark.parametrize("policy", ["explore-gate", "noise-aware", "greedy",
                                    pytest.param("screen-gate", marks=pytest.mark.benchmark)])  # 45 s: .ci/run
def test_a_solo_org_decides_alike_in_both_worlds(tmp_path, policy):
    # screen-gate's short-budget floor is amortized under matched machine load: real runs that last long enough
    # that the lab's own work beside them reads as the same light load on every run (as in virtual time)
    program, world = _both_worlds(tmp_path, policy, SOLO.format(policy=policy), 24,
                                  real_seconds=0.5 if policy == "screen-gate" else 0.0)
    rows = _same(program, world)
    if policy == "screen-gate":  # proposals train for a quarter of the budget (the harness is told so) and cost it
        assert {e.fidelity for e in rows if e.kind == "proposal"} == {0.25} and len(rows) > 24
        assert 23.0 <= program.ledger.spent(("interrupted",)) <= 24.0
    else:
        assert len(rows) == 24
    assert {"noise", "proposal", "verify"} <= {e.kind for e in rows}
    assert {"keep", "discard", "crash"} <= {e.status for e in rows}  # this landscape exercises crashes too
    assert program.ledger.merges()
    if policy == "noise-aware":
        assert any(e.kind == "rerun" for e in rows)  # and a borderline candidate re-run


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_chief_and_its_juniors_work_alike_in_both_worlds(tmp_path):
    program, world = _both_worlds(tmp_path, "chief", CHIEF, 24, real_seconds=0.5)
    rows = _same(program, world)
    proposals = [e for e in rows if e.kind == "proposal"]
    assert {e.agent for e in proposals} == {"junior-1", "junior-2"}
    assert all(e.proposal.get("assigned_by") == "chief" for e in proposals)
    kinds = {m.kind for m in program.ledger.messages()}
    assert {"assignment", "report", "verify", "merge"} <= kinds
    assert program.ledger.merges() and {m.by for m in program.ledger.merges()} == {"chief"}


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_standup_org_hears_the_same_digests_in_both_worlds(tmp_path):
    program, world = _both_worlds(tmp_path, "standup", STANDUP, 24, real_seconds=0.5)
    _same(program, world)
    digests = program.ledger.messages(kind="digest")
    assert len(digests) >= 2 and all(m.data["experiments"] for m in digests)


def test_a_simulated_chief_leads_in_the_real_lab_from_the_command_line(tmp_path):
    org = tmp_path / "chief.toml"
    org.write_text(CHIEF)
    cli("init", str(tmp_path / "lab"), "--task", "simulated", "--org", str(org))
    cli("run", str(tmp_path / "lab"), "--max-experiments", "8")
    experiments = Program(tmp_path / "lab").ledger.experiments()
    assert len(experiments) == 8 and any(e.proposal.get("assigned_by") == "chief" for e in experiments)
