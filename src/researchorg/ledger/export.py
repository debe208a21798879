"""Exports of the ledger: autoresearch's results.tsv and JSON.

results.tsv follows autoresearch's format to the letter (tab-separated; header
`commit	<metric>	memory_gb	status	description`; 7-character commits;
`0.000000` and `0.0` for runs without a result), so its analysis notebook reads
ours. Its status column knows only keep, discard and crash: our timeout,
invalid and interrupted runs are written as crash, with the real status in
brackets at the start of the description; runs made as evidence (noise floor,
re-runs, verifications, ablations: status `measured`) are written as discard
with their kind and seed in brackets. JSON carries every field as is.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from researchorg.ledger.records import FINISHED_OK, Experiment


def _tsv_description(e: Experiment) -> str:
    text = e.description
    if e.status == "measured":
        text = f"[{e.kind} seed {e.seed}] {text}"
    elif e.status not in ("keep", "discard", "crash"):
        text = f"[{e.status}] {text}"
    if e.reason and e.status != "keep" and e.status != "discard":
        text = f"{text} ({e.reason.splitlines()[0]})"
    return " ".join(text.replace("\t", " ").split())


def results_tsv(experiments: list[Experiment], metric: str) -> str:
    lines = [f"commit\t{metric}\tmemory_gb\tstatus\tdescription"]
    for e in experiments:
        if e.status == "running":
            continue
        ok = e.status in FINISHED_OK and e.metric is not None
        value = f"{e.metric:.6f}" if ok else "0.000000"
        memory = f"{(e.peak_mem_mb or 0.0) / 1024:.1f}" if ok else "0.0"
        status = e.status if e.status in ("keep", "discard") else "discard" if e.status == "measured" else "crash"
        lines.append(f"{e.commit[:7]}\t{value}\t{memory}\t{status}\t{_tsv_description(e)}")
    return "\n".join(lines) + "\n"


def results_json(experiments: list[Experiment]) -> str:
    rows = [{k: v for k, v in e.to_dict().items() if k != "diff"} for e in experiments]
    return json.dumps(rows, indent=2)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new text, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
