"""Real agents' runs: read any autoresearch `results.tsv`, and the figures that describe a set of runs.

autoresearch's loop writes one row per experiment: `commit`, the metric,
`memory_gb`, `status` (keep, discard, crash) and `description`, the first row
the baseline. Public forks vary it: extra columns, the metric under another
name, statuses in other words (`kept`, `revert`, `accepted`, `oom`) or at the
start of the description, empty or `nan` values, a 0 written for a crash. A
folder of runs (`index.tsv` and `runs/<run_id>.tsv`, as in the shared trace
corpus) names each file's metric, direction and status column; a lone file is
read by looking at its header.

`read_trace` reads one file; `read_corpus` a folder, with one line for each
file it cannot read. `describe` gives the figures the simulated world is
calibrated on (`benchmarks/calibration.py`): the keep rate by position, the
crash rate, a keep's gain over the best so far, and a run's total
improvement. The same function describes the corpus and the engine's
simulated runs, so both are measured alike.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from researchorg.errors import LabError

KEEP, DISCARD, CRASH, OTHER, BASELINE = "keep", "discard", "crash", "other", "baseline"
_KEEP = {"keep", "kept", "improved", "improvement", "accept", "accepted", "best", "new_best", "new best", "success",
         "confirmed", "adopted", "merged", "win"}
_DISCARD = {"discard", "discarded", "revert", "reverted", "reject", "rejected", "worse", "no_improvement",
            "no improvement", "neutral", "refuted", "inconclusive", "size_violation", "loss", "regressed"}
_CRASH = {"crash", "crashed", "fail", "failed", "failure", "error", "oom", "timeout", "timed out", "blocked",
          "invalid", "nan", "diverged"}
_STATUS_COLUMNS = ("status", "decision", "outcome", "result", "verdict")
_DESCRIPTION_COLUMNS = ("description", "hypothesis", "idea", "title", "notes", "reasoning", "desc", "memo", "change")
_METRICS = ("val_bpb", "val_loss", "best_val_bpb", "loss", "metric", "score", "val_acc", "accuracy")
_HIGHER = re.compile(r"acc|score|tok_?s|tok_per_sec|throughput|f1|f05|map|auc|sharpe|reward|performance|win",
                     re.IGNORECASE)
BUCKETS = ((1, 20), (21, 50), (51, 100), (101, None))  # experiment positions after the baseline


class TraceError(LabError):
    """A results file that cannot be read: its message is one line naming the file and the cause."""


@dataclass(frozen=True)
class Row:
    status: str  # keep, discard, crash, other or baseline
    value: float | None  # the metric, None where it is empty, not a number, or a crash's placeholder
    description: str = ""
    commit: str = ""  # the code it measured, where the file says


@dataclass
class Trace:
    """One run: its rows in order, the first the baseline."""
    name: str
    rows: list[Row]
    higher: bool = False  # the metric is better higher
    original_task: bool = False  # autoresearch's own task on a datacenter GPU (the corpus's index says)
    repo: str = ""
    metric: str = ""

    def experiments(self) -> list[Row]:
        """The rows after the baseline, rows that restate a baseline left out."""
        return [r for r in self.rows[1:] if r.status != BASELINE]

    def gains(self) -> list[float]:
        """Each keep's relative gain over the best value so far (baseline and earlier keeps), direction-aware."""
        best, found = self.rows[0].value, []
        for row in self.experiments():
            if row.status != KEEP or row.value is None:
                continue
            if best is None or best == 0:
                best = row.value
                continue
            gain = (row.value - best if self.higher else best - row.value) / abs(best)
            found.append(gain)
            if gain > 0:
                best = row.value
        return found

    def total(self) -> float | None:
        """The relative improvement from the baseline to the best kept value; None without both."""
        base = self.rows[0].value
        kept = [r.value for r in self.experiments() if r.status == KEEP and r.value is not None]
        if base is None or base == 0:
            return None
        if not kept:
            return 0.0
        best = max(kept) if self.higher else min(kept)
        return max(0.0, (best - base if self.higher else base - best) / abs(base))


