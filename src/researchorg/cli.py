"""The `researchorg` command. Commands only: each one calls the library and prints."""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from researchorg import __version__
from researchorg.agents import check_org, probe_org
from researchorg.bench.ablation import Ablation, ablation_plot
from researchorg.bench.measures import summarize as summarize_bench
from researchorg.bench.report import TARGET_COLUMNS, summary_rows, write_report
from researchorg.bench.run import run_bench
from researchorg.bench.spec import bench_target, load_bench
from researchorg.config import load_org
from researchorg.engine.runtime import Limits, RunReport, Runtime
from researchorg.errors import ConfigError, ResearchOrgError
from researchorg.harness import sandbox
from researchorg.ledger.export import merged_trees, results_json, results_tsv
from researchorg.report.console import RunView, experiments_table, rigor_lines, summary_table
from researchorg.report.summary import program_summary
from researchorg.task import find_task, load_task
from researchorg.task.adopt import unprotected
from researchorg.world.grid import open_grid
from researchorg.world.program import Program, missing_requirements
from researchorg.world.slots import detect_slots

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Program a research organization of agents, run it on a task, and measure it.")


class _Stdout:
    """stdout that falls back to stderr once its reader is gone (`researchorg demo | tee log` and Ctrl-C: tee dies
    first), so the summary and the resume hint still reach the person."""

    def __init__(self) -> None:
        self.stream: Any = sys.stdout
        self.to_stderr = False  # a run's summary and resume hint must reach someone; `status | head` need not

    def write(self, text: str) -> int:
        try:
            written = self.stream.write(text)
            self.stream.flush()
            return written
        except BrokenPipeError:
            if self.stream is not sys.stdout:
                return len(text)
            try:  # Python would report the broken pipe again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            self.stream = sys.stderr if self.to_stderr else open(os.devnull, "w")
            return self.write(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            pass

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


_stdout = _Stdout()
# a line is one line, in a terminal and in a log; a log's tables are as wide as a log reader's window, not 80
console = Console(file=_stdout, soft_wrap=True,
                  width=None if _stdout.isatty() or os.environ.get("COLUMNS") else 140)
_debug = False


def _invoked() -> str:
    """The command as the person typed it (`.venv/bin/researchorg`, `python -m researchorg`), for hints."""
    argv0 = sys.argv[0] if sys.argv else "researchorg"
    if argv0.endswith("__main__.py") or argv0 == "-m":
        return "python -m researchorg"
    if os.sep not in argv0 or shutil.which(os.path.basename(argv0)) == os.path.abspath(argv0):
        return os.path.basename(argv0)
    return argv0


def _version(value: bool) -> None:
    if value:
        console.print(f"researchorg {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="New program directory (must not exist or be empty).")],
    task: Annotated[str | None, typer.Option(help="Built-in task name (tinylm, gpulm, simulated) or path to a task "
                                             "directory (default tinylm).")] = None,
    budget: Annotated[float | None, typer.Option(help="Override the task's training budget, in seconds of training "
                                                      "(start-up and the model's hand-off are outside it).")] = None,
    org: Annotated[Path | None, typer.Option(help="org.toml to use instead of the default one-tuner org.")] = None,
    source: Annotated[str | None, typer.Option(
        "--from", metavar="REPO", help="Adopt a repository (a path or a git URL) with its history: "
        "autoresearch's layout (prepare.py, train.py, program.md) is recognized; another needs --command "
        "and --metric. Writes the inferred task.toml and says where each field came from.")] = None,
    command: Annotated[str | None, typer.Option(help="With --from: the command that trains and prints the "
                                                "metric, e.g. \"python train.py --epochs 1\".")] = None,
    metric: Annotated[str | None, typer.Option(metavar="NAME:DIRECTION", help="With --from: the metric, e.g. "
                                               "accuracy:maximize.")] = None,
    metric_pattern: Annotated[str | None, typer.Option(help="With --from: a regular expression whose first "
                                                       "group reads the metric from the log.")] = None,
    editable: Annotated[list[str] | None, typer.Option(metavar="GLOB", help="With --from: files the agents may "
                                                       "edit (repeat it); default train.py.")] = None,
    protected: Annotated[list[str] | None, typer.Option(metavar="GLOB", help="With --from: files nobody may "
                                                        "edit, beside those inferred (repeat it).")] = None,
) -> None:
    """Create a program: a git repository with the task's files (or an adopted repository's), an org.toml and a
    ledger."""
    if source is None:
        if any(v is not None for v in (command, metric, metric_pattern, editable, protected)):
            raise ConfigError("--command, --metric, --metric-pattern, --editable and --protected go with --from")
        _init(directory, task or "tinylm", budget, org)
    elif task is not None:
        raise ConfigError("--task and --from exclude each other: --from infers the task from the repository")
    else:
        _adopt(directory, source, org, budget=budget, command=command, metric=metric, pattern=metric_pattern,
               editable=editable, protected=protected)
    console.print(f"next: {_invoked()} run {directory}")


def _warn_if_unfit(program: Program) -> None:
    """The org on a task it cannot work on (the default tuner on a task without knobs): said now, not at `run`."""
    try:
        check_org(program.org(), program.root / "org.toml", program.task)
    except ResearchOrgError as err:
        console.print(f"[yellow]warning:[/] {err}", highlight=False)


def _adopt(directory: Path, source: str, org: Path | None, **flags) -> Program:
    if org is not None:
        load_org(org)  # a broken org file fails before anything is written
    program, adopted = Program.adopt(directory, source, org_file=org, **flags)
    kept = "its history kept" if adopted.history else "a copy of its files: not a git repository"
    console.print(f"[green]adopted[/] {source} into {program.root} ({kept}, branch main); the task "
                  "it inferred, written to task.toml:", highlight=False)
    for line in adopted.lines():
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for warning in adopted.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    _warn_if_unfit(program)
    if program.task.prepare:
        console.print(f"its prepare step (`{program.task.prepare}`) runs at the first `run`, or now with "
                      f"`{_invoked()} prepare {directory}`", highlight=False)
    return program


def _init(directory: Path, task: str, budget: float | None, org: Path | None) -> Program:
    if org is not None:  # a bad backend or option fails before anything is written
        check_org(load_org(org), org, load_task(find_task(task)))
    program = Program.init(directory, task, budget=budget, org_file=org)
    for notice in program.notices:
        console.print(notice, highlight=False, soft_wrap=True)
    _warn_if_unfit(program)
    t = program.task
    console.print(f"[green]created[/] {program.root}  task {t.name}, {t.budget_seconds:g} s budget, "
                  f"metric {t.metric.name} ({t.metric.direction}), org {program.org().name}")
    return program


@app.command()
def run(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    max_experiments: Annotated[int | None, typer.Option(min=1, help="Stop when the program holds this many runs: "
                                                        "proposals, "
                                                        "noise-floor runs, re-runs and verifications alike "
                                                        "(interrupted ones not counted; a run on a fraction of "
                                                        "the budget, screen-gate's, counts that fraction).")] = None,
    max_hours: Annotated[float | None, typer.Option(callback=_finite_hours,
                                                    help="Stop after this many hours of this run.")] = None,
    slots: Annotated[int | None, typer.Option(min=1, help="Compute slots: experiments that run at once "
                                              "(default: one per visible GPU, else 1 CPU slot).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per slot (default: the cores shared "
                                                "evenly; on a Ray cluster, a CPU node's CPUs).")]
    = None,
    ray: Annotated[str | None, typer.Option(metavar="auto|ADDRESS", help="Run the experiments on a Ray cluster "
                                            "(`auto`: the one this machine belongs to, or RAY_ADDRESS): a slot "
                                            "per GPU or per --threads CPUs of every node, following nodes as they "
                                            "join and leave. Default: org.toml's [compute] ray.")] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard", help="Serve the live web dashboard while it runs "
                                            "(on 127.0.0.1, --dashboard-port).")] = False,
    dashboard_port: Annotated[int, typer.Option(min=0, max=65535, help="The dashboard's port (0: any free one).")]
    = 8765,
) -> None:
    """Run the program's org until a limit, Ctrl-C, or the agents run out of ideas. Run again to resume."""
    program = Program(directory)
    board = None
    if dashboard:
        from researchorg.dashboard import open_dashboard

        board = open_dashboard(program.root, "127.0.0.1", dashboard_port).start()
        console.print(f"dashboard: {board.url}", highlight=False)
    try:
        _run(program, max_experiments, max_hours, slots, threads, ray)
    finally:
        if board is not None:
            board.stop()


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="Program directory (created if missing, resumed if not).")]
    = Path("researchorg-demo"),
    max_experiments: Annotated[int, typer.Option(min=1, help="Experiments to run in total.")] = 20,
    budget: Annotated[float | None, typer.Option(help="Training budget per experiment, in seconds of training "
                                                      "(start-up and the model's hand-off are outside it).")] = None,
) -> None:
    """The tinylm task with the default offline org: about 14 minutes on 2 CPU cores, no download, no API key."""
    if not (directory / ".researchorg").exists():
        _init(directory, "tinylm", budget, None)
    _run(Program(directory), max_experiments, None, None, None, None)


