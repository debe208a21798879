"""Exports to the trackers researchers use, read back through the trackers' own clients: MLflow (a local SQLite
tracking store) and Optuna (a storage optuna-dashboard opens)."""

from __future__ import annotations

import optuna
import pytest

from researchorg import Program
from researchorg.agents.tuner import export_optuna
from researchorg.ledger.mlflow import export_mlflow
from tests.conftest import cli

ORG = '''name = "export"
[rigor]
noise_runs = 2
[[roles]]
name = "researcher"
count = 2
backend = "{backend}"
[[processes]]
kind = "merge"
'''


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Program:
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "org.toml").write_text(ORG.format(backend="tuner"))
    program = Program.init(tmp / "program", "simulated", org_file=tmp / "org.toml")
    cli("run", str(program.root), "--max-experiments", "14")
    return program


def test_export_mlflow_round_trips_every_experiment(program, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = cli("export", str(program.root), "--mlflow", cwd=tmp_path).stdout  # sqlite:///mlflow.db in the cwd
    experiments = program.ledger.experiments()
    assert f"{len(experiments)} runs written, 0 already there" in out
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(f"researchorg/{program.ledger.program().name}")
    runs = {r.data.tags["researchorg.experiment"]: r for r in client.search_runs([found.experiment_id],
                                                                                max_results=1000)}
    assert len(runs) == len(experiments)
    for e in experiments:
        run = runs[str(e.id)]
        assert run.data.metrics.get("loss") == pytest.approx(e.metric) if e.metric is not None \
            else "loss" not in run.data.metrics
        tags = run.data.tags
        assert (tags["agent"], tags["status"], tags["kind"], tags["commit"], tags["hardware"]) == (
            e.agent, e.status, e.kind, e.commit, e.hardware)
        assert run.info.status == ("FINISHED" if e.status in ("keep", "discard", "measured") else "FAILED")
        if e.proposal.get("params"):  # a tuner's trial: its knobs are the params
            assert {k: str(v) for k, v in e.proposal["params"].items()}.items() <= run.data.params.items()
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert ("diff.patch" in artifacts) == bool(e.diff)
        assert any(p.endswith(".log") for p in artifacts)
        assert run.info.start_time == int(e.started_at * 1000)
    again = export_mlflow(program.ledger, "loss", uri)  # nothing twice
    assert (again.exported, again.skipped) == (0, len(experiments))
    assert len(client.search_runs([found.experiment_id], max_results=1000)) == len(experiments)
    assert not (tmp_path / "mlruns").exists()  # its artifacts beside its database, not in the working directory


def test_export_optuna_writes_each_tuners_study_for_optuna_dashboard(program, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    task = program.task
    first = export_optuna(program.ledger.experiments(), task.knobs, "minimize", storage, "program")
    out = cli("export", str(program.root), "--optuna", storage).stdout  # replaces the first
    assert "optuna-dashboard" in out and all(f"Optuna study {name}: {n} trials" in out for name, n in first.items())
    studies = optuna.get_all_study_summaries(storage)
    decided = [e for e in program.ledger.experiments(kind="proposal") if e.status in ("keep", "discard")
               and e.proposal.get("params")]
    assert sum(s.n_trials for s in studies) == len(decided) > 0
    study = optuna.load_study(study_name=studies[0].study_name, storage=storage)
    assert {t.user_attrs["experiment"] for t in study.trials} <= {e.id for e in decided}
    journal = tmp_path / "studies.log"
    assert export_optuna(program.ledger.experiments(), task.knobs, "minimize", str(journal), "program") == first
    assert journal.is_file()


def test_export_says_where_to_and_what_is_missing(program, tmp_path):
    proc = cli("export", str(program.root), check=False)
    assert proc.returncode == 1 and "--mlflow [--tracking-uri URI] or --optuna STORAGE" in proc.stderr
    (tmp_path / "org.toml").write_text(ORG.format(backend="simulated"))
    plain = Program.init(tmp_path / "plain", "simulated", org_file=tmp_path / "org.toml")
    proc = cli("export", str(plain.root), "--optuna", f"sqlite:///{tmp_path / 'x.db'}", check=False)
    assert proc.returncode == 1 and "no tuner trial" in proc.stderr.replace("\n", " ")