def status_of(text: str) -> str:
    """A status as autoresearch means it, from the words a run used."""
    words = text.strip().lower().strip("[]():*").replace("-", "_")
    if words.startswith("baseline"):
        return BASELINE
    for status, names in ((KEEP, _KEEP), (DISCARD, _DISCARD), (CRASH, _CRASH)):
        if words in names or words.replace("_", " ") in names or any(words.startswith(n) for n in names
                                                                      if len(n) > 3):
            return status
    return OTHER


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_trace(path: Path, *, metric: str | None = None, higher: bool | None = None,
               status_column: str | None = None, name: str | None = None) -> Trace:
    """The run in the results file at `path`; TraceError (one line) where it cannot be read.

    `metric` names the metric's column (default: a known name, else the first column after `commit` whose
    values are numbers), `higher` its direction (default: guessed from its name), `status_column` the statuses'
    column (default: `status` or a known other; without one, each description's first word)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise TraceError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise TraceError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return parse_trace(text, path, metric=metric, higher=higher, status_column=status_column, name=name)


def parse_trace(text: str, path: Path | str = "results.tsv", *, metric: str | None = None,
                higher: bool | None = None, status_column: str | None = None, name: str | None = None) -> Trace:
    """The run in a results file's `text` (read_trace's rules; `path` names it in errors)."""
    path = Path(path)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise TraceError(f"{path}: no data rows (a header and at least a baseline are needed)")
    delimiter = "\t" if "\t" in lines[0] else ","
    table = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, quoting=csv.QUOTE_NONE))
    header = [h.strip().lower() for h in table[0]]
    body = table[1:]
    column = _metric_column(path, header, body, metric)
    status_at = _column(header, [status_column.lower()] if status_column else _STATUS_COLUMNS)
    if status_column and status_at is None and status_column.lower() not in ("description prefix",):
        raise TraceError(f"{path}: no column {status_column!r} for the statuses (columns: {', '.join(header)})")
    described_at = _column(header, _DESCRIPTION_COLUMNS)
    commit_at = _column(header, ("commit",))
    rows = []
    for cells in body:
        def cell(i: int | None, cells: list[str] = cells) -> str:
            return cells[i].strip() if i is not None and i < len(cells) else ""
        description = cell(described_at)
        if status_at is not None:
            status = status_of(cell(status_at))
        else:
            first = re.match(r"\s*\[?([A-Za-z_]+)", description)
            status = status_of(first.group(1)) if first else OTHER
        rows.append(Row(status, _number(cell(column)), description, cell(commit_at)))
    up = higher if higher is not None else bool(_HIGHER.search(header[column]))
    rows = [Row(r.status, None if (r.value == 0 and not up) else r.value, r.description, r.commit) for r in rows]
    first = next((i for i, r in enumerate(rows) if r.value is not None and r.status in (KEEP, BASELINE)), None)
    if first is None:
        raise TraceError(f"{path}: no baseline: no kept row has a value in column {header[column]!r}")
    if rows[0].value is None:  # the first row with a value is the baseline; rows before it are not experiments
        rows = rows[first:]
    return Trace(name or path.stem, rows, higher=up, metric=header[column])


def _column(header: list[str], names: Sequence[str]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _metric_column(path: Path, header: list[str], body: list[list[str]], metric: str | None) -> int:
    if metric is not None:
        if metric.lower() not in header:
            raise TraceError(f"{path}: no column {metric!r} for the metric (columns: {', '.join(header)})")
        return header.index(metric.lower())
    known = _column(header, _METRICS)
    if known is not None:
        return known
    for i, name in enumerate(header):
        if name in ("commit", "iteration", "run_id", "step", "id") or name.endswith(("_gb", "_mb", "steps")):
            continue
        values = [_number(row[i]) for row in body if i < len(row)]
        if sum(v is not None for v in values) >= max(2, len(values) / 4):  # crashes may leave many blank
            return i
    raise TraceError(f"{path}: no column of numbers for the metric (columns: {', '.join(header)})")


@dataclass
class Corpus:
    traces: list[Trace] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per file that could not be read


def read_corpus(folder: Path) -> Corpus:
    """Every run of a trace folder (`index.tsv`, `runs/<run_id>.tsv`); a file that cannot be read is one line in
    `problems`. A folder without an index is read file by file (`*.tsv` in it or in its `runs/`)."""
    index = folder / "index.tsv"
    found = Corpus()
    if not index.is_file():
        files = sorted([*folder.glob("*.tsv"), *(folder / "runs").glob("*.tsv")])
        if not files:
            raise TraceError(f"{folder}: no index.tsv and no .tsv files")
        for path in files:
            _add(found, lambda p=path: read_trace(p))
        return found
    try:
        entries = list(csv.DictReader(io.StringIO(index.read_text(encoding="utf-8")), delimiter="\t",
                                      quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError(f"{index}: cannot read: {err}") from None
    for entry in entries:
        run_id = (entry.get("run_id") or "").strip()
        if not run_id:
            continue
        path = folder / "runs" / f"{run_id}.tsv"
        status_column = (entry.get("status_column") or "").strip() or None
        direction = (entry.get("direction") or "").strip().lower()

        def read(entry: dict = entry, path: Path = path, status_column: str | None = status_column,
                 direction: str = direction, run_id: str = run_id) -> Trace:
            trace = read_trace(path, metric=(entry.get("metric") or "").strip() or None,
                               higher={"higher": True, "lower": False}.get(direction),
                               status_column=None if status_column == "description prefix" else status_column,
                               name=run_id)
            trace.original_task = (entry.get("original_task") or "").strip().lower() == "yes"
            trace.repo = (entry.get("repo") or "").strip()
            return trace
        _add(found, read)
    return found


def _add(corpus: Corpus, read: Callable[[], Trace]) -> None:
    try:
        corpus.traces.append(read())
    except TraceError as err:
        corpus.problems.append(str(err))


def quantile(values: Sequence[float], p: float) -> float:
    """The `p` quantile, interpolated (nan for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def bucket_name(bucket: tuple[int, int | None]) -> str:
    low, high = bucket
    return f"{low}-{high}" if high is not None else f"{low}+"


def describe(traces: Iterable[Trace]) -> dict[str, float]:
    """The figures of a set of runs: `keep_rate_1-20` ... `keep_rate_101+` (keeps over experiments at those
    positions), `crash_rate`, `gain_q1`/`gain_median`/`gain_q3` (the relative gain over the best so far of a
    keep that improved on it), `improving_keeps` (the share of keeps that did: some runs keep by other
    rules), and
    `total_q1`/`total_median`/`total_q3` (a run's relative improvement, baseline to best). Rates are over all
    experiments; nan where there is nothing to measure."""
    traces = list(traces)
    positions: dict[str, list[bool]] = {bucket_name(b): [] for b in BUCKETS}
    crashes, count, gains, totals = 0, 0, [], []
    for trace in traces:
        for position, row in enumerate(trace.experiments(), 1):
            count += 1
            crashes += row.status == CRASH
            for low, high in BUCKETS:
                if position >= low and (high is None or position <= high):
                    positions[bucket_name((low, high))].append(row.status == KEEP)
        gains += trace.gains()
        total = trace.total()
        if total is not None:
            totals.append(total)
    figures = {f"keep_rate_{name}": (statistics.fmean(kept) if kept else float("nan"))
               for name, kept in positions.items()}
    figures["crash_rate"] = crashes / count if count else float("nan")
    improving = [g for g in gains if g > 0]
    figures["gain_q1"], figures["gain_median"], figures["gain_q3"] = (quantile(improving, p)
                                                                      for p in (.25, .5, .75))
    figures["improving_keeps"] = len(improving) / len(gains) if gains else float("nan")
    figures["total_q1"], figures["total_median"], figures["total_q3"] = (quantile(totals, p) for p in (.25, .5, .75))
    return figures