def _finite_hours(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a positive number of hours")
    return value


def _return_large_blocks() -> None:
    """Keep glibc's mmap threshold where it starts (128 KiB) for a run that lasts days. glibc raises it each time
    a large block is freed (up to 32 MB), after which large transient blocks come from the heap, which keeps
    what they grew: the soak's lab grew 5.4 MB in its first twenty minutes so, and 2.9 MB with it fixed."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (setting it turns the dynamic threshold off)
    except (OSError, AttributeError):  # not glibc: its own allocator's way
        pass


def _run(program: Program, max_experiments: int | None, max_hours: float | None, slots: int | None,
         threads: int | None, ray: str | None) -> None:
    """Run with a view of it: in a terminal a live footer of the runs in flight under one line per finished run;
    elsewhere (a pipe, a file, nohup) the lines alone, so a log reads like the terminal did."""
    _return_large_blocks()
    limits = Limits(max_experiments=max_experiments, max_hours=max_hours)
    _stdout.to_stderr = True
    compute = program.org().compute
    ray, threads = ray or compute.ray, threads or compute.threads
    cluster = None
    if ray:
        if slots is not None:
            raise ResearchOrgError("--slots counts this machine's slots; on a Ray cluster the slots follow its "
                                   "nodes (use --threads for a CPU slot's width)")
        from researchorg.world.cluster import RayCluster
        cluster = RayCluster(ray, threads)
        found = cluster.slots()
        console.print(f"Ray cluster {ray}: {len(found)} slot{'s' * (len(found) > 1)} on "
                      f"{len({s.node for s in found})} node(s): "
                      + ", ".join(sorted({s.hardware() for s in found})), highlight=False, soft_wrap=True)

    def runtime(on_event: Callable[[str, dict], None]) -> Runtime:
        return Runtime(program, slots=None if cluster else detect_slots(slots, threads), on_event=on_event,
                       cluster=cluster)

    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=2, transient=True) as live:
                view = RunView(program.task, program.ledger, max_experiments,
                               lambda line: live.console.print(line, soft_wrap=True), program.org())
                live.update(view)
                report = runtime(view.on_event).run(limits)
        else:
            view = RunView(program.task, program.ledger, max_experiments,
                           lambda line: console.print(line, soft_wrap=True), program.org())
            report = runtime(view.on_event).run(limits)
    finally:
        if cluster is not None:
            cluster.close()
    _report_end(program, report, max_experiments)
    if report.stopped_by == "interrupted":
        raise typer.Exit(128 + (report.signal or signal.SIGINT))  # the shell's code for "stopped by a signal"
    if report.paused and report.stopped_by == "agents_done" and set(report.paused) >= {
            name for name, _ in program.org().agent_names()}:
        raise ResearchOrgError("every agent was paused (see above), so the run stopped early")


def _report_end(program: Program, report: RunReport, max_experiments: int | None) -> None:
    from researchorg.report.plot import progress_plot

    experiments = program.ledger.experiments()
    summary = program_summary(program.ledger, program.task.metric, program.org(), experiments)
    if experiments:
        progress_plot(experiments, program.task.metric, program.plot_path, summary)
    console.print(summary_table(summary, program.task, program.ledger))
    for line in rigor_lines(program.ledger, program.task.metric.name):
        console.print(line)
    stopper = "Ctrl-C" if report.signal in (0, signal.SIGINT) else signal.Signals(report.signal).name
    reasons = {"interrupted": f"stopped by {stopper}; the experiments in flight are recorded as interrupted",
               "max_experiments": "reached --max-experiments", "max_hours": "reached --max-hours",
               "agents_done": "every agent is done or at its cap"}
    console.print(f"{report.ran} experiments this run on {report.slots} slot{'s' * (report.slots > 1)} "
                  f"(busy {100 * report.utilization:.0f}% of the time); "
                  f"{reasons.get(report.stopped_by, report.stopped_by)}.")
    for agent, reason in report.paused.items():
        console.print(f"[yellow]paused[/] {agent}: {reason}")
    console.print(f"results.tsv:  {program.results_path}")
    if experiments:
        console.print(f"progress.png: {program.plot_path}")
    if report.stopped_by == "interrupted":
        limit = f" --max-experiments {max_experiments}" if max_experiments else ""
        console.print(f"resume with: {_invoked()} run {program.root}{limit}")


@app.command()
def check(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A program directory, a directory with an org.toml, an "
                                                              "org file, or a bench spec.")],
    offline: Annotated[bool, typer.Option("--offline", help="Do not ask the org's LLM servers and coding CLIs "
                                                            "whether they answer.")] = False,
) -> None:
    """Validate an org.toml (and a program's task.toml, and that its Python has the modules the task needs), or a
    bench spec and its org files, without running; ask each LLM server and coding CLI the org uses whether it
    answers (key, model, CLI on PATH)."""
    org_file = path / "org.toml" if path.is_dir() else path
    try:
        is_bench = "orgs" in tomllib.loads(org_file.read_text()) if org_file.is_file() else False
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        is_bench = False  # load_org says what is wrong
    if is_bench:
        spec, orgs = load_bench(org_file)
        console.print(f"[green]ok[/] {org_file}: bench {spec.name} on {spec.task}, {spec.repeats} repeats, "
                      f"{len(orgs)} orgs: " + "; ".join(f"{label} ({_roles(org, 0)}, {slots} slots)"
                                                     for label, org, _, slots in orgs))
        return
    org = load_org(org_file)
    task = load_task(path) if (path / "task.toml").is_file() else None
    check_org(org, org_file, task)
    console.print(f"[green]ok[/] {org_file}: org {org.name}, {len(org.agent_names())} agents: {_roles(org)}")
    if task is not None:
        console.print(f"[green]ok[/] {path / 'task.toml'}: task {task.name}, {task.budget_seconds:g} s budget, "
                      f"{task.metric.name} ({task.metric.direction}), {len(task.knobs)} knobs")
        for line in _sandbox_lines(task):
            console.print(line)
    missing = missing_requirements(task) if task is not None else None
    if not offline:
        for line in probe_org(org):
            console.print(f"[green]ok[/] {line}")
    if missing:  # the line `run` stops on
        _error(missing)


def _roles(org, by_name: int = 8) -> str:
    """The org's agents in a few words: each agent by name up to `by_name` of them, else each role and its count."""
    names = org.agent_names()
    if len(names) <= by_name:
        return ", ".join(f"{name} ({role.backend})" for name, role in names)
    return ", ".join(f"{role.name} x{role.count} ({role.backend})" for role in org.roles)


@app.command()
def status(directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")]) -> None:
    """Show the program: its baseline, what is on main and its gain, a better kept run not on main as a candidate
    (and why), its agents and its latest experiments."""
    program = Program(directory)
    experiments = program.ledger.experiments()
    summary = program_summary(program.ledger, program.task.metric, program.org(), experiments)
    console.print(summary_table(summary, program.task, program.ledger))
    for line in rigor_lines(program.ledger, program.task.metric.name):
        console.print(line)
    merges = program.ledger.merges()
    last = f", last: #{merges[-1].experiment_id} ({merges[-1].metric:.6f})" if merges else ""
    console.print(f"program branch main at {program.git.head_of('main')[:7]}: {len(merges)} merges{last}")
    for agent in program.ledger.agents():
        if not agent.worktree:
            continue  # the lab's own runs (noise floor)
        console.print(f"agent {agent.name} ({agent.backend}): branch {agent.branch} at {agent.head_commit[:7]}")
    for line in _sandbox_lines(program.task, experiments):
        console.print(line)
    if experiments:
        console.print(experiments_table(experiments[-10:], title="latest experiments"))


def _sandbox_lines(task, experiments=()) -> list[str]:
    """What the kernel enforces on this task's runs here, and what it does not (and what the last run had);
    and whether the metric can be forged by the agents' code."""
    policy = sandbox.Policy(read=[], write=[], network=task.network)
    enforced, missing = sandbox.protections(policy)
    limits = task.limits
    lines = [f"sandbox of runs here: {'; '.join(enforced)}",
             f"limits of each run, enforced from outside it: {limits.processes} processes, {limits.disk_gib:g} GiB "
             f"written, {limits.output_mib:g} MiB of output (set in task.toml)"]
    if task.harness is not None:
        lines.append(f"metric: {task.metric.name} is computed by the lab's harness with the protected "
                     f"{task.harness.entry}, in its evaluation box; what {task.script()[0]} prints is a claim")
    if task.metric.source == "stdout":
        why = unprotected(task.root, task.metric.name, task.requires)
        lines.append(f"[yellow]metric:[/] {task.metric.name} is read from the run's output, which the agents' code "
                     f"({', '.join(task.editable)}) can print: an edit could forge it"
                     + (f" ({why})" if why else " (a protected harness, metric source = \"harness\", cannot be)"))
    if missing:
        lines.append(f"not enforced here: {'; '.join(missing)}")
    last = next((e.summary.get("sandbox") for e in reversed(experiments) if e.summary.get("sandbox")), None)
    if last is not None and last != "; ".join(enforced):
        lines.append(f"the latest run had: {last}")
    return lines


@app.command()
def dashboard(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A program directory, or a bench's output "
                                              "directory (with report.json).")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on (default loopback only). Every request needs "
                                      "the token the printed address carries.")] = "127.0.0.1",
) -> None:
    """Serve the web dashboard of a program (live while it runs) or of a bench's output, until Ctrl-C. It reads
    the ledger only: frontier, experiments with their diffs and logs, agents, slots, messages, main, knobs."""
    from researchorg.dashboard import open_dashboard
    from researchorg.dashboard.app import is_loopback

    board = open_dashboard(directory, host, port)
    console.print(f"dashboard of {directory}: {board.url}  (Ctrl-C stops it)", highlight=False, soft_wrap=True)
    if not is_loopback(host):
        console.print(f"[yellow]note:[/] it listens on {host}, beyond this machine: anyone who has that address "
                      "(its token) can read the program", highlight=False)
    board.serve()


