"""Export to MLflow, through MLflow's own client (the optional extra `researchorg[mlflow]`, mlflow-skinny).

One MLflow run per finished experiment, in an MLflow experiment named after the program:

- params: the tuner's knobs where the proposal has them, else the change (its description); and the seed;
- metrics: the task's metric, training and total seconds, peak memory, and every number of the run's summary
  (steps, tokens, ...);
- tags: agent, status, kind, commit, parent commit, hardware, slot, the run it measures again, why it ended so
  and the decision's rule, and `researchorg.experiment` (its number), by which a later export skips what is
  already there;
- artifacts: the diff (`diff.patch`) and the log.

Start and end times are the experiment's; status FINISHED (keep, discard, measured), FAILED (crash, timeout,
invalid) or KILLED (interrupted). A run still running is left for a later export.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from researchorg.errors import ResearchOrgError
from researchorg.ledger.protocol import Ledger
from researchorg.ledger.records import FINISHED_OK, Experiment

ID_TAG = "researchorg.experiment"
_STATUS = {"crash": "FAILED", "timeout": "FAILED", "invalid": "FAILED", "interrupted": "KILLED"}
PARAM_CHARS = 6000  # MLflow's limit on a param's value


@dataclass
class MlflowExport:
    uri: str
    experiment: str
    experiment_id: str
    exported: int
    skipped: int  # already there from an earlier export
    running: int  # not finished yet: left for a later export


def _name(key: str) -> str:
    """A metric, param or tag name MLflow accepts (letters, digits, _ - . space / only)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:250] or "_"


def _client(uri: str):
    import logging

    for noisy in ("mlflow", "alembic"):  # its store's migrations talk at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ResearchOrgError("the MLflow export needs MLflow's client: pip install 'researchorg[mlflow]' "
                               "(mlflow-skinny)") from None
    return MlflowClient(tracking_uri=uri)


def export_mlflow(ledger: Ledger, metric: str, uri: str, experiment: str | None = None) -> MlflowExport:
    """Write every finished experiment of `ledger` not yet in the MLflow store at `uri` as an MLflow run."""
    from mlflow.entities import Metric, Param

    client = _client(uri)
    program = ledger.program()
    name = experiment or f"researchorg/{program.name}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(
        name, artifact_location=_artifacts_for(uri), tags={"researchorg.task": program.task,
                                                           "researchorg.metric": metric})
    done = _exported(client, experiment_id)
    exported = skipped = running = 0
    after = 0
    while page := ledger.experiments(after=after, limit=200):
        after = page[-1].id
        for e in page:
            if e.status == "running":
                running += 1
                continue
            if str(e.id) in done:
                skipped += 1
                continue
            _export_one(client, experiment_id, e, metric, Metric, Param)
            exported += 1
    return MlflowExport(uri, name, experiment_id, exported, skipped, running)


def _artifacts_for(uri: str) -> str | None:
    """Where a local store's artifacts go: beside its database (MLflow's default is ./mlruns of wherever the
    export runs). A server (http) or a file store decides for itself."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).resolve()
        return (db.parent / f"{db.stem}-artifacts").as_uri()
    return None


def _exported(client, experiment_id: str) -> set[str]:
    ids, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        ids.update(r.data.tags.get(ID_TAG) for r in page)
        token = page.token
        if not token:
            return ids


def _export_one(client, experiment_id: str, e: Experiment, metric: str, Metric, Param) -> None:
    start = int(e.started_at * 1000)
    end = int((e.ended_at or e.started_at) * 1000)
    tags = {ID_TAG: str(e.id), "agent": e.agent, "status": e.status, "kind": e.kind, "commit": e.commit,
            "parent_commit": e.parent_commit, "hardware": e.hardware, "slot": e.slot, "seed": str(e.seed),
            "mlflow.note.content": e.description + (f"\n\n{e.hypothesis}" if e.hypothesis else "")}
    if e.rerun_of is not None:
        tags["rerun_of"] = str(e.rerun_of)
    if e.reason:
        tags["reason"] = e.reason.splitlines()[0][:5000]
    rule = (e.summary.get("decision") or {}).get("rule")
    if rule:
        tags["decision"] = str(rule)[:5000]
    run = client.create_run(experiment_id, start_time=start, tags=tags,
                            run_name=f"#{e.id} {e.description}"[:250])
    knobs = e.proposal.get("params") if isinstance(e.proposal.get("params"), dict) else None
    params: dict[str, Any] = dict(knobs) if knobs else {"change": e.description or "(none)"}
    params["seed"] = e.seed
    numbers: dict[str, float] = {}
    if e.status in FINISHED_OK and e.metric is not None:
        numbers[metric] = e.metric
    for key, value in e.summary.items():
        if key != metric and isinstance(value, int | float) and not isinstance(value, bool):
            numbers[key] = value
    for key, value in (("training_seconds", e.training_seconds), ("total_seconds", e.total_seconds),
                       ("peak_mem_mb", e.peak_mem_mb)):
        if value is not None:
            numbers[key] = value
    client.log_batch(run.info.run_id, metrics=[Metric(_name(k), float(v), end, 0) for k, v in numbers.items()
                                               if math.isfinite(float(v))],
                     params=[Param(_name(k), str(v)[:PARAM_CHARS]) for k, v in params.items()])
    if e.diff:
        client.log_text(run.info.run_id, e.diff, "diff.patch")
    if e.log_path and Path(e.log_path).is_file():
        client.log_artifact(run.info.run_id, e.log_path)
    client.set_terminated(run.info.run_id, status=_STATUS.get(e.status, "FINISHED"), end_time=end)
