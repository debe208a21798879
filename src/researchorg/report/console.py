"""What the terminal shows: the live view of a run, and the tables of status and results."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from researchorg.ledger import Experiment
from researchorg.report.summary import Summary, summarize
from researchorg.task.spec import TaskSpec

STATUS_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red", "timeout": "red", "invalid": "magenta",
                "interrupted": "yellow", "running": "cyan"}


def _metric(e: Experiment) -> str:
    return f"{e.metric:.6f}" if e.metric is not None else "-"


def experiments_table(experiments: list[Experiment], title: str = "") -> Table:
    table = Table(title=title or None, title_justify="left", expand=False)
    for column in ("#", "agent", "commit", "metric", "steps", "status", "description"):
        table.add_column(column, justify="right" if column in ("#", "metric", "steps") else "left")
    for e in experiments:
        steps = e.summary.get("num_steps")
        table.add_row(str(e.id), e.agent, e.commit[:7], _metric(e), f"{steps:.0f}" if isinstance(steps, float) else "-",
                      Text(e.status, style=STATUS_STYLE.get(e.status, "")),
                      e.description if len(e.description) < 70 else e.description[:67] + "...")
    return table


def summary_table(summary: Summary, task: TaskSpec) -> Table:
    table = Table(show_header=False, title=f"{task.name}: {task.metric.name} ({task.metric.direction})",
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items()))
    table.add_row("experiments", f"{summary.total} ({counts})" if summary.total else "0")
    if summary.baseline is not None:
        table.add_row("baseline", f"{summary.baseline.metric:.6f}  (#{summary.baseline.id})")
    if summary.best is not None:
        table.add_row("best", f"{summary.best.metric:.6f}  (#{summary.best.id}, {summary.best.commit[:7]}: "
                              f"{summary.best.description})")
    if summary.improvement is not None and summary.baseline is not None:
        pct = 100 * summary.improvement / abs(summary.baseline.metric) if summary.baseline.metric else 0.0
        table.add_row("improvement", f"{summary.improvement:.6f}  ({pct:.1f}%)")
    table.add_row("budget", f"{task.budget_seconds:g} s of training per experiment")
    return table


class LiveView:
    """The renderable of `researchorg run`: the experiment in flight and the latest results."""

    def __init__(self, task: TaskSpec, history: list[Experiment], limit: int | None):
        self.task = task
        self.history = list(history)
        self.limit = limit
        self.running: dict[int, tuple[Experiment, str, float]] = {}  # id -> (experiment, slot, start)
        self.paused: dict[str, str] = {}

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

    def __rich__(self) -> Group:
        done = [e for e in self.history if e.status != "interrupted"]
        title = f"{self.task.name}: {len(done)} experiment{'s' if len(done) != 1 else ''}"
        parts: list[Any] = [experiments_table(self.history[-12:], title=title + (f" of {self.limit}" if self.limit
                                                                                   else ""))]
        summary = summarize(sorted(done, key=lambda e: e.id), self.task.metric)
        if summary.best is not None and summary.baseline is not None:
            parts.append(Text(f"best {self.task.metric.name} {summary.best.metric:.6f} (#{summary.best.id}), "
                              f"baseline {summary.baseline.metric:.6f}", style="green"))
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
        walls = [e.ended_at - e.started_at for e in self.history[-10:]
                 if e.ended_at and e.status in ("keep", "discard")]
        return sum(walls) / len(walls) if walls else self.task.budget_seconds
