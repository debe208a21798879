"""What the terminal shows: the live view of a run, and the tables of status and results."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from researchorg.ledger import Experiment, Ledger
from researchorg.report.summary import Summary, summarize
from researchorg.stats.noise import NoiseEstimate
from researchorg.task.spec import TaskSpec

STATUS_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red", "timeout": "red", "invalid": "magenta",
                "interrupted": "yellow", "running": "cyan", "measured": "blue"}


def _metric(e: Experiment) -> str:
    return f"{e.metric:.6f}" if e.metric is not None else "-"


def evidence(e: Experiment) -> str:
    """A decision's evidence in one short line: the rule, runs and z, and the gain with its confounds."""
    if e.kind != "proposal":
        of = f" of #{e.rerun_of}" if e.rerun_of else ""
        return f"{e.kind}{of}, seed {e.seed}"
    decision = e.summary.get("decision")
    if not decision:
        return e.reason.splitlines()[0][:60] if e.reason else ""
    parts = [decision.get("rule", "")]
    if "z" in decision:
        parts.append(f"n={len(decision.get('candidate_runs', []))} z={decision['z']:.1f}")
    if decision.get("text"):
        parts.append(decision["text"])
    return "; ".join(p for p in parts if p)


def experiments_table(experiments: list[Experiment], title: str = "") -> Table:
    table = Table(title=title or None, title_justify="left", expand=False)
    for column in ("#", "agent", "commit", "metric", "status"):
        table.add_column(column, justify="right" if column in ("#", "metric") else "left", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    table.add_column("evidence", overflow="fold", ratio=2)
    for e in experiments:
        table.add_row(str(e.id), e.agent, e.commit[:7], _metric(e),
                      Text(e.status, style=STATUS_STYLE.get(e.status, "")),
                      e.description if len(e.description) < 50 else e.description[:47] + "...",
                      Text(evidence(e), style="dim"))
    return table


def rigor_lines(ledger: Ledger, metric_name: str) -> list[str]:
    """The noise floor of each hardware class and the reproduction rate of verified candidates."""
    lines = []
    for hardware in sorted({e.hardware for e in ledger.experiments(kind="noise") if e.hardware}):
        floor = ledger.noise_floor(hardware)
        if floor is not None:
            lines.append(NoiseEstimate(floor.mean, floor.sigma, floor.sigma_low, floor.sigma_high,
                                       len(floor.runs)).describe(metric_name) + f" on {hardware}")
    rates = ledger.reproduction("agent")
    if rates:
        total_ok, total = sum(ok for ok, _ in rates.values()), sum(n for _, n in rates.values())
        per = ", ".join(f"{agent} {ok}/{n}" for agent, (ok, n) in rates.items())
        roles = ", ".join(f"{role} {ok}/{n}" for role, (ok, n) in ledger.reproduction("role").items())
        lines.append(f"reproduction: {total_ok}/{total} verified candidates reproduced with fresh seeds "
                     f"(agents: {per}; roles: {roles})")
    return lines


def summary_table(summary: Summary, task: TaskSpec) -> Table:
    table = Table(show_header=False, title=f"{task.name}: {task.metric.name} ({task.metric.direction})",
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items()))
    table.add_row("experiments", f"{summary.total} ({counts})" if summary.total else "0")
    def shown(e: Experiment) -> str:
        n = summary.count(e)
        return f"{summary.value(e):.6f}  ({'mean of ' + str(n) + ' runs, ' if n > 1 else ''}#{e.id}"

    if summary.baseline is not None:
        table.add_row("baseline", shown(summary.baseline) + ")")
    if summary.best is not None:
        table.add_row("best", shown(summary.best) + f", {summary.best.commit[:7]}: {summary.best.description})")
    if summary.improvement is not None and summary.baseline is not None:
        base = summary.value(summary.baseline)
        pct = 100 * summary.improvement / abs(base) if base else 0.0
        table.add_row("improvement", f"{summary.improvement:.6f}  ({pct:.1f}%)")
    table.add_row("budget", f"{task.budget_seconds:g} s of training per experiment")
    return table


class LiveView:
    """The renderable of `researchorg run`: the experiment in flight and the latest results."""

    def __init__(self, task: TaskSpec, history: list[Experiment], limit: int | None, notes: list[str] = ()):
        self.task = task
        self.history = list(history)
        self.limit = limit
        self.running: dict[int, tuple[Experiment, str, float]] = {}  # id -> (experiment, slot, start)
        self.paused: dict[str, str] = {}
        self.notes: list[str] = list(notes)  # the noise floor and other lines above the table

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Called from the agents' threads; the Live thread only reads copies."""
        if kind == "experiment_started":
            experiment = data["experiment"]
            self.running = {**self.running, experiment.id: (experiment, data.get("slot", ""), time.monotonic())}
        elif kind == "experiment_finished":
            experiment = data["experiment"]
            self.running = {k: v for k, v in self.running.items() if k != experiment.id}
            self.history = [*self.history, experiment]
        elif kind == "agent_paused":
            self.paused = {**self.paused, data["agent"]: data["reason"]}
        elif kind == "noise_floor_started":
            self.notes = [*self.notes, f"measuring the noise floor: the baseline with {data['runs']} seeds "
                                       f"on {data['hardware']}"]
        elif kind == "noise_floor":
            self.notes = [*self.notes[:-1], data["floor"].describe(self.task.metric.name)]
        elif kind == "noise_floor_failed":
            self.notes = [*self.notes[:-1], f"noise floor on {data['hardware']}: fewer than 2 baseline runs "
                                            "succeeded; decisions estimate sigma from their own runs"]

    def __rich__(self) -> Group:
        done = [e for e in self.history if e.status != "interrupted"]
        title = f"{self.task.name}: {len(done)} experiment{'s' if len(done) != 1 else ''}"
        parts: list[Any] = [Text(note, style="blue") for note in self.notes]
        parts.append(experiments_table(self.history[-12:], title=title + (f" of {self.limit}" if self.limit
                                                                            else "")))
        summary = summarize(sorted(done, key=lambda e: e.id), self.task.metric)
        if summary.best is not None and summary.baseline is not None:
            parts.append(Text(f"best {self.task.metric.name} {summary.value(summary.best):.6f} "
                              f"(#{summary.best.id}), baseline {summary.value(summary.baseline):.6f}", style="green"))
        expected = self._expected_seconds()
        for experiment, slot, started in sorted(self.running.values(), key=lambda r: r[1]):
            elapsed = time.monotonic() - started
            line = Table.grid(padding=(0, 1))
            line.add_row(Text(f"{slot} #{experiment.id} {experiment.agent}", style="cyan"),
                         ProgressBar(total=expected, completed=min(elapsed, expected), width=30),
                         Text(f"{elapsed:5.1f}s of ~{expected:.0f}s ({self.task.budget_seconds:g}s training)  "
                              f"{experiment.description}"))
            parts.append(line)
        for agent, reason in self.paused.items():
            parts.append(Text(f"paused {agent}: {reason}", style="yellow"))
        return Group(*parts)

    def _expected_seconds(self) -> float:
        """How long an experiment takes, start-up and evaluation included: the mean of the finished ones."""
        walls = [e.ran_until - e.started_at for e in self.history[-10:]
                 if e.ended_at and e.status in ("keep", "discard", "measured")]
        return sum(walls) / len(walls) if walls else self.task.budget_seconds
