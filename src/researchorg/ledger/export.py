"""Exports of the ledger: autoresearch's results.tsv and JSON.

results.tsv follows autoresearch's format to the letter (tab-separated; header
`commit	<metric>	memory_gb	status	description`; 7-character commits;
`0.000000` and `0.0` for runs without a result; statuses keep, discard and
crash), so its analysis notebook reads ours. Each row's description says what
the row is:

- a proposal: its description, with why it was kept or discarded where that
  is not a plain comparison (e.g. the budget ran out before its re-runs);
- the runs the lab makes as evidence, with their seed: `noise floor of the
  baseline, seed 3` (status keep: the baseline is the code every agent starts
  from), `re-run of #12 (borderline)`, `verification of #12` (the status of
  #12 once decided), `incumbent re-run for #12` (keep: the code #12 was judged
  against), `ablation: ...` (discard);
- a timeout, invalid or interrupted run: crash, with the real status and the
  reason in the description.

JSON carries every field as is.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from researchorg.ledger.records import FINISHED_OK, Experiment

_EVIDENCE = {"noise": "noise floor of the baseline", "rerun": "re-run of #{of} (borderline)",
             "verify": "verification of #{of}", "incumbent": "incumbent re-run for #{of}", "ablation": "ablation"}
_PLAIN_DECISION = ("gain >", "no gain", "same code", "better than", "not better", "first result")  # the status says it


def _row(e: Experiment, statuses: dict[int, str]) -> tuple[str, str]:
    """A run's results.tsv status and description."""
    if e.status not in FINISHED_OK:
        text = f"[{e.status}] {e.description}" if e.status != "crash" else e.description
        if e.reason:
            text = f"{text} ({e.reason.splitlines()[0]})"
        return "crash", text
    if e.status == "measured":
        what = _EVIDENCE.get(e.kind, e.kind).format(of=e.rerun_of)
        status = {"noise": "keep", "incumbent": "keep", "ablation": "discard"}.get(
            e.kind, statuses.get(e.rerun_of, "discard") if statuses.get(e.rerun_of) == "keep" else "discard")
        detail = f": {e.description}" if e.kind == "ablation" else ""
        return status, f"{what}, seed {e.seed}{detail}"
    rule = str((e.summary.get("decision") or {}).get("rule", ""))
    return e.status, f"{e.description} ({rule})" if rule and not rule.startswith(_PLAIN_DECISION) else e.description


def results_tsv(experiments: list[Experiment], metric: str) -> str:
    rows = ResultRows(metric)
    rows.update(experiments)
    return rows.text()


class ResultRows:
    """results.tsv row by row, for a run that rewrites it after each experiment: `update` with what finished
    since the last time (the rows of the runs whose status follows one of those are made anew by `experiment`),
    so a run of thousands of experiments does not load them all each time. Rows are in id order."""

    def __init__(self, metric: str):
        self.header = f"commit\t{metric}\tmemory_gb\tstatus\tdescription"
        self.rows: dict[int, str] = {}
        self.statuses: dict[int, str] = {}
        self.followers: dict[int, set[int]] = {}  # an experiment -> its evidence runs whose row shows its status
        self.ended: float | None = None  # the latest end the rows hold (the ledger's clock)

    def update(self, experiments: list[Experiment], experiment: Callable[[int], Experiment] | None = None) -> None:
        """Take each of `experiments` (in id order), and make anew, through `experiment(id)`, the rows that show
        the status of one of them."""
        for e in experiments:
            self.statuses[e.id] = e.status
        for e in experiments:
            if e.ended_at is not None:
                self.ended = e.ended_at if self.ended is None else max(self.ended, e.ended_at)
            if e.status == "running":
                self.rows.pop(e.id, None)
                continue
            self.rows[e.id] = self._line(e)
            if e.status == "measured" and e.rerun_of is not None:
                self.followers.setdefault(e.rerun_of, set()).add(e.id)
        if experiment is not None:
            taken = {e.id for e in experiments}
            for follower in sorted({f for e in experiments for f in self.followers.get(e.id, ())} - taken):
                self.rows[follower] = self._line(experiment(follower))

    def text(self) -> str:
        return "\n".join([self.header, *(self.rows[i] for i in sorted(self.rows))]) + "\n"

    def _line(self, e: Experiment) -> str:
        ok = e.status in FINISHED_OK and e.metric is not None
        value = f"{e.metric:.6f}" if ok else "0.000000"
        memory = f"{(e.peak_mem_mb or 0.0) / 1024:.1f}" if ok else "0.0"
        status, description = _row(e, self.statuses)
        description = " ".join(description.replace("\t", " ").split())
        return f"{e.commit[:7]}\t{value}\t{memory}\t{status}\t{description}"


def results_json(experiments: list[Experiment]) -> str:
    rows = [{k: v for k, v in e.to_dict().items() if k != "diff"} for e in experiments]
    return json.dumps(rows, indent=2)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new text, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
