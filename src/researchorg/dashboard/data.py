"""What the dashboard shows, read from a program's ledger (never written) or from a bench's output directory.

`ProgramData` keeps a copy of the ledger's experiments (without their diffs) and refreshes it at most once a
second, reading only what is new: experiments after the last one it holds, the ones that were still running,
and new messages and events. Every view is computed from that copy, so a page of a ledger of 10,000
experiments loads in well under a second, and a run that writes meanwhile is seen as it commits.

Everything here returns plain JSON-ready data; the text agents wrote (descriptions, hypotheses, messages,
diffs, logs) is returned as text, never as markup: the page puts it in the document as text.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from researchorg.agents.tuner import trials_of
from researchorg.bench.report import finite
from researchorg.config import load_org
from researchorg.errors import LabError, ResearchOrgError
from researchorg.ledger import Experiment
from researchorg.ledger.records import Event, Message
from researchorg.ledger.sql import SqlLedger
from researchorg.report.console import evidence
from researchorg.report.summary import SUMMARY_DIFF_CHARS, Summary, program_summary
from researchorg.stats.score import better
from researchorg.task import load_task
from researchorg.world.git import Git
from researchorg.world.program import STATE_DIR

REFRESH_SECONDS = 1.0  # how stale a view may be: the ledger is read again at most this often
LOG_TAIL_BYTES = 64 * 1024  # what an experiment page shows of a log at first; the rest follows as it grows
DIFF_MAX_BYTES = 512 * 1024  # a diff longer than this is cut (the page says so)
MESSAGE_CHARS = 20_000  # of a message's body (an agent's message can be any size)


def kind_of(directory: Path) -> str:
    """'program' or 'bench' for a directory the dashboard can serve; a LabError for anything else."""
    directory = Path(directory)
    if (directory / STATE_DIR / "ledger.db").is_file():
        return "program"
    if (directory / "report.json").is_file():
        return "bench"
    if not directory.exists():
        raise LabError(f"{directory}: no such directory")
    raise LabError(f"{directory} is neither a researchorg program (no {STATE_DIR}/ledger.db) nor a bench's "
                   "output directory (no report.json)")


def _short(text: str, n: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= n else line[: n - 1] + "…"


@dataclass
class _Run:
    """What the dashboard holds of one experiment (the whole record is read from the ledger when one is opened)."""

    e: Experiment
    slot_seconds: float  # its time on its slot

    @classmethod
    def of(cls, e: Experiment) -> _Run:
        held = e.summary.get("slot_seconds")
        if not isinstance(held, int | float):
            held = (e.ended_at - e.started_at) if e.ended_at is not None and e.slot else 0.0
        return cls(e, float(held))


class ProgramData:
    """A program's ledger, read only, with every view the dashboard serves."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        if kind_of(self.root) != "program":
            raise LabError(f"{self.root} is not a researchorg program")
        self.task = load_task(self.root)
        self.metric = self.task.metric
        self.ledger = SqlLedger(self.root / STATE_DIR / "ledger.db", reader=True)
        self.git = Git(self.root)
        self.program = self.ledger.program()
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._open: set[int] = set()  # ids still running when last read
        self._messages: list[Message] = []
        self._events: list[Event] = []
        self._read_at = 0.0
        self.version = 0  # moves whenever what the views show may have changed
        self._cache: dict[str, tuple[int, Any]] = {}
        self._against_main: dict[str, Any] = {}  # the last experiment page's diff against main, by (id, main)
        self.refresh(force=True)

    def close(self) -> None:
        self.ledger.close()

    # reading the ledger ------------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> int:
        """Read what the ledger has gained since the last read (at most once a second); the version."""
        with self._lock:
            if not force and time.monotonic() - self._read_at < REFRESH_SECONDS:
                return self.version
            changed = False
            last = max(self._runs, default=0)
            for e in self.ledger.experiments(after=last, diff_chars=SUMMARY_DIFF_CHARS):
                self._runs[e.id] = _Run.of(e)
                if e.status == "running":
                    self._open.add(e.id)
                changed = True
            for id_ in sorted(self._open):
                if id_ > last:
                    continue
                e = self._record(id_, SUMMARY_DIFF_CHARS)
                if e.status != self._runs[id_].e.status or e.slot != self._runs[id_].e.slot:
                    self._runs[id_] = _Run.of(e)
                    changed = True
                if e.status != "running":
                    self._open.discard(id_)
            new = self.ledger.messages(after=self._messages[-1].id if self._messages else 0)
            self._messages.extend(new)
            events = self.ledger.events(after=self._events[-1].id if self._events else 0)
            self._events.extend(events)
            merges = len(self.ledger.merges())
            if changed or new or events or merges != getattr(self, "_merges", None):
                self._merges = merges
                self.version += 1
            self._read_at = time.monotonic()
            return self.version

    def _cached(self, name: str, build) -> Any:
        """A view computed once per version of the ledger."""
        self.refresh()
        hit = self._cache.get(name)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        value = build()
        self._cache[name] = (self.version, value)
        return value

    def runs(self) -> list[_Run]:
        with self._lock:
            return list(self._runs.values())

    def live(self) -> bool:
        """Whether a `researchorg run` is working on the program now: the pid in its run lock is alive and is
        researchorg (read only: the lock itself is never taken, so a run starting now is never refused)."""
        try:
            pid = int((self.root / STATE_DIR / "run.lock").read_text().strip() or 0)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid > 0 else b""
        except (OSError, ValueError):
            return False
        return b"researchorg" in cmdline

    # views -------------------------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        self.refresh()
        runs = self.runs()
        counts = Counter(r.e.status for r in runs)
        return {"kind": "program", "name": self.program.name, "task": self.task.name, "root": str(self.root),
                "metric": self.metric.name, "direction": self.metric.direction,
                "budget_seconds": self.task.budget_seconds, "experiments": len(runs), "by_status": dict(counts),
                "live": self.live(), "version": self.version, "tuner": bool(self.knobs()["axes"]),
                "created_at": self.program.created_at}

    def frontier(self) -> dict[str, Any]:
        return self._cached("frontier", self._frontier)

    def _frontier(self) -> dict[str, Any]:
        finished = [r for r in self.runs() if r.e.status != "running"]
        start = self.program.created_at
        order = sorted(finished, key=lambda r: (r.e.ran_until, r.e.id))
        slot_hours: dict[int, float] = {}
        total = 0.0
        for r in order:
            total += r.slot_seconds
            slot_hours[r.e.id] = total / 3600
        statuses, kinds = sorted({r.e.status for r in finished}), sorted({r.e.kind for r in finished})
        status_code, kind_code = {s: i for i, s in enumerate(statuses)}, {k: i for i, k in enumerate(kinds)}
        columns: dict[str, list[Any]] = {k: [] for k in ("id", "hours", "slot_hours", "metric", "status", "kind")}
        for r in finished:  # in id order; every value finite (JSON has no NaN), statuses and kinds as codes
            e = r.e
            columns["id"].append(e.id)
            columns["hours"].append(round((e.ran_until - start) / 3600, 5))
            columns["slot_hours"].append(round(slot_hours[e.id], 5))
            # a screen (a fraction of the budget) scores on another scale: it has no dot on the frontier
            columns["metric"].append(e.metric if e.metric is not None and math.isfinite(e.metric)
                                     and e.fidelity == 1.0 else None)
            columns["status"].append(status_code[e.status])
            columns["kind"].append(kind_code[e.kind])
        summary = self._summary([r.e for r in finished])
        steps = [{"id": e.id, "value": v, "description": _short(e.description, 80)} for e, v in summary.steps]
        main = [{"id": summary.baseline.id, "value": summary.value(summary.baseline)}] if summary.baseline else []
        for m in self.ledger.merges():  # main's value after each merge, at the run that earned it
            if m.experiment_id in slot_hours:
                main.append({"id": m.experiment_id, "value": m.metric})
        floors = {}
        for floor in self.ledger.noise_floors():
            floors[floor.hardware] = {"hardware": floor.hardware, "mean": floor.mean, "sigma": floor.sigma,
                                      "runs": len(floor.runs)}
        return {"columns": columns, "statuses": statuses, "kinds": kinds, **finite({
            "steps": steps, "main": main, "floors": list(floors.values()), "metric": self.metric.name,
            "direction": self.metric.direction,
            "baseline": summary.describe(summary.baseline) if summary.baseline else None,
            "best": summary.describe(summary.result) if summary.result else None,
            "headline": summary.headline(self.metric.name),
            "candidate": summary.describe(summary.candidate) if summary.candidate else None})}

    def _summary(self, finished: list[Experiment]) -> Summary:
        """The program's summary as every report reads it (report/summary.program_summary)."""
        try:
            org = load_org(self.root / "org.toml")
        except ResearchOrgError:
            org = None  # an org.toml broken since the run: merges still say where main is
        return program_summary(self.ledger, self.metric, org, finished)

    def experiments(self, agent: str | None = None, status: str | None = None, kind: str | None = None,
                    q: str | None = None, sort: str = "id", desc: bool = True, offset: int = 0,
                    limit: int = 100) -> dict[str, Any]:
        rows = self._cached("table", self._table)
        if agent:
            rows = [r for r in rows if r["agent"] == agent]
        if status:
            rows = [r for r in rows if r["status"] == status]
        if kind:
            rows = [r for r in rows if r["kind"] == kind]
        if q:
            needle = q.lower()
            rows = [r for r in rows if needle in r["description"].lower() or needle in r["evidence"].lower()
                    or r["commit"].startswith(needle) or str(r["id"]) == needle]
        if sort not in ("id", "agent", "status", "kind", "metric", "ended_at", "slot_seconds", "description"):
            sort = "id"
        missing = [r for r in rows if r[sort] is None]
        present = sorted((r for r in rows if r[sort] is not None), key=lambda r: r[sort], reverse=desc)
        rows = present + missing
        facets = self._cached("facets", lambda: {
            "agents": sorted({r.e.agent for r in self.runs()}), "statuses": sorted({r.e.status for r in self.runs()}),
            "kinds": sorted({r.e.kind for r in self.runs()})})
        limit = max(1, min(limit, 1000))
        return {"total": len(rows), "offset": offset, "rows": rows[offset: offset + limit], **facets}

    def _table(self) -> list[dict[str, Any]]:
        return [finite({"id": r.e.id, "agent": r.e.agent, "kind": r.e.kind, "status": r.e.status,
                         "metric": r.e.metric, "commit": r.e.commit[:7], "description": _short(r.e.description),
                         "evidence": _short(evidence(r.e), 120), "slot": r.e.slot, "hardware": r.e.hardware,
                         "started_at": r.e.started_at, "ended_at": r.e.ended_at,
                         "slot_seconds": round(r.slot_seconds, 2), "rerun_of": r.e.rerun_of,
                         "fidelity": r.e.fidelity})
                for r in self.runs()]

    def _record(self, id_: int, diff_chars: int | None = 0) -> Experiment:
        """One experiment from the ledger, with at most `diff_chars` of its diff (None: all of it)."""
        found = self.ledger.experiments(after=id_ - 1, limit=1, diff_chars=diff_chars)
        if not found or found[0].id != id_:
            raise LabError(f"no experiment #{id_}")
        return found[0]

    def experiment(self, id_: int) -> dict[str, Any]:
        """An experiment's page; computed once per version of the ledger, its diff against main once per head of
        main (an agent's commit can be large: the diffs are cut at DIFF_MAX_BYTES, git's output too)."""
        return self._cached(f"experiment/{id_}", lambda: self._experiment(id_))

    def _experiment(self, id_: int) -> dict[str, Any]:
        e = self._record(id_, diff_chars=DIFF_MAX_BYTES + 1)
        main = self.git("rev-parse", "--verify", "-q", "refs/heads/main", check=False)
        key = (id_, main)
        if self._against_main.get("key") != key:
            text, cut = self.git.diff_capped(main, e.commit, DIFF_MAX_BYTES) if main and e.commit else ("", False)
            self._against_main = {"key": key, "diff": {"text": text, "cut": cut}}
        fresh = [r.e for r in self.runs() if r.e.rerun_of == e.id]
        verification = next((v for v in reversed(self.ledger.verifications()) if v.experiment_id == e.id), None)
        merged = [m for m in self.ledger.merges() if m.experiment_id == e.id]
        return finite({
            **{k: v for k, v in e.to_dict().items() if k not in ("diff", "summary", "proposal")},
            "summary": {k: v for k, v in e.summary.items() if k != "decision"},
            "decision": e.summary.get("decision"), "proposal": e.proposal, "evidence": evidence(e),
            "diff": _cut(e.diff), "diff_main": self._against_main["diff"], "main": main[:7],
            "runs_after": [{"id": r.id, "kind": r.kind, "status": r.status, "metric": r.metric, "seed": r.seed}
                           for r in fresh],
            "verification": vars(verification) if verification else None,
            "merged": [vars(m) for m in merged], "has_log": self._log_path(e) is not None,
            "metric_name": self.metric.name})

    def _log_path(self, e: Experiment) -> Path | None:
        """The experiment's log, if it is a file inside the program's directory (nothing outside is served)."""
        if not e.log_path:
            return None
        path = Path(e.log_path).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def log(self, id_: int, offset: int | None = None) -> dict[str, Any]:
        """The log from `offset` (bytes) on; without it, its last LOG_TAIL_BYTES. `offset` in the answer is where
        the next read starts, so a page follows a log as it grows."""
        with self._lock:
            held = self._runs.get(id_)
        e = held.e if held is not None and held.e.status != "running" else self._record(id_)
        path = self._log_path(e)
        if path is None:
            return {"text": "", "offset": 0, "running": e.status == "running", "cut": False}
        size = path.stat().st_size
        start = max(0, size - LOG_TAIL_BYTES) if offset is None else max(0, min(offset, size))
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, min(size - start, 4 * LOG_TAIL_BYTES)))
        return {"text": data.decode("utf-8", "replace"), "offset": start + len(data),
                "running": e.status == "running", "cut": offset is None and start > 0}

    def agents(self) -> list[dict[str, Any]]:
        return self._cached("agents", self._agents)

    def _agents(self) -> list[dict[str, Any]]:
        runs = self.runs()
        live = self.live()
        started = max((ev.id for ev in self._events if ev.kind == "run_started"), default=0)
        paused = {ev.data.get("agent"): ev.data.get("reason", "") for ev in self._events
                  if ev.kind == "agent_paused" and ev.id > started}
        reproduction = self.ledger.reproduction("agent")
        by_agent: dict[str, list[Experiment]] = defaultdict(list)
        for r in runs:
            by_agent[r.e.agent].append(r.e)
        out = []
        for a in self.ledger.agents():
            mine = by_agent.get(a.name, [])
            decided = [e for e in mine if e.kind == "proposal" and e.status in ("keep", "discard")]
            keeps = sum(e.status == "keep" for e in decided)
            running = [e for e in mine if e.status == "running"]
            if a.name in paused:
                state, detail = "paused", paused[a.name]
            elif any(e.slot for e in running):
                e = next(e for e in running if e.slot)
                state, detail = "running", f"#{e.id} on {e.slot}"
            elif running:
                state, detail = "queued", f"#{running[0].id} waits for a slot"
            elif live:
                state, detail = "thinking", ""
            else:
                state, detail = "idle", "no run is working on the program"
            usage = self.ledger.usage(a.name)
            ok, verified = reproduction.get(a.name, (0, 0))
            out.append(finite({
                "name": a.name, "role": a.role, "backend": a.backend, "branch": a.branch, "head": a.head_commit[:7],
                "state": state, "detail": detail, "experiments": len(mine), "decided": len(decided), "keeps": keeps,
                "keep_rate": keeps / len(decided) if decided else None, "verified": verified, "reproduced": ok,
                "reproduction_rate": ok / verified if verified else None, "tokens":
                usage.input_tokens + usage.output_tokens, "cost_usd": usage.cost_usd,
                "last": mine[-1].id if mine else None}))
        return out

    def slots(self) -> dict[str, Any]:
        return self._cached("slots", self._slots)

    def _slots(self) -> dict[str, Any]:
        now = time.time()
        by_slot: dict[str, list[list[Any]]] = defaultdict(list)
        queue = []
        for r in self.runs():
            e = r.e
            if e.status == "running" and not e.slot:
                queue.append({"id": e.id, "agent": e.agent, "kind": e.kind, "since": e.started_at,
                              "description": _short(e.description, 80)})
                continue
            if not e.slot:
                continue
            end = now if e.status == "running" else e.started_at + r.slot_seconds
            by_slot[e.slot].append((e.id, e.started_at, end, e.status, e.hardware))
        start = min((s[1] for runs in by_slot.values() for s in runs), default=now)
        end = max((s[2] for runs in by_slot.values() for s in runs), default=now)
        span = max(end - start, 1e-9)
        statuses = sorted({s[3] for runs in by_slot.values() for s in runs})
        code = {s: i for i, s in enumerate(statuses)}
        slots = []
        for name in sorted(by_slot):
            runs = by_slot[name]
            busy = sum(b - a for _, a, b, _, _ in runs)
            slots.append({"name": name, "hardware": runs[-1][4], "utilization": min(1.0, busy / span),
                          # each run: id, start and end in seconds from the first start, how it ended
                          "runs": [[i, round(a - start, 2), round(b - start, 2), code[st]] for i, a, b, st, _ in runs]})
        return {"start": start, "end": end, "statuses": statuses, "slots": slots, "queue": finite(queue)}

    def messages(self, limit: int = 300) -> list[dict[str, Any]]:
        self.refresh()
        with self._lock:
            latest = self._messages[-limit:]
        return [finite({"id": m.id, "at": m.at, "sender": m.sender, "recipient": m.recipient, "kind": m.kind,
                         "body": m.body[:MESSAGE_CHARS], "cut": len(m.body) > MESSAGE_CHARS,
                         "experiment_id": m.experiment_id}) for m in latest]

    def main(self) -> dict[str, Any]:
        return self._cached("main", self._main)

    def _main(self) -> dict[str, Any]:
        finished = [r.e for r in self.runs() if r.e.status != "running"]
        summary = self._summary(finished)
        previous = summary.value(summary.baseline) if summary.baseline else None
        verifications = {v.experiment_id: v for v in self.ledger.verifications()}
        ablation = next((ev for ev in reversed(self._events) if ev.kind == "ablation"), None)
        contributions = {c.get("merge"): c for c in (ablation.data.get("changes", []) if ablation else [])}
        named = {r.e.id: r.e for r in self.runs()}
        rows = []
        for m in self.ledger.merges():
            e = named.get(m.experiment_id)
            source = e.rerun_of if e is not None and e.rerun_of else m.experiment_id
            v = verifications.get(m.experiment_id) or verifications.get(source)
            gain = None if previous is None else (previous - m.metric if self.metric.direction == "minimize"
                                                  else m.metric - previous)
            rows.append({"id": m.id, "at": m.at, "experiment_id": m.experiment_id, "agent": m.agent, "by": m.by,
                         "how": m.how, "after": m.after[:7], "metric": m.metric, "gain": gain,
                         "description": _short(e.description if e else "", 120),
                         "verification": {"mean": v.mean, "claimed": v.claimed, "incumbent": v.incumbent,
                                          "reproduced": v.reproduced, "runs": len(v.runs)} if v else None,
                         "contribution": contributions.get(m.id)})
            if previous is None or better(self.metric, m.metric, previous):
                previous = m.metric
        main = self.git("rev-parse", "--verify", "-q", "refs/heads/main", check=False)
        return finite({"head": main[:7], "merges": rows, "ablation": bool(ablation),
                        "baseline": summary.value(summary.baseline) if summary.baseline else None,
                        "metric": self.metric.name, "direction": self.metric.direction})

    def knobs(self) -> dict[str, Any]:
        return self._cached("knobs", self._knobs)

    def _knobs(self) -> dict[str, Any]:
        knobs = self.task.knobs or []
        trials = trials_of([r.e for r in self.runs()], knobs) if knobs else []
        axes = [{"name": k.name, "type": k.type, "low": k.low, "high": k.high, "log": k.log, "choices": k.choices}
                for k in knobs] if trials else []
        rows = [[t.user_attrs["experiment"], *[t.params[k.name] for k in knobs], t.value] for t in trials]
        return finite({"axes": axes, "rows": rows, "metric": self.metric.name, "direction": self.metric.direction,
                        "importance": _importance(trials, self.metric.direction)})


