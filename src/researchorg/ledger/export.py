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
- a timeout or invalid run: crash, with the real status and the reason in
  the description;
- an interrupted run (Ctrl-C, a lost slot, stopped before it ran): status
  `interrupted` with empty values, not a crash: it says nothing about its
  code. The notebook counts it apart and leaves it out of its plot;
- where the org merges into the program branch (`on_main` given): `keep` is
  what is on main, as in autoresearch, where a keep advances the branch; a
  run kept on its agent's branch but not on main is `discard`, described
  `[kept, not on main]`;
- a run on a fraction of the budget (screen-gate's screens): its description
  starts with `[25% of the budget]`, since its metric is on another scale.

The first finished measurement of the baseline is the first row, as a keep,
wherever it falls among the runs (the noise floor's runs run beside the first
proposals): autoresearch's notebook takes the first row as the baseline and
needs a keep to plot a best, from the first finished run on. Until the
baseline has been measured, rows with a value wait (a young program's file
holds only its failures), so no other run is ever read as the baseline.

JSON carries every field as is.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TextIO

from researchorg.ledger.protocol import Ledger
from researchorg.ledger.records import FINISHED_OK, Experiment

_EVIDENCE = {"noise": "noise floor of the baseline", "rerun": "re-run of #{of} (borderline)",
             "verify": "verification of #{of}", "incumbent": "incumbent re-run for #{of}", "ablation": "ablation"}
_PLAIN_DECISION = ("gain >", "no gain", "same code", "better than", "not better", "first result")  # the status says it


def _row(e: Experiment, status_of: Callable[[int], str], on_main: frozenset[str] | None = None) -> tuple[str, str]:
    """A run's results.tsv status and description (`status_of(id)`: the status of the run an evidence run is for;
    `on_main`: the trees merged into the program branch, where the org merges)."""
    if e.status == "interrupted":
        return "interrupted", f"{e.description} ({e.reason.splitlines()[0]})" if e.reason else e.description
    if e.status not in FINISHED_OK:
        text = f"[{e.status}] {e.description}" if e.status != "crash" else e.description
        if e.reason:
            text = f"{text} ({e.reason.splitlines()[0]})"
        return "crash", text
    if e.status == "measured":
        what = _EVIDENCE.get(e.kind, e.kind).format(of=e.rerun_of)
        status = {"noise": "keep", "incumbent": "keep", "ablation": "discard"}.get(
            e.kind, "keep" if e.rerun_of is not None and status_of(e.rerun_of) == "keep" else "discard")
        detail = f": {e.description}" if e.kind == "ablation" else ""
        return status, f"{what}, seed {e.seed}{detail}"
    rule = str((e.summary.get("decision") or {}).get("rule", ""))
    text = f"{e.description} ({rule})" if rule and not rule.startswith(_PLAIN_DECISION) else e.description
    if e.status == "keep" and on_main is not None and e.tree not in on_main:
        return "discard", f"[kept, not on main] {text}"
    return e.status, text


def _line(e: Experiment, status_of: Callable[[int], str], status: str | None = None,
          on_main: frozenset[str] | None = None) -> str:
    """`e`'s row; `status` in place of the one its record gives (the baseline's row is a keep)."""
    ok = e.status in FINISHED_OK and e.metric is not None
    empty = e.status == "interrupted"  # not a result of its code: no value, and not the notebook's 0.0 crash
    value = f"{e.metric:.6f}" if ok else "" if empty else "0.000000"
    memory = f"{(e.peak_mem_mb or 0.0) / 1024:.1f}" if ok else "" if empty else "0.0"
    recorded, description = _row(e, status_of, on_main)
    status = status or recorded
    if e.fidelity < 1.0:
        description = f"[{e.fidelity:.0%} of the budget] {description}"
    description = " ".join(description.replace("\t", " ").split())
    return f"{e.commit[:7]}\t{value}\t{memory}\t{status}\t{description}\n"


def _header(metric: str) -> str:
    return f"commit\t{metric}\tmemory_gb\tstatus\tdescription\n"


def _baseline_line(first: Experiment | None) -> str:
    """The row of the first finished measurement of the baseline, as a keep (autoresearch's first row: its
    notebook takes the first row as the baseline and needs a keep to plot a best)."""
    return "" if first is None else _line(first, lambda _id: "keep", status="keep")


def _first_finished(runs: list[Experiment]) -> Experiment | None:
    """The run that finished first (the first row stays the same as later runs of the baseline end)."""
    return min(runs, key=lambda e: (e.ended_at or float("inf"), e.id), default=None)


def _written(e: Experiment, first: Experiment | None, baseline_tree: str | None) -> bool:
    """Whether `e` has a row after the first: not while running, and a value only once the baseline has one."""
    if e.status == "running" or (first is not None and e.id == first.id):
        return False
    return not (baseline_tree and first is None and e.status in FINISHED_OK and e.metric is not None)


def results_tsv(experiments: list[Experiment], metric: str, baseline_tree: str | None = None,
                on_main: frozenset[str] | None = None) -> str:
    """results.tsv of `experiments` (in id order, but the first finished run of the code `baseline_tree` first;
    a run still running has no row). `on_main`: the trees merged into main, where the org merges."""
    statuses = {e.id: e.status for e in experiments}
    first = _first_finished([e for e in experiments if baseline_tree and e.tree == baseline_tree
                             and e.status in FINISHED_OK and e.metric is not None])
    return _header(metric) + _baseline_line(first) + "".join(
        _line(e, lambda id_: statuses.get(id_, ""), on_main=on_main) for e in experiments
        if _written(e, first, baseline_tree))


def merged_trees(ledger: Ledger) -> frozenset[str]:
    """The trees each merge put on the program branch, for `on_main` (with the baseline's)."""
    return frozenset(ledger.experiment(m.experiment_id).tree for m in ledger.merges())


# experiments a rewrite of results.tsv holds at a time: small, since a page's records are what a long run's
# memory grows by (Python's allocator keeps the arenas a page spread over; 1,000 cost the soak 10 MB, 100 nothing)
RESULT_PAGE = 100


def write_results_tsv(ledger: Ledger, metric: str, path: Path, baseline_tree: str | None = None,
                      merging: bool = False) -> None:
    """Write results.tsv of the whole ledger to `path` (atomically), reading it a page at a time, so that a
    run of days holds no row of it in memory between rewrites. The first finished run of the code
    `baseline_tree` comes first, as a keep, from the moment it is recorded."""
    first = _first_finished([e for e in ledger.runs_of(baseline_tree) if e.status in FINISHED_OK
                             and e.metric is not None]) if baseline_tree else None
    on_main = merged_trees(ledger) | {baseline_tree} if merging else None
    with atomic_file(path) as handle:
        handle.write(_header(metric) + _baseline_line(first))
        after = 0
        while page := ledger.experiments(diff_chars=0, after=after, limit=RESULT_PAGE):
            statuses = {e.id: e.status for e in page}  # an evidence run's proposal is nearly always on its page
            status_of = partial(_status, ledger, statuses)
            handle.writelines(_line(e, status_of, on_main=on_main) for e in page
                              if _written(e, first, baseline_tree))
            after = page[-1].id


def _status(ledger: Ledger, statuses: dict[int, str], id_: int) -> str:
    if id_ not in statuses:
        statuses[id_] = ledger.experiment(id_).status
    return statuses[id_]


def results_json(experiments: list[Experiment]) -> str:
    rows = [{k: v for k, v in e.to_dict().items() if k != "diff"} for e in experiments]
    return json.dumps(rows, indent=2)


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """A file to write that replaces `path` once whole, so that a reader sees the old or the new text, never
    half of one (nothing is replaced if the writing fails)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new text, never half of one."""
    with atomic_file(path) as handle:
        handle.write(text)
