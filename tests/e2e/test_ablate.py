"""`researchorg ablate`: leave-one-out contributions of the merged changes, on the simulated task (known truth)."""

from __future__ import annotations

import tomllib

import pytest

from researchorg import Landscape, Limits, Program, Runtime, detect_slots
from researchorg.agents.simulated import config_of
from researchorg.world.git import Git
from tests.conftest import cli

ORG = '''name = "greedy-merger"
policy = "greedy"
[rigor]
noise_runs = 4
[[roles]]
name = "researcher"
backend = "simulated"
idea_quality = 0.5
seed = 2
[[processes]]
kind = "merge"
'''


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_ablate_finds_which_merged_changes_matter_and_prune_proposes_a_branch(tmp_path):
    org = tmp_path / "org.toml"
    org.write_text(ORG)
    program = Program.init(tmp_path / "lab", "simulated", org_file=org)
    Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=30))
    merges = program.ledger.merges()
    assert len(merges) >= 3
    main = Git(program.root).head_of("main")

    out = cli("ablate", str(program.root), "--repeats", "3", "--slots", "2", "--prune").stdout
    assert "leave-one-out ablation" in out and "ablation.png" in out and (program.root / "ablation.png").is_file()
    event = [e for e in program.ledger.events() if e.kind == "ablation"][-1].data
    assert len(event["changes"]) == len(merges)
    # judged against the landscape's truth, each change's true leave-one-out contribution to main: one well
    # above the measurement's standard error is found to matter, a null one not
    landscape = Landscape(**tomllib.loads((program.root / "landscape.toml").read_text()))
    code = config_of(Git(program.root)("show", "main:ideas.py"))
    judged = 0
    for change in event["changes"]:
        if not change["removable"]:
            continue
        idea = program.ledger.experiment(change["experiment"]).description.split()[1]
        truth = landscape.true_gain(code, code - {idea})
        if truth == 0.0:
            assert change["matters"] is False, (idea, change)
        if truth > 3 * change["se"]:
            assert change["matters"] is True, (idea, truth, change)
            judged += 1
    assert judged >= 1
    runs = program.ledger.experiments(kind="ablation")
    assert runs and all(e.agent == "ablate" and e.status in ("measured", "crash") for e in runs)  # 3% crash
    # main never moves; the proposed branch leaves out exactly the changes that did not matter
    assert Git(program.root).head_of("main") == main
    if any(c["matters"] is False for c in event["changes"]):
        pruned = Git(program.root)("show", "pruned:ideas.py")
        for change in event["changes"]:
            idea = program.ledger.experiment(change["experiment"]).description.split()[1]
            assert (f"{idea} = 1" in pruned) == (change["matters"] is not False), idea


def test_ablate_without_merges_is_one_clear_error(tmp_path):
    org = tmp_path / "org.toml"
    org.write_text(ORG)
    Program.init(tmp_path / "lab", "simulated", org_file=org)
    proc = cli("ablate", str(tmp_path / "lab"), check=False)
    assert proc.returncode == 1 and "nothing merged into main yet" in proc.stderr