@app.command()
def prepare(directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")]) -> None:
    """Run the task's prepare step now (data, tokenizer), which `run` otherwise does before its first run."""
    program = Program(directory)
    output = program.prepare()
    tail = output.strip().splitlines()[-3:]
    for line in tail:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(f"[green]prepared[/] {program.root}: `{program.task.prepare or 'nothing to prepare'}`",
                  highlight=False)


@app.command()
def messages(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    agent: Annotated[str | None, typer.Option(help="Only what this agent received or sent.")] = None,
    last: Annotated[int | None, typer.Option(help="Only the latest N messages.")] = None,
) -> None:
    """Show the messages between agents, processes and people."""

    program = Program(directory)
    for m in program.ledger.messages(for_agent=agent, limit=last):
        to = m.recipient or "everyone"
        about = f" about #{m.experiment_id}" if m.experiment_id else ""
        console.rule(f"#{m.id} {m.kind} from {m.sender} to {to}{about}", align="left")
        console.print(Markdown(m.body))


@app.command()
def submit(
    message: Annotated[str, typer.Option("-m", "--message", help="One line: what this experiment changes.")],
    hypothesis: Annotated[str, typer.Option(help="What you expect, and why.")] = "",
    wait: Annotated[bool, typer.Option(help="Wait for the result and print it.")] = True,
) -> None:
    """Run the changes in this agent worktree as an experiment, through the running org's scheduler."""

    program, agent = Program.of_worktree(Path.cwd())
    backend = program.ledger.agent(agent).backend
    if backend != "interactive":
        raise ResearchOrgError(f"agent {agent} is run by the {backend} backend, which proposes on its own; only "
                               "`interactive` agents (a person in a grid pane) take submissions")
    if not program.run_active():
        raise ResearchOrgError(f"no `researchorg run` is working on {program.root}: start one, or `researchorg grid`")
    submission = program.ledger.add_submission(agent, message, hypothesis)
    console.print(f"submitted as {agent} (submission {submission})")
    while wait:
        done = [e for e in program.ledger.experiments(agent=agent)
                if e.proposal.get("submission") == submission and e.status != "running"]
        if done:
            e = done[0]
            value = f"{program.task.metric.name} {e.metric:.6f}" if e.metric is not None else "no result"
            console.print(f"experiment #{e.id} {e.commit[:7]}: {e.status}, {value}"
                          + (f" ({e.reason.splitlines()[0]})" if e.reason else ""))
            if e.status not in ("keep", "discard"):
                raise typer.Exit(1)
            return
        if not program.run_active():
            raise ResearchOrgError("the run stopped before the experiment finished")
        time.sleep(0.5)


@app.command()
def mcp(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    agent: Annotated[str, typer.Option(help="The agent whose tools to serve (its name, as `status` lists it).")],
) -> None:
    """Serve one agent's lab tools to an MCP client on stdio: files, results, an experiment's evidence, the
    best diff, the noise floor, messages, skills and submit (the running org takes a submission)."""
    from researchorg.agents.mcp_server import serve

    serve(Program(directory), agent)


@app.command()
def grid(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    attach: Annotated[bool, typer.Option(help="Attach to the tmux session once it is open.")] = True,
    slots: Annotated[int | None, typer.Option(help="Compute slots for the run pane.")] = None,
) -> None:
    """Open a tmux grid: the run in one pane, each interactive agent's CLI in its own, for people to take over."""

    name = open_grid(Program(directory), [] if slots is None else ["--slots", str(slots)])
    console.print(f"tmux session {name}: attach with `tmux attach -t {name}`")
    if attach:
        os.execvp("tmux", ["tmux", "attach", "-t", name])


class Format(StrEnum):
    tsv = "tsv"
    json = "json"


@app.command()
def results(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    format: Annotated[Format, typer.Option("--format", help="tsv: autoresearch's results.tsv; json: every field.")]
    = Format.tsv,
) -> None:
    """Print every experiment, as results.tsv or as JSON."""
    program = Program(directory)
    experiments = program.ledger.experiments()
    baseline = program.git.tree_of(program.ledger.program().baseline_commit)
    on_main = merged_trees(program.ledger) | {baseline} if program.org().merging else None
    text = results_tsv(experiments, program.task.metric.name, program.baseline_row_tree, on_main) \
        if format == Format.tsv \
        else results_json(experiments)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Write every finished experiment as an MLflow run "
                                         "(needs researchorg[mlflow]); runs already there are skipped.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(metavar="URI", help="MLflow's tracking URI (default: "
                                                     "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).")]
    = None,
    experiment: Annotated[str | None, typer.Option(help="The MLflow experiment's name (default: "
                                                   "researchorg/<program>).")] = None,
    optuna: Annotated[str | None, typer.Option(
        "--optuna", metavar="STORAGE", help="Write each tuner's trials into an Optuna storage (a database URL, or "
        "a journal file path), one study per agent, for `optuna-dashboard STORAGE`.")] = None,
) -> None:
    """Export the experiments to the trackers researchers use: MLflow runs, or Optuna studies."""
    if not mlflow and optuna is None:
        raise ResearchOrgError("say where to: --mlflow [--tracking-uri URI] or --optuna STORAGE")
    if tracking_uri is not None and not mlflow:
        raise ResearchOrgError("--tracking-uri goes with --mlflow")
    program = Program(directory)
    if mlflow:
        from researchorg.ledger.mlflow import export_mlflow

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        done = export_mlflow(program.ledger, program.task.metric.name, uri, experiment)
        left = f"; {done.running} still running, left for a later export" if done.running else ""
        console.print(f"MLflow {done.uri}: experiment {done.experiment} (id {done.experiment_id}): {done.exported} "
                      f"runs written, {done.skipped} already there{left}", highlight=False)
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            console.print(f"open it with: mlflow ui --backend-store-uri {uri}", highlight=False)
    if optuna is not None:
        from researchorg.agents.tuner import export_optuna

        if not program.task.knobs:
            raise ResearchOrgError(f"task {program.task.name} declares no knobs, so no tuner ran: nothing to export "
                                   "to Optuna")
        written = export_optuna(program.ledger.experiments(), program.task.knobs, program.task.metric.direction,
                                optuna, program.ledger.program().name)
        if not written:
            raise ResearchOrgError("no tuner trial has finished yet: nothing to export to Optuna")
        for name, n in written.items():
            console.print(f"Optuna study {name}: {n} trials", highlight=False)
        console.print(f"open them with: optuna-dashboard {optuna}", highlight=False)


