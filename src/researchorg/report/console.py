"""What the terminal shows: the live view of a run, and the tables of status and results."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from researchorg.config import OrgSpec
from researchorg.ledger import Experiment, Ledger
from researchorg.report.summary import SUMMARY_DIFF_CHARS, Reading, Summary, Tally, merge_outcome
from researchorg.stats.acceptance import z_text
from researchorg.stats.load import load_of
from researchorg.stats.noise import NoiseEstimate
from researchorg.task.spec import TaskSpec

STATUS_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red", "timeout": "red", "invalid": "magenta",
                "interrupted": "yellow", "running": "cyan", "measured": "blue"}


CORES = os.cpu_count() or 1
BUSY = 0.5  # a run during which other work used this share of the machine's cores or more says so


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
        parts.append(f"n={len(decision.get('candidate_runs', []))} {z_text(decision['z'])}")
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


def summary_table(summary: Summary, task: TaskSpec, ledger: Ledger | None = None) -> Table:
    """The program in a few rows, one story: the baseline; the result (where the org merges, the code on the
    program branch `main`, else the best kept code) and its improvement; and a better kept run that is not on
    main as a candidate, with what the lab decided about it (the ledger's latest merge decision)."""
    table = Table(show_header=False, title=f"{task.name}: {task.metric.name} ({task.metric.direction})",
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items()))
    table.add_row("experiments", f"{summary.total} ({counts})" if summary.total else "0")
    if summary.baseline is not None:
        table.add_row("baseline", summary.describe(summary.baseline))
    result = summary.result
    merges = len(ledger.merges()) if ledger is not None else 0
    if summary.merging:
        table.add_row("main", "the baseline: nothing merged yet" if summary.main is None else
                      f"{summary.describe(summary.main)} {summary.main.commit[:7]}: {summary.main.description} "
                      f"(after {merges} merge{'s' * (merges != 1)})")
    elif result is not None and result is not summary.baseline:
        table.add_row("best", f"{summary.describe(result)} {result.commit[:7]}: {result.description}")
    elif summary.baseline is not None:
        table.add_row("best", "the baseline: nothing kept beats it yet")
    if summary.improvement is not None and summary.baseline is not None and result is not summary.baseline:
        base = summary.value(summary.baseline)
        pct = 100 * summary.improvement / abs(base) if base else 0.0
        table.add_row("improvement", f"{summary.improvement:.6f} ({pct:.1f}%)" + (" on main" if summary.merging
                                                                                 else ""))
    if summary.candidate is not None:
        why = merge_outcome(ledger, summary.candidate.id) if ledger is not None else None
        table.add_row("candidate", f"{summary.describe(summary.candidate)}: {summary.candidate.description}; "
                                   f"not on main: {why or 'not judged by the merge yet'}")
    if not summary.merging:
        table.add_row("main", "does not move: this org has no merge process")
    table.add_row("budget", f"{task.budget_seconds:g} s of training per experiment (start-up and hand-off apart)")
    return table


