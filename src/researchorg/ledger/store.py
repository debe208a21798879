"""The ledger: every program, agent, experiment and event, in SQLite through SQLAlchemy Core.

One file per program (`.researchorg/ledger.db`), WAL mode, every write its own
short transaction: when the process dies, what was committed stays and what was
in flight shows as an experiment with status `running`, which the next run
records as `interrupted`. The same code path works on PostgreSQL by URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from researchorg.errors import LabError
from researchorg.rigor.acceptance import incumbent_sample

STATUSES = ("running", "keep", "discard", "measured", "crash", "timeout", "invalid", "interrupted")
FINISHED_OK = ("keep", "discard", "measured")  # statuses that carry a valid metric
# Why a run was made: an agent's proposal; the noise floor (the baseline with other seeds); a re-run of a
# borderline candidate (sequential test); a fresh run of the incumbent it is compared with (when the
# incumbent has fewer runs); a verification before merge; a merge re-run; an ablation.
# Only proposals are decided (keep/discard); the other runs end `measured` and serve as evidence.
KINDS = ("proposal", "noise", "rerun", "incumbent", "verify", "merge", "ablation")

metadata = sa.MetaData()

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("task", sa.String, nullable=False),
    sa.Column("metric", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("baseline_commit", sa.String, nullable=False),
    sa.Column("protected_hashes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("backend", sa.String, nullable=False),
    sa.Column("branch", sa.String, nullable=False),
    sa.Column("worktree", sa.String, nullable=False),
    sa.Column("head_commit", sa.String, nullable=False),  # where the branch stands after the last decision
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("program_id", "name"),
)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # also the experiment number shown to people
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("agent_id", sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("parent_commit", sa.String, nullable=False),
    sa.Column("commit", sa.String, nullable=False),
    sa.Column("diff", sa.Text, nullable=False, default=""),
    sa.Column("description", sa.String, nullable=False, default=""),
    sa.Column("hypothesis", sa.Text, nullable=False, default=""),
    sa.Column("proposal", sa.JSON, nullable=False, default=dict),  # agent-specific (e.g. the tuner's params)
    sa.Column("status", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),  # why crash / timeout / invalid / interrupted
    sa.Column("metric", sa.Float),
    sa.Column("summary", sa.JSON, nullable=False, default=dict),  # every `key: value` of the run's summary
    sa.Column("peak_mem_mb", sa.Float),
    sa.Column("training_seconds", sa.Float),
    sa.Column("total_seconds", sa.Float),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("slot", sa.String, nullable=False, default=""),
    sa.Column("hardware", sa.String, nullable=False, default=""),
    sa.Column("pid", sa.Integer),  # process group of the run while it is running
    sa.Column("log_path", sa.String, nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("kind", sa.String, nullable=False, default="proposal", server_default="proposal"),
    sa.Column("rerun_of", sa.Integer),  # the proposal a re-run or verification run measures again
    sa.Column("tree", sa.String, nullable=False, default="", server_default=""),  # the code run: its git tree
)

noise = sa.Table(  # the noise floor: the baseline run with K seeds, per hardware class
    "noise",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("hardware", sa.String, nullable=False),
    sa.Column("commit", sa.String, nullable=False),
    sa.Column("runs", sa.JSON, nullable=False),  # experiment ids
    sa.Column("mean", sa.Float, nullable=False),
    sa.Column("sigma", sa.Float, nullable=False),  # sample standard deviation of one run
    sa.Column("sigma_low", sa.Float, nullable=False),  # 95% interval of sigma (chi-square)
    sa.Column("sigma_high", sa.Float, nullable=False),
)

verifications = sa.Table(  # fresh-seed re-runs of a candidate before it may merge
    "verifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("experiment_id", sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("runs", sa.JSON, nullable=False),  # experiment ids of the fresh runs
    sa.Column("mean", sa.Float),  # of the fresh runs; NULL when none succeeded
    sa.Column("claimed", sa.Float, nullable=False),  # what the candidate's decision measured
    sa.Column("incumbent", sa.Float),  # what it had to beat
    sa.Column("reproduced", sa.Boolean, nullable=False),
)

merges = sa.Table(
    "merges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("experiment_id", sa.ForeignKey("experiments.id"), nullable=False),  # the run that earned it
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("by", sa.String, nullable=False),  # the role or process that merged
    sa.Column("how", sa.String, nullable=False),  # fast-forward | re-run
    sa.Column("before", sa.String, nullable=False),  # program branch before and after
    sa.Column("after", sa.String, nullable=False),
    sa.Column("metric", sa.Float, nullable=False),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
)

submissions = sa.Table(  # experiments people submit from an interactive pane (`researchorg submit`)
    "submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("description", sa.String, nullable=False),
    sa.Column("hypothesis", sa.Text, nullable=False, default=""),
    sa.Column("taken", sa.Boolean, nullable=False, default=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("sender", sa.String, nullable=False),  # an agent, a process (e.g. "standup") or "lab"
    sa.Column("recipient", sa.String),  # an agent; NULL: everyone
    sa.Column("kind", sa.String, nullable=False),  # assignment | report | note | digest | merge
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("experiment_id", sa.Integer),  # the experiment it is about, if any
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("data", sa.JSON, nullable=False, default=dict),
)


_EXPERIMENT_ROWS = sa.select(experiments, agents.c.name.label("agent")).join(agents)


@dataclass
class Experiment:
    """One row of the experiments table."""

    id: int
    agent: str
    parent_commit: str
    commit: str
    status: str
    description: str = ""
    hypothesis: str = ""
    diff: str = ""
    proposal: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    peak_mem_mb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    seed: int = 0
    slot: str = ""
    hardware: str = ""
    pid: int | None = None
    log_path: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    kind: str = "proposal"
    rerun_of: int | None = None
    tree: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Ledger:
    """Durable record of one program: open with a path (SQLite) or a SQLAlchemy URL."""

    def __init__(self, where: Path | str):
        url = f"sqlite:///{where}" if isinstance(where, Path) else where
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Programs created by an older researchorg get the columns added since (with their defaults)."""
        inspector = sa.inspect(self.engine)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    default = column.server_default.arg if column.server_default is not None else None
                    ddl = f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" ' \
                          f'{column.type.compile(self.engine.dialect)}' + (f" DEFAULT '{default}'" if default else "")
                    with self._tx() as c:
                        c.execute(sa.text(ddl))

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # programs and agents ------------------------------------------------------
    def create_program(self, name: str, task: str, metric: str, direction: str, baseline: str,
                       protected_hashes: dict[str, str]) -> int:
        with self._tx() as c:
            return c.execute(programs.insert().values(
                name=name, task=task, metric=metric, direction=direction, baseline_commit=baseline,
                protected_hashes=protected_hashes, created_at=time.time())).inserted_primary_key[0]

    def program(self) -> dict[str, Any]:
        with self._tx() as c:
            row = c.execute(sa.select(programs).order_by(programs.c.id)).mappings().first()
        if row is None:
            raise LabError("the ledger holds no program: was `researchorg init` run here?")
        return dict(row)

    def ensure_agent(self, name: str, role: str, backend: str, branch: str, worktree: str, head: str) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            exists = c.execute(sa.select(agents.c.id).where(agents.c.name == name)).first()
            if exists is None:
                c.execute(agents.insert().values(
                    program_id=program_id, name=name, role=role, backend=backend, branch=branch,
                    worktree=worktree, head_commit=head, created_at=time.time()))

    def add_agents(self, names: list[str], backend: str, head: str) -> dict[str, int]:
        """Register many agents without worktrees at once (simulated ones); return name -> id."""
        program_id = self.program()["id"]
        now = time.time()
        with self._tx() as c:
            known = dict(c.execute(sa.select(agents.c.name, agents.c.id)).all())
            new = [{"program_id": program_id, "name": n, "role": n.rsplit("-", 1)[0], "backend": backend,
                    "branch": "", "worktree": "", "head_commit": head, "created_at": now}
                   for n in dict.fromkeys(names) if n not in known]
            if new:
                c.execute(agents.insert(), new)
            return dict(c.execute(sa.select(agents.c.name, agents.c.id)).all())

    def record_runs(self, rows: list[dict[str, Any]]) -> None:
        """Insert finished experiments in one transaction (the virtual lab's bookkeeping: one row per run,
        written once with its final status). Each row carries the experiments table's columns."""
        if rows:
            program_id = self.program()["id"]
            with self._tx() as c:
                c.execute(experiments.insert(), [{"program_id": program_id, **row} for row in rows])

    def set_agent_head(self, name: str, commit: str) -> None:
        with self._tx() as c:
            c.execute(agents.update().where(agents.c.name == name).values(head_commit=commit))

    def agents(self) -> list[dict[str, Any]]:
        with self._tx() as c:
            return [dict(r) for r in c.execute(sa.select(agents).order_by(agents.c.id)).mappings()]

    def agent(self, name: str) -> dict[str, Any]:
        with self._tx() as c:
            return dict(c.execute(sa.select(agents).where(agents.c.name == name)).mappings().one())

    # experiments --------------------------------------------------------------
    def start_experiment(self, agent: str, parent_commit: str, commit: str, *, diff: str, description: str,
                         hypothesis: str, proposal: dict[str, Any], seed: int, slot: str, hardware: str,
                         log_dir: Path | None, kind: str = "proposal", rerun_of: int | None = None,
                         tree: str = "") -> Experiment:
        """Record an experiment as `running` before it runs, so a crash of this process leaves a trace.

        Its log goes to `log_dir/<id>.log` (no log without a log_dir: a simulated run).
        """
        with self._tx() as c:
            ids = c.execute(sa.select(programs.c.id, agents.c.id).join(agents)
                            .where(agents.c.name == agent)).one()
            new_id = c.execute(experiments.insert().values(
                program_id=ids[0], agent_id=ids[1], parent_commit=parent_commit, commit=commit, diff=diff,
                description=description, hypothesis=hypothesis, proposal=proposal, status="running",
                seed=seed, slot=slot, hardware=hardware, started_at=time.time(), kind=kind, rerun_of=rerun_of,
                tree=tree, summary={})).inserted_primary_key[0]
            if log_dir is not None:
                c.execute(experiments.update().where(experiments.c.id == new_id)
                          .values(log_path=str(log_dir / f"{new_id:05d}.log")))
        return self.experiment(new_id)

    def set_slot(self, experiment_id: int, slot: str, hardware: str) -> None:
        """The experiment got a slot and starts running now (started_at moves from queueing to running)."""
        with self._tx() as c:
            c.execute(experiments.update().where(experiments.c.id == experiment_id)
                      .values(slot=slot, hardware=hardware, started_at=time.time()))

    def set_pid(self, experiment_id: int, pid: int | None) -> None:
        with self._tx() as c:
            c.execute(experiments.update().where(experiments.c.id == experiment_id).values(pid=pid))

    def finish_experiment(self, experiment_id: int, status: str, *, agent_head: str | None = None, reason: str = "",
                          metric: float | None = None, summary: dict[str, Any] | None = None) -> None:
        """Record the outcome and where the agent's branch now stands (if given), in one transaction."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"not a final status: {status}")
        summary = summary or {}
        with self._tx() as c:
            row = c.execute(sa.select(experiments.c.agent_id).where(experiments.c.id == experiment_id)).one()
            c.execute(experiments.update().where(experiments.c.id == experiment_id).values(
                status=status, reason=reason, metric=metric, summary=summary, pid=None, ended_at=time.time(),
                peak_mem_mb=_num(summary.get("peak_mem_mb")),
                training_seconds=_num(summary.get("training_seconds")),
                total_seconds=_num(summary.get("total_seconds"))))
            if agent_head is not None:
                c.execute(agents.update().where(agents.c.id == row.agent_id).values(head_commit=agent_head))

    def experiments(self, agent: str | None = None, status: str | None = None,
                    kind: str | None = None) -> list[Experiment]:
        query = _EXPERIMENT_ROWS.order_by(experiments.c.id)
        if agent is not None:
            query = query.where(agents.c.name == agent)
        if status is not None:
            query = query.where(experiments.c.status == status)
        if kind is not None:
            query = query.where(experiments.c.kind == kind)
        with self._tx() as c:
            rows = c.execute(query).mappings().all()
        return [_experiment(r) for r in rows]

    def experiment(self, experiment_id: int) -> Experiment:
        query = _EXPERIMENT_ROWS.where(experiments.c.id == experiment_id)
        with self._tx() as c:
            return _experiment(c.execute(query).mappings().one())

    def activity(self, agent: str) -> tuple[int, int]:
        """(finished experiments, last message to `agent` from someone else): changes when there is news, also
        when experiments finish out of order."""
        finished = sa.select(sa.func.count()).where(experiments.c.status != "running")
        received = sa.select(sa.func.coalesce(sa.func.max(messages.c.id), 0)).where(
            sa.or_(messages.c.recipient == agent, messages.c.recipient.is_(None)), messages.c.sender != agent)
        with self._tx() as c:
            return c.execute(finished).scalar_one(), c.execute(received).scalar_one()

    def finished_since(self, after_id: int, kind: str = "proposal") -> int:
        """How many experiments of `kind` finished with an id above `after_id`: a count query, so a process can
        ask after every run without reading the ledger."""
        query = sa.select(sa.func.count()).where(
            experiments.c.id > after_id, experiments.c.kind == kind, experiments.c.status != "running")
        with self._tx() as c:
            return c.execute(query).scalar_one()

    def count(self, agent: str | None = None, exclude: tuple[str, ...] = ()) -> int:
        """How many experiments (of one agent), leaving out those with a status in `exclude`."""
        query = sa.select(sa.func.count()).select_from(experiments.join(agents))
        if agent is not None:
            query = query.where(agents.c.name == agent)
        if exclude:
            query = query.where(experiments.c.status.not_in(exclude))
        with self._tx() as c:
            return c.execute(query).scalar_one()

    # merges into the program branch --------------------------------------------
    def record_merge(self, experiment_id: int, agent: str, by: str, how: str, before: str, after: str,
                     metric: float) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            c.execute(merges.insert().values(program_id=program_id, at=time.time(), experiment_id=experiment_id,
                                             agent=agent, by=by, how=how, before=before, after=after, metric=metric))

    def runs_of(self, tree: str, hardware: str | None = None) -> list[Experiment]:
        """Every successful run of the code `tree` (on `hardware`, if given), whatever it was run for, in order.

        Code is identified by its git tree, not its commit: the baseline, an agent's replay of it and a
        merge commit of a tested tree are the same code, and their runs pool."""
        query = _EXPERIMENT_ROWS.where(experiments.c.tree == tree, experiments.c.status.in_(FINISHED_OK)) \
            .order_by(experiments.c.id)
        if hardware is not None:
            query = query.where(experiments.c.hardware == hardware)
        with self._tx() as c:
            return [_experiment(r) for r in c.execute(query).mappings()]

    def seeds_of(self, tree: str) -> set[int]:
        """The seeds already used to run `tree` (so that a re-run can take a fresh one)."""
        with self._tx() as c:
            return set(c.execute(sa.select(experiments.c.seed).where(experiments.c.tree == tree)).scalars())

    def metric_of(self, tree: str, hardware: str | None = None) -> float | None:
        """The measured value of the code `tree` (on `hardware`, if given): the mean of its unselected runs if it
        has any, else of all (rigor.acceptance.incumbent_sample); None if never measured."""
        sample = self.incumbent_sample(tree, hardware)
        return sum(sample) / len(sample) if sample else None

    def incumbent_sample(self, tree: str, hardware: str | None = None) -> list[float]:
        """The metrics that measure the code `tree` as an incumbent (rigor.acceptance.incumbent_sample)."""
        return incumbent_sample([(e.kind, e.metric) for e in self.runs_of(tree, hardware)])

    def merges(self) -> list[dict[str, Any]]:
        with self._tx() as c:
            return [dict(r) for r in c.execute(sa.select(merges).order_by(merges.c.id)).mappings()]

    # the noise floor and verifications ------------------------------------------
    def record_noise(self, hardware: str, commit: str, runs: list[int], mean: float, sigma: float,
                     sigma_low: float, sigma_high: float) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            c.execute(noise.insert().values(program_id=program_id, at=time.time(), hardware=hardware, commit=commit,
                                            runs=runs, mean=mean, sigma=sigma, sigma_low=sigma_low,
                                            sigma_high=sigma_high))

    def noise_floor(self, hardware: str | None = None) -> dict[str, Any] | None:
        """The latest noise-floor estimate (of one hardware class); None if none was measured."""
        query = sa.select(noise).order_by(noise.c.id.desc())
        if hardware is not None:
            query = query.where(noise.c.hardware == hardware)
        with self._tx() as c:
            row = c.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def record_verification(self, experiment_id: int, agent: str, role: str, runs: list[int], mean: float | None,
                            claimed: float, incumbent: float | None, reproduced: bool) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            c.execute(verifications.insert().values(
                program_id=program_id, at=time.time(), experiment_id=experiment_id, agent=agent, role=role,
                runs=runs, mean=mean, claimed=claimed, incumbent=incumbent, reproduced=reproduced))

    def verifications(self) -> list[dict[str, Any]]:
        with self._tx() as c:
            return [dict(r) for r in c.execute(sa.select(verifications).order_by(verifications.c.id)).mappings()]

    def reproduction(self, by: str = "agent") -> dict[str, tuple[int, int]]:
        """(reproduced, verified) per agent or per role."""
        column = verifications.c.agent if by == "agent" else verifications.c.role
        query = sa.select(column, sa.func.sum(sa.cast(verifications.c.reproduced, sa.Integer)), sa.func.count()) \
            .group_by(column).order_by(column)
        with self._tx() as c:
            return {name: (int(ok or 0), n) for name, ok, n in c.execute(query)}

    # LLM usage ----------------------------------------------------------------
    def record_usage(self, agent: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            c.execute(usage.insert().values(program_id=program_id, at=time.time(), agent=agent, model=model,
                                            input_tokens=input_tokens, output_tokens=output_tokens,
                                            cost_usd=cost_usd))

    def usage(self, agent: str | None = None) -> dict[str, float]:
        """Total tokens and cost, of one agent or of all."""
        query = sa.select(sa.func.coalesce(sa.func.sum(usage.c.input_tokens), 0),
                          sa.func.coalesce(sa.func.sum(usage.c.output_tokens), 0),
                          sa.func.coalesce(sa.func.sum(usage.c.cost_usd), 0.0), sa.func.count())
        if agent is not None:
            query = query.where(usage.c.agent == agent)
        with self._tx() as c:
            inp, out, cost, calls = c.execute(query).one()
        return {"input_tokens": inp, "output_tokens": out, "cost_usd": cost, "calls": calls}

    # submissions from interactive panes ------------------------------------------
    def add_submission(self, agent: str, description: str, hypothesis: str = "") -> int:
        with self._tx() as c:
            return c.execute(submissions.insert().values(at=time.time(), agent=agent, description=description,
                                                         hypothesis=hypothesis, taken=False)).inserted_primary_key[0]

    def take_submission(self, agent: str) -> dict[str, Any] | None:
        """The oldest pending submission of `agent`, marked taken; None if there is none."""
        with self._tx() as c:
            row = c.execute(sa.select(submissions).where(submissions.c.agent == agent, submissions.c.taken.is_(False))
                            .order_by(submissions.c.id)).mappings().first()
            if row is not None:
                c.execute(submissions.update().where(submissions.c.id == row["id"]).values(taken=True))
        return dict(row) if row is not None else None

    # messages -----------------------------------------------------------------
    def send(self, sender: str, recipient: str | None, kind: str, body: str,
             experiment_id: int | None = None) -> int:
        """Store a message; `recipient` None is a broadcast to every agent."""
        program_id = self.program()["id"]
        with self._tx() as c:
            return c.execute(messages.insert().values(
                program_id=program_id, at=time.time(), sender=sender, recipient=recipient, kind=kind, body=body,
                experiment_id=experiment_id)).inserted_primary_key[0]

    def messages(self, for_agent: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Messages in order; with `for_agent`, those it received (direct or broadcast) or sent."""
        query = sa.select(messages).order_by(messages.c.id.desc())
        if for_agent is not None:
            query = query.where(sa.or_(messages.c.recipient == for_agent, messages.c.recipient.is_(None),
                                       messages.c.sender == for_agent))
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as c:
            return [dict(r) for r in reversed(c.execute(query).mappings().all())]

    # events -------------------------------------------------------------------
    def log_event(self, kind: str, **data: Any) -> None:
        program_id = self.program()["id"]
        with self._tx() as c:
            c.execute(events.insert().values(program_id=program_id, at=time.time(), kind=kind,
                                             data=json.loads(json.dumps(data, default=str))))

    def events(self) -> list[dict[str, Any]]:
        with self._tx() as c:
            return [dict(r) for r in c.execute(sa.select(events).order_by(events.c.id)).mappings()]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _experiment(row: Any) -> Experiment:
    fields = {k: row[k] for k in Experiment.__dataclass_fields__ if k in row}
    return Experiment(**fields)