def _importance(trials, direction: str) -> dict[str, float] | None:
    """Optuna's parameter importance (PED-ANOVA, which needs no scikit-learn) over the tuners' trials."""
    if len(trials) < 4:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction)
    study.add_trials(trials)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError):
        return None
    return {k: float(v) for k, v in found.items()}


def _cut(diff: str) -> dict[str, Any]:
    data = diff.encode()
    if len(data) <= DIFF_MAX_BYTES:
        return {"text": diff, "cut": False}
    return {"text": data[:DIFF_MAX_BYTES].decode("utf-8", "ignore"), "cut": True}


class BenchData:
    """A bench's output directory (report.json): its curves, its table and its paired tests."""

    def __init__(self, out: Path):
        self.root = Path(out).resolve()
        path = self.root / "report.json"
        try:
            self.report = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise LabError(f"{path}: not a bench report ({err})") from None
        self.version = 1

    def refresh(self, force: bool = False) -> int:
        return self.version

    def close(self) -> None:
        pass

    def overview(self) -> dict[str, Any]:
        return {"kind": "bench", "name": self.report.get("name", self.root.name), "root": str(self.root),
                "live": False, "version": self.version, "orgs": sorted(self.report.get("runs", {}))}

    def bench(self) -> dict[str, Any]:
        from researchorg.bench.report import summary_rows

        summary = self.report.get("summary", {})
        try:  # report.json holds a measure no repeat had (NaN) as null
            orgs = {label: {k: [math.nan if x is None else x for x in v] if isinstance(v, list) else v
                            for k, v in row.items()} for label, row in summary.get("orgs", {}).items()}
            head, rows = summary_rows({**summary, "orgs": orgs})
        except (KeyError, TypeError, ValueError):
            head, rows = [], []
        curves = {}
        runs = self.report.get("runs", {})
        horizon = max((p[0] for repeats in runs.values() for r in repeats for p in r.get("verified_curve", [])),
                      default=0.0)
        grid = [horizon * i / 200 for i in range(201)]
        for org, repeats in sorted(runs.items()):
            lines = [_step_on(r.get("verified_curve", []), grid) for r in repeats]
            curves[org] = {"mean": [statistics.fmean(v) for v in zip(*lines, strict=True)] if lines else [],
                           "repeats": len(lines)}
        return finite({"name": self.report.get("name"), "head": head, "rows": rows,
                        "paired": summary.get("paired", []), "hours": [t / 3600 for t in grid], "curves": curves,
                        "spec": self.report.get("spec", "")})


def _step_on(curve: list[list[float]], grid: list[float]) -> list[float]:
    """A repeat's improvement of main (a step function of time) at each time of `grid`."""
    out, value, i = [], 0.0, 0
    points = sorted(curve, key=lambda p: p[0])
    for t in grid:
        while i < len(points) and points[i][0] <= t:
            value = points[i][3]
            i += 1
        out.append(value)
    return out


def open_source(directory: Path) -> ProgramData | BenchData:
    """The program or the bench output at `directory`, for the dashboard."""
    kind = kind_of(directory)
    return ProgramData(directory) if kind == "program" else BenchData(directory)
