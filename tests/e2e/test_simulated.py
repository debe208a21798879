"""The simulated task through the real lab (git commits, subprocesses, SQLite) and through the virtual lab."""

from __future__ import annotations

import tomllib
from pathlib import Path

from researchorg.lab.program import Program
from researchorg.lab.scheduler import detect_slots
from researchorg.org.runtime import Limits, Runtime
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import SimRole, VirtualLab
from tests.conftest import cli

ORG = '''name = "sim-solo"
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


def _real_and_virtual(tmp_path, policy: str, runs: int):
    org = tmp_path / f"org-{policy}.toml"
    org.write_text(ORG.format(policy=policy))
    program = Program.init(tmp_path / policy, "simulated", org_file=org)
    Runtime(program, slots=detect_slots(1)).run(Limits(max_experiments=runs))
    landscape = Landscape(**tomllib.loads((program.root / "landscape.toml").read_text()))
    virtual = VirtualLab(landscape, [SimRole(quality=0.3, think_seconds=0, seed=4)], policy=policy, noise_runs=3,
                         verify_runs=2, task_seed=program.task.seed, max_experiments=runs).run()
    return program, virtual


def test_one_landscape_through_the_real_and_the_virtual_lab_decides_alike(tmp_path):
    for policy in ("noise-aware", "greedy"):
        program, virtual = _real_and_virtual(tmp_path, policy, 24)
        rows = program.ledger.experiments()
        real = [(e.kind, e.description, e.seed, e.status) for e in rows]
        assert len(real) == 24 and real == [(r.kind, r.description, r.seed, r.status) for r in virtual.runs], policy
        assert {"noise", "proposal", "verify"} <= {e.kind for e in rows} and {"keep", "discard", "crash"} <= \
            {e.status for e in rows}  # this landscape exercises crashes, discards and verifications
        if policy == "noise-aware":
            assert any(e.kind == "rerun" for e in rows)  # and a borderline candidate re-run
        for e, r in zip(rows, virtual.runs, strict=True):  # the harness prints 6 decimals
            assert (e.metric is None and r.metric is None) or abs(e.metric - r.metric) < 1e-6
        # the same decisions, the same merges and the same verifications
        kept = [e.id for e in program.ledger.experiments() if e.status == "keep"]
        assert kept == [d.run for d in virtual.decisions if d.keep]
        assert [m["experiment_id"] for m in program.ledger.merges()] == [run for _, run, _ in virtual.merges]
        assert [(v["experiment_id"], v["reproduced"]) for v in program.ledger.verifications()] == \
            [(run, ok) for run, ok, _ in virtual.verifications]
        reproduced = sum(ok for _, ok, _ in virtual.verifications)
        assert program.ledger.reproduction("role") == program.ledger.reproduction("agent") == \
            {"researcher": (reproduced, len(virtual.verifications))}
        assert abs(program.ledger.noise_floor()["sigma"] - virtual.noise_sigma) < 1e-5


def test_a_simulated_chief_in_the_real_lab_is_one_clear_error_and_runs_nothing(tmp_path):
    org = tmp_path / "chief.toml"
    org.write_text((Path(__file__).parents[2] / "examples" / "bench" / "scale" / "chief-64.toml").read_text())
    cli("init", str(tmp_path / "lab"), "--task", "simulated", "--org", str(org))
    proc = cli("run", str(tmp_path / "lab"), "--max-experiments", "3", check=False)
    assert proc.returncode == 1
    assert "roles.chief: submits = false makes it a lead, and the 'simulated' backend cannot lead" in proc.stderr
    assert Program(tmp_path / "lab").ledger.experiments() == []