class RunView:
    """What `researchorg run` shows: one line per finished run and per event (in a terminal above a live footer
    of the runs in flight, elsewhere as a plain log), and the footer itself (`__rich__`).

    Events come from the engine's loop; the footer is drawn by another thread, which only reads copies. The
    ledger is the source: the view re-reads it when the run starts (after recovery), so nothing it shows is
    older than the last recorded state.
    """

    def __init__(self, task: TaskSpec, ledger: Ledger, limit: int | None, say: Callable[[Text], None],
                 org: OrgSpec | None = None):
        self.task, self.ledger, self.limit, self.say, self.org = task, ledger, limit, say, org
        self.baseline_commit = ledger.program().baseline_commit
        self._recount()
        self.running: dict[int, tuple[Experiment, str, float]] = {}  # id -> (experiment, slot, start)
        self.deciding: dict[int, Experiment] = {}  # proposals whose run ended, waiting for their decision
        self.paused: dict[str, str] = {}

    def _recount(self) -> list[Experiment]:
        """Count what the ledger holds (the view keeps counts, not records, so a run of days stays small);
        return the records, for the one caller that needs them."""
        history = self.ledger.experiments(diff_chars=SUMMARY_DIFF_CHARS)
        self.tally = Tally(self.task.metric, self.ledger.runs_of, self.baseline_commit,
                           Reading.of(self.ledger, self.org))
        self.walls: tuple[float, ...] = ()  # the latest runs' wall times, start-up and evaluation included
        self.spent = 0.0  # the budget's count: each recorded run counts its share of the task's budget
        for e in history:
            self._count(e)
        self.summary = self.tally.summary(self.ledger.experiment, steps=False)  # redrawn twice a second: kept
        return history

    def _count(self, e: Experiment) -> None:
        self.tally.add(e)
        if e.status != "interrupted":
            self.spent += e.fidelity
        if e.ended_at and e.status in ("keep", "discard", "measured"):
            self.walls = (*self.walls[-9:], e.ran_until - e.started_at)

    @property
    def done(self) -> float:
        """The runs recorded, as the experiment budget counts them (a screening run counts its share)."""
        return round(self.spent, 2)

    # events ------------------------------------------------------------------------------------------
    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            self._plan(data, self._recount())
        elif kind == "experiment_started":
            experiment = data["experiment"]
            self.running = {**self.running, experiment.id: (experiment, data.get("slot", ""), time.monotonic())}
        elif kind == "run_ended":
            experiment = data["experiment"]
            self.running = {k: v for k, v in self.running.items() if k != experiment.id}
            if experiment.kind in ("proposal", "merge") and data["status"] == "ok":
                self.deciding = {**self.deciding, experiment.id: experiment}
        elif kind == "experiment_finished":
            experiment = data["experiment"]
            self.running = {k: v for k, v in self.running.items() if k != experiment.id}
            self.deciding = {k: v for k, v in self.deciding.items() if k != experiment.id}
            self._count(experiment)
            self.summary = self.tally.summary(self.ledger.experiment, steps=False)
            self.say(self._finished_line(experiment))
        elif kind == "merge_decided":
            e, outcome = data["experiment"], data["outcome"]
            self.tally.reading = Reading.of(self.ledger, self.org)  # main may have moved
            self.summary = self.tally.summary(self.ledger.experiment, steps=False)
            self.say(Text(f"main: #{e.id} {outcome}", style="dim" if "not merged" in outcome else "bold green"))
        elif kind == "agent_paused":
            self.paused = {**self.paused, data["agent"]: data["reason"]}
            self.say(Text(f"paused {data['agent']}: {data['reason']}", style="yellow"))
        elif kind == "noise_floor":
            spread = f"; {data['spread']}" if data.get("spread") else ""
            self.say(Text(f"{data['floor'].describe(self.task.metric.name)} on {data['hardware']}{spread}",
                          style="blue"))
        elif kind == "noise_floor_failed":
            self.say(Text(f"no noise floor on {data['hardware']}: {data.get('why', 'its runs failed')}; decisions "
                          "estimate sigma from their own runs", style="yellow"))

    def _plan(self, data: dict[str, Any], history: list[Experiment]) -> None:
        done = self.done
        settled = [e.id for e in history if e.status == "interrupted" and e.reason.startswith("the run process")]
        slots = data.get("slots", [])
        left = f", {max(self.limit - done, 0):g} to go" if self.limit else ""
        self.say(Text(f"{self.task.name}: {done:g} runs recorded{left}; {len(data.get('agents', []))} agent(s) on "
                      f"{len(slots)} slot(s) ({', '.join(slots)}), {self.task.budget_seconds:g} s of training per run",
                      style="bold"))
        if settled:
            self.say(Text(f"settled what the last run left: #{', #'.join(map(str, settled[-5:]))} interrupted",
                          style="yellow"))
        for hardware, runs in data.get("noise_runs", {}).items():
            if runs:
                self.say(Text(f"rigor first: {runs} noise-floor run{'s' * (runs > 1)} of the baseline on {hardware} "
                              "(the noise every decision is judged against); agents start thinking meanwhile",
                              style="blue"))

    def _finished_line(self, e: Experiment) -> Text:
        count = f"[{self.done:g}/{self.limit}]" if self.limit else f"[{self.done:g}]"
        line = Text(f"{count} #{e.id} {e.agent} ")
        line.append(e.status, style=STATUS_STYLE.get(e.status, ""))
        if e.metric is not None:
            line.append(f" {self.task.metric.name} {e.metric:.6f}")
        if e.kind != "proposal":
            line.append(f" {e.kind}" + (f" of #{e.rerun_of}" if e.rerun_of else ""), style="dim")
        if e.fidelity < 1.0:
            line.append(f" on {e.fidelity:.0%} of the budget", style="dim")
        else:
            line.append(f"  {e.description}")
        detail = evidence(e) if e.kind == "proposal" else ""
        if e.reason and e.status not in ("keep", "discard", "measured"):
            lines = [line.strip() for line in e.reason.splitlines() if line.strip()]
            detail = lines[0] + (f": ... {lines[-1][:160]}" if len(lines) > 1 else "")  # the error is often last
        if detail:
            line.append(f"  ({detail})", style="dim")
        load = load_of(e.summary)
        if load is not None and load >= BUSY * CORES:
            line.append(f"  [machine busy: other work used {load:.1f} of {CORES} cores during this run]",
                        style="yellow")
        return line

    # the footer ----------------------------------------------------------------------------------------
    def __rich__(self) -> Group:
        parts: list[Any] = []
        expected = self._expected_seconds()
        running = list(self.running.values())
        for experiment, slot, started in sorted(running, key=lambda r: r[1]):
            elapsed = time.monotonic() - started
            line = Table.grid(padding=(0, 1))
            what = experiment.description if experiment.kind == "proposal" else \
                f"{experiment.kind}" + (f" of #{experiment.rerun_of}" if experiment.rerun_of else "")
            line.add_row(Text(f"{slot} #{experiment.id} {experiment.agent}", style="cyan"),
                         ProgressBar(total=expected, completed=min(elapsed, expected), width=20),
                         Text(f"{elapsed:4.0f}s of ~{expected:.0f}s  {what}", overflow="ellipsis", no_wrap=True))
            parts.append(line)
        for experiment in self.deciding.values():
            more = [f"#{e.id}" for e, _, _ in running if e.rerun_of == experiment.id]
            parts.append(Text(f"#{experiment.id} {experiment.agent} deciding: " + (
                f"borderline, running {', '.join(more)} with fresh seeds" if more
                else "waiting for the noise floor or its evidence runs"), style="cyan", overflow="ellipsis",
                no_wrap=True))
        summary = self.summary
        if summary.baseline is not None:
            parts.append(Text(summary.headline(self.task.metric.name), style="green", overflow="ellipsis",
                              no_wrap=True))
        for agent, reason in self.paused.items():
            parts.append(Text(f"paused {agent}: {reason}", style="yellow", overflow="ellipsis", no_wrap=True))
        return Group(*parts)

    def _expected_seconds(self) -> float:
        """How long a run takes, start-up and evaluation included: the mean of the latest finished ones."""
        walls = self.walls
        return sum(walls) / len(walls) if walls else self.task.budget_seconds
