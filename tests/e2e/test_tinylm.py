"""tinylm for real: PyTorch training with a 2-second budget through the command line."""

from __future__ import annotations

import json

import pytest

from researchorg import Program
from tests.conftest import cli

pytest.importorskip("torch")


@pytest.mark.slow
def test_init_and_run_three_tinylm_experiments(tmp_path):
    directory = tmp_path / "lm"
    out = cli("init", str(directory), "--task", "tinylm", "--budget", "2").stdout
    assert "task tinylm, 2 s budget" in out
    org = directory / "org.toml"  # the default org, with a 2-seed noise floor to keep the test short
    org.write_text(org.read_text().replace("noise_runs = 5", "noise_runs = 2"))
    run = cli("run", str(directory), "--max-experiments", "5").stdout
    assert "reached --max-experiments" in run and "progress.png" in run and "noise floor" in run
    program = Program(directory)
    assert [e.kind for e in program.ledger.experiments()][:2] == ["noise", "noise"]
    assert program.ledger.noise_floor().sigma >= 0
    experiments = program.ledger.experiments(kind="proposal")
    assert len(experiments) >= 2 and experiments[0].description == "baseline"
    assert all(e.status in ("keep", "discard") for e in experiments), [e.reason for e in experiments]
    baseline = experiments[0]
    assert 2.0 < baseline.metric < 8.0  # bits per byte of a barely trained byte model
    for key in ("training_seconds", "peak_mem_mb", "steps", "tokens", "flops"):  # measured by the harness
        assert isinstance(baseline.summary[key], float), key
    assert baseline.summary["flops"] == 6 * baseline.summary["num_params"] * baseline.summary["tokens"]
    decided = [e for e in experiments[1:] if e.summary.get("decision", {}).get("confounds")]
    assert decided and "params" in decided[0].summary["decision"]["text"]  # confounds beside the gain
    assert len(baseline.summary["corpus_hash"]) == 16
    assert baseline.training_seconds >= 2.0 and baseline.peak_mem_mb > 0
    assert baseline.hardware.startswith("cpu:") and baseline.seed == 42
    # a tuner experiment is a real edit of train.py's knobs, visible in git
    assert "train.py" in experiments[1].diff and experiments[1].description != "baseline"
    rows = json.loads(cli("results", str(directory), "--format", "json").stdout)
    assert [r["metric"] for r in rows] == [e.metric for e in program.ledger.experiments()]
    assert program.results_path.read_text().count("\n") == 6
    assert program.plot_path.stat().st_size > 10_000
    status = cli("status", str(directory)).stdout
    assert "agents/researcher" in status and "baseline" in status