@app.command()
def plot(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("progress.png"),
) -> None:
    """Draw the progress plot: every run a dot, kept runs in colour, main after each merge (the running best
    where the org does not merge) as a step line, and the program's result in the title."""
    from researchorg.report.plot import progress_plot

    program = Program(directory)
    experiments = program.ledger.experiments()
    if not experiments:
        raise ResearchOrgError(f"{program.root}: no experiments yet, so nothing to plot")
    summary = progress_plot(experiments, program.task.metric, output,
                            program_summary(program.ledger, program.task.metric, program.org(), experiments))
    console.print(f"wrote {output} ({len(experiments)} runs; {summary.headline(program.task.metric.name)})")


@app.command()
def ablate(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Program directory.")],
    repeats: Annotated[int, typer.Option(min=1, help="Fresh-seed runs of each configuration.")] = 3,
    prune: Annotated[bool, typer.Option(help="Propose a branch `pruned`: main without the changes that do not "
                                              "matter (main itself never moves).")] = False,
    slots: Annotated[int | None, typer.Option(help="Compute slots (as for run).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads per slot (as for run).")] = None,
) -> None:
    """Leave-one-out ablation of the changes merged into main: which ones matter (table and ablation.png)."""


    program = Program(directory)
    merges = program.ledger.merges()
    if not merges:
        raise ResearchOrgError(f"{program.root}: nothing merged into main yet, so nothing to ablate")
    runtime = Runtime(program, slots=detect_slots(slots, threads))
    console.print(f"ablating {len(merges)} merged changes: main and each change left out, {repeats} fresh seeds "
                  f"each, on {len(runtime.scheduler.slots)} slot(s)")
    report = Ablation(program, runtime, repeats).run(prune=prune)
    if report.interrupted:
        console.print("stopped by Ctrl-C; the runs made so far are in the ledger (kind ablation)")
        raise typer.Exit(130)
    name = program.task.metric.name
    mean = lambda runs: f"{sum(runs) / len(runs):.6f} (n={len(runs)})" if runs else "-"  # noqa: E731
    table = Table(title=f"leave-one-out ablation: main {report.main[:7]} = {mean(report.main_runs)}"
                        + (f", sigma {report.sigma:.4f}" if report.sigma else ""), title_justify="left")
    for column in ("merge", "change", f"{name} without it", "contribution", "±2 SE", "matters"):
        table.add_column(column)
    for c in report.changes:
        if c.commit is None:
            table.add_row(f"#{c.experiment_id}", c.description, "-", "-", "-", "superseded: later changes "
                          "rewrote all of it")
            continue
        part = f" [{c.parts[0]} of its {c.parts[1]} edits remain]" if c.parts[0] < c.parts[1] else ""
        table.add_row(f"#{c.experiment_id}", c.description + part, mean(c.runs),
                      f"{c.contribution:+.6f}" if c.contribution is not None else "-",
                      f"{2 * c.se:.6f}" if c.se is not None else "-",
                      {True: "[green]yes[/]", False: "no", None: "-"}[c.matters])
    console.print(table)
    out = ablation_plot(report, name, program.root / "ablation.png")
    console.print(f"ablation.png: {out}")
    if prune:
        if report.pruned is None:
            console.print("nothing to prune: every change matters (or the rest cannot be removed cleanly)")
        else:
            console.print(f"proposed branch pruned at {report.pruned[:7]}: {name} {mean(report.pruned_runs)} vs main "
                          f"{mean(report.main_runs)}; compare with `git -C {program.root} diff main pruned`, adopt "
                          f"with `git -C {program.root} branch -f main pruned`")
            if report.pruned_worse is not None:
                verdict = "worse than main beyond the noise: keep main" if report.pruned_worse else \
                    "not worse than main beyond the noise"
                console.print(f"the pruned program is {verdict} (z = {report.pruned_z:.1f})")


class AuditFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def audit(
    paths: Annotated[list[Path], typer.Argument(metavar="RESULTS", help="autoresearch results.tsv files, or "
                                                "folders of them (with an index.tsv naming each file's metric).")],
    sigma: Annotated[str | None, typer.Option(help="Seed noise of one run: in the metric's units (0.0003) or of "
                                                   "the baseline (0.03%). Default: estimated from code measured "
                                                   "more than once.")] = None,
    metric: Annotated[str | None, typer.Option(help="The metric's column (default: val_bpb or the first column "
                                                    "of numbers).")] = None,
    higher: Annotated[bool | None, typer.Option("--higher/--lower", help="Whether the metric is better higher "
                                                                           "(default: guessed from its name).",
                                                show_default=False)] = None,
    other_task: Annotated[bool, typer.Option(help="Use the prior fitted on runs of other tasks than "
                                                  "autoresearch's own (a folder's index says it per run).")] = False,
    format: Annotated[AuditFormat, typer.Option("--format", help="table: for people; json: every figure.")]
    = AuditFormat.table,
) -> None:
    """Which keeps of an autoresearch run are likely real: per keep the chance its true gain is above zero and a
    shrunk estimate, the claimed and likely true improvement, and which keeps to re-run first.

    A file that cannot be audited is one line; the others are audited all the same (exit code 1 if any was not)."""
    import json

    from researchorg.report.audit import audit_lines
    from researchorg.stats.audit import audit as audit_run
    from researchorg.stats.audit import estimated_sigma, parse_sigma
    from researchorg.stats.traces import TraceError, read_corpus, read_trace

    problems, audits = [], []
    for path in paths:
        if path.is_dir():
            try:
                corpus = read_corpus(path)
            except TraceError as err:
                problems.append(str(err))
                continue
            problems += corpus.problems
            traces = [(t, not t.original_task) for t in corpus.traces]
        else:
            try:
                traces = [(read_trace(path, metric=metric, higher=higher), other_task)]
            except TraceError as err:
                problems.append(str(err))
                continue
        for trace, other in traces:
            try:
                found = estimated_sigma(trace) if sigma is None else parse_sigma(sigma, trace.rows[0].value or 0.0)
                if found is None:
                    raise ConfigError("no code was measured twice, so the seed noise cannot be estimated: give it "
                                      "with --sigma (autoresearch on an H100: 0.01% to 0.05%)")
                source = f"--sigma {sigma}" if sigma is not None else "estimated from code measured more than once"
                audits.append((audit_run(trace, found, source, other_task=other), trace.metric))
            except ConfigError as err:
                problems.append(f"{trace.name}: {err}")
    if format == AuditFormat.json:
        sys.stdout.write(json.dumps([a.to_dict() for a, _ in audits], indent=1) + "\n")
    else:
        for i, (result, name) in enumerate(audits):
            for line in ([""] if i else []) + audit_lines(result, name):
                console.print(line, highlight=False, markup=False)
    for line in problems:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(line)}", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command()
