"""tinylm for real: PyTorch training with a 6-second budget through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from researchorg import Program
from tests.conftest import cli

pytest.importorskip("torch")


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
@pytest.mark.slow
def test_demo_into_a_log_file_runs_four_tinylm_experiments(tmp_path):
    directory = tmp_path / "lm"
    log = tmp_path / "demo.log"
    with open(log, "w") as out:  # `researchorg demo > demo.log`: no terminal
        proc = subprocess.run([sys.executable, "-m", "researchorg", "demo", str(directory), "--budget", "6",
                               "--max-experiments", "4"], stdout=out, stderr=subprocess.STDOUT)
    run = log.read_text()
    assert proc.returncode == 0, run
    assert "task tinylm, 6 s budget" in run and "rigor first: 2 noise-floor runs" in run  # 4 runs leave room
    assert len([line for line in run.splitlines() if line.startswith("[") and "/4] #" in line]) == 4, run
    assert "reached --max-experiments" in run and "progress.png" in run and "noise floor: val_bpb" in run
    program = Program(directory)
    assert [e.kind for e in program.ledger.experiments()][:2] == ["noise", "noise"]
    assert program.ledger.noise_floor().sigma >= 0
    baseline = program.ledger.experiments(kind="noise")[0]
    experiments = program.ledger.experiments(kind="proposal")
    # after the floor: proposals, and the runs that decide one (a borderline one's re-runs, the incumbent's) or
    # verify it when it is kept first (then only one proposal may fit)
    assert {e.kind for e in program.ledger.experiments()[2:]} <= {"proposal", "rerun", "incumbent", "verify"}
    assert len(experiments) >= 1 and "baseline" not in [e.description for e in experiments]  # measured by the floor
    assert all(e.status in ("keep", "discard") for e in experiments), [e.reason for e in experiments]
    assert 2.0 < baseline.metric < 8.0  # bits per byte of a barely trained byte model
    for key in ("training_seconds", "peak_mem_mb", "steps", "tokens", "flops"):  # measured by the harness
        assert isinstance(baseline.summary[key], float), key
    assert baseline.summary["flops"] == 6 * baseline.summary["num_params"] * baseline.summary["tokens"]
    decided = [e for e in experiments if e.summary.get("decision", {}).get("confounds")]
    assert decided and "params" in decided[0].summary["decision"]["text"]  # confounds beside the gain
    assert len(baseline.summary["corpus_hash"]) == 16
    assert baseline.training_seconds >= 2.0 and baseline.peak_mem_mb > 0
    assert baseline.hardware.startswith("cpu:") and baseline.seed != 42  # the noise floor takes fresh seeds
    # a tuner experiment is a real edit of train.py's knobs, visible in git
    assert "train.py" in experiments[0].diff
    rows = json.loads(cli("results", str(directory), "--format", "json").stdout)
    assert [r["metric"] for r in rows] == [e.metric for e in program.ledger.experiments()]
    assert program.results_path.read_text().count("\n") == 5  # the header and the four runs
    assert program.plot_path.stat().st_size > 10_000
    status = cli("status", str(directory)).stdout
    assert "agents/researcher" in status and "baseline" in status