def bench(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="The benchmark spec (bench.toml).")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: bench-<name> beside the spec); "
                                                  "finished repeats there are kept, so a bench resumes.")] = None,
    target: Annotated[str | None, typer.Option(help="Improvement whose hours and experiments to reach are reported, "
                                                    "or an org's label: what it reached in each repeat, and each "
                                                    "org's parallel efficiency against it (default: the spec's "
                                                    "`target`).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="The spec's seed instead (repeat r uses seed + r): an "
                                                       "independent rerun of the comparison.")] = None,
) -> None:
    """Compare orgs on one task with equal compute over repeats: report.md, report.html, report.json, curves.png.

    The simulated task runs in the simulated world, in virtual time (seconds); any other task through the real
    lab (OUT/programs). Both run the same engine."""

    spec, orgs = load_bench(spec_file)
    if seed is not None:
        spec.seed = seed
    goal = bench_target(target, [label for label, *_ in orgs]) if target is not None else spec.target
    out = out or spec_file.parent / f"bench-{spec.name}"
    total = len(orgs) * spec.repeats
    done = []

    def progress(result) -> None:
        done.append(result)
        console.print(f"[{len(done)}/{total}] {result.org} repeat {result.repeat}: improvement of main "
                      f"{result.final_verified:.4f}, {result.experiments} runs, {result.horizon / 3600:.2f} h")
        for agent, reason in result.paused.items():  # a failing agent must not pass for a weak org
            console.print(f"[yellow]paused[/] {result.org} repeat {result.repeat}: {agent}: {reason}")

    try:
        results = run_bench(spec, orgs, out, on_done=progress)
    except KeyboardInterrupt:
        console.print(f"stopped by Ctrl-C; finished repeats are kept in {out}: run the same command to resume")
        raise typer.Exit(130) from None
    summary = summarize_bench(results, goal, {label: n for label, *_, n in orgs})
    spec_text = spec_file.read_text() + (f"\n# run with --seed {seed}\n" if seed is not None else "")
    paths = write_report(spec.name, spec_text, results, summary, out)
    head, rows = summary_rows(summary)
    shown = [i for i, column in enumerate(head) if i < 5 or column in TARGET_COLUMNS]
    table = Table(title=f"bench {spec.name}: mean ± 95% CI over {spec.repeats} repeats", title_justify="left")
    for i in shown:
        table.add_column(head[i], overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    if summary["paired"]:
        console.print(f"paired by repeat, on the {summary.get('paired_on', 'final improvement of main')}:")
    for p in summary["paired"]:
        console.print(f"{p['a']} - {p['b']}: {p['mean_diff']:+.4f} ± {p['ci95']:.4f} (paired t-test p = {p['p']:.3g})")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run handles its own): nothing half-done is left
        if _debug:
            raise
        Console(stderr=True).print("stopped by Ctrl-C")
        sys.exit(130)
    except ResearchOrgError as err:
        if _debug:
            raise
        _error(str(err))
    except OSError as err:  # the machine said no: a path, permissions, a full disk, a read-only directory
        if _debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        _error(f"{err.strerror or err}{where}")
    except Exception as err:
        if _debug or type(err).__module__.split(".")[0] != "sqlalchemy":
            raise
        # the ledger's database refused (disk full, read-only, locked for too long): what is recorded stays
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        _error(f"the ledger cannot be written: {reason}; what was recorded before stays (status, results), and "
               f"`run` resumes once it can write")


def _error(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(1)
