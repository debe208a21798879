"""The SQL ledger: every program, agent, experiment and event, through SQLAlchemy Core.

SQLite by default (one file per program, `.researchorg/ledger.db`, WAL mode),
PostgreSQL or any SQLAlchemy URL otherwise, one code path. Every write is its
own short transaction: when the process dies, what was committed stays and
what was in flight shows as an experiment with status `running`, which the
next run records as `interrupted`. Safe to use from several threads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from researchorg.errors import LabError
from researchorg.ledger import records as r
from researchorg.ledger.protocol import Ledger, final_status, number
from researchorg.ledger.schema import (
    agents,
    events,
    experiments,
    merges,
    messages,
    metadata,
    noise,
    programs,
    submissions,
    usage,
    verifications,
)

_EXPERIMENT_ROWS = sa.select(experiments, agents.c.name.label("agent")).join(agents)


def _sqlite_reader(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _record(cls: type, row: Any) -> Any:
    return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


def _unwritable(directory: Path) -> str | None:
    """Why nothing can be written in `directory` (a full disk, a read-only one), or None."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY or not os.access(directory, os.W_OK):
        return f"{directory} is read-only"
    if stats.f_bavail == 0:
        return f"the disk is full (no space left in {directory}); free some and run again"
    return None


class SqlLedger:
    """The durable ledger of one program: open with a path (SQLite) or a SQLAlchemy URL.

    `reader=True` opens a SQLite file only to read it (the dashboard): SQLite refuses every write on that
    connection, the schema is not brought up to date, and a run that writes meanwhile is seen as it commits."""

    def __init__(self, where: Path | str, clock: Callable[[], float] = time.time, reader: bool = False):
        url = f"sqlite:///{where}" if isinstance(where, Path) else where
        self.clock = clock
        self._program_id: int | None = None
        if reader:
            if not isinstance(where, Path):
                raise LabError("a reader opens a ledger file (SQLite), not a server URL")
            self.engine = sa.create_engine(f"sqlite:///file:{where}?mode=ro&uri=true")
            event.listen(self.engine, "connect", _sqlite_reader)
            self.read_only = "opened to read only"
            return
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.read_only: str | None = None  # why nothing can be recorded (the ledger was opened read-only)
        try:
            metadata.create_all(self.engine)
            self._add_missing_columns()
        except sa.exc.DatabaseError as err:  # not a database, a corrupted one, or one we may not write
            self.engine.dispose()
            unwritable = _unwritable(where.parent) if isinstance(where, Path) and where.is_file() else None
            if unwritable is None:
                raise LabError(f"{where}: cannot open the ledger: {getattr(err, 'orig', err)} (a copy of a "
                               "healthy ledger.db, or `sqlite3 ledger.db .recover`, restores it)") from None
            # what is recorded stays readable: SQLite cannot set up its write-ahead log here, so read the file
            # as it is (immutable: nothing can be writing it when nothing can write here)
            self.engine = sa.create_engine(f"sqlite:///file:{where}?mode=ro&immutable=1&uri=true")
            self.read_only = unwritable

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
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError:
            if self.read_only is None:
                raise
            raise LabError(f"nothing can be recorded: {self.read_only}; what is recorded stays readable") from None

    def close(self) -> None:
        self.engine.dispose()

    @property
    def program_id(self) -> int:
        if self._program_id is None:
            self._program_id = self.program().id
        return self._program_id

    # programs and agents ------------------------------------------------------
    def create_program(self, name: str, task: str, metric: str, direction: str, baseline: str,
                       protected_hashes: dict[str, str]) -> int:
        with self._tx() as c:
            return c.execute(programs.insert().values(
                name=name, task=task, metric=metric, direction=direction, baseline_commit=baseline,
                protected_hashes=protected_hashes, created_at=self.clock())).inserted_primary_key[0]

    def program(self) -> r.Program:
        with self._tx() as c:
            row = c.execute(sa.select(programs).order_by(programs.c.id)).mappings().first()
        if row is None:
            raise LabError("the ledger holds no program: was `researchorg init` run here?")
        return _record(r.Program, row)

    def ensure_agent(self, name: str, role: str, backend: str, branch: str, worktree: str, head: str) -> r.Agent:
        with self._tx() as c:
            exists = c.execute(sa.select(agents.c.id).where(agents.c.name == name)).first()
            if exists is None:
                c.execute(agents.insert().values(
                    program_id=self.program_id, name=name, role=role, backend=backend, branch=branch,
                    worktree=worktree, head_commit=head, created_at=self.clock()))
        return self.agent(name)

    def set_agent_head(self, name: str, commit: str) -> None:
        with self._tx() as c:
            c.execute(agents.update().where(agents.c.name == name).values(head_commit=commit))

    def agents(self) -> list[r.Agent]:
        with self._tx() as c:
            return [_record(r.Agent, row) for row in c.execute(sa.select(agents).order_by(agents.c.id)).mappings()]

    def agent(self, name: str) -> r.Agent:
        with self._tx() as c:
            return _record(r.Agent, c.execute(sa.select(agents).where(agents.c.name == name)).mappings().one())

    # experiments --------------------------------------------------------------
    def start_experiment(self, agent: str, parent_commit: str, commit: str, *, diff: str, description: str,
                         hypothesis: str, proposal: dict[str, Any], seed: int, log_dir: Path | None,
                         kind: str = "proposal", rerun_of: int | None = None, tree: str = "",
                         fidelity: float = 1.0) -> r.Experiment:
        """Record an experiment as `running` before it runs, so a crash of this process leaves a trace.

        Its log goes to `log_dir/<id>.log` (no log without a log_dir: a simulated run)."""
        with self._tx() as c:
            agent_id = c.execute(sa.select(agents.c.id).where(agents.c.name == agent)).scalar_one()
            new_id = c.execute(experiments.insert().values(
                program_id=self.program_id, agent_id=agent_id, parent_commit=parent_commit, commit=commit,
                diff=diff, description=description, hypothesis=hypothesis, proposal=proposal, status="running",
                seed=seed, slot="", hardware="", started_at=self.clock(), kind=kind, rerun_of=rerun_of,
                tree=tree, fidelity=fidelity, summary={})).inserted_primary_key[0]
            if log_dir is not None:
                c.execute(experiments.update().where(experiments.c.id == new_id)
                          .values(log_path=str(log_dir / f"{new_id:05d}.log")))
        return self.experiment(new_id)

    def set_slot(self, experiment_id: int, slot: str, hardware: str) -> None:
        """The experiment got a slot and starts running now (started_at moves from queueing to running)."""
        with self._tx() as c:
            c.execute(experiments.update().where(experiments.c.id == experiment_id)
                      .values(slot=slot, hardware=hardware, started_at=self.clock()))

    def set_pid(self, experiment_id: int, pid: int | None) -> None:
        with self._tx() as c:
            c.execute(experiments.update().where(experiments.c.id == experiment_id).values(pid=pid))

    def finish_experiment(self, experiment_id: int, status: str, *, agent_head: str | None = None, reason: str = "",
                          metric: float | None = None, summary: dict[str, Any] | None = None) -> r.Experiment:
        """Record the outcome and where the agent's branch now stands (if given), in one transaction."""
        final_status(status)
        summary = summary or {}
        with self._tx() as c:
            row = c.execute(sa.select(experiments.c.agent_id).where(experiments.c.id == experiment_id)).one()
            c.execute(experiments.update().where(experiments.c.id == experiment_id).values(
                status=status, reason=reason, metric=metric, summary=summary, pid=None, ended_at=self.clock(),
                peak_mem_mb=number(summary.get("peak_mem_mb")),
                training_seconds=number(summary.get("training_seconds")),
                total_seconds=number(summary.get("total_seconds"))))
            if agent_head is not None:
                c.execute(agents.update().where(agents.c.id == row.agent_id).values(head_commit=agent_head))
        return self.experiment(experiment_id)

    def experiments(self, agent: str | None = None, status: str | None = None, kind: str | None = None,
                    after: int = 0, diff_chars: int | None = None, limit: int | None = None) -> list[r.Experiment]:
        query = _EXPERIMENT_ROWS if diff_chars is None else sa.select(
            *(sa.func.substr(c, 1, diff_chars).label("diff") if c.name == "diff" else c for c in experiments.c),
            agents.c.name.label("agent")).join(agents)
        query = query.order_by(experiments.c.id)
        if agent is not None:
            query = query.where(agents.c.name == agent)
        if status is not None:
            query = query.where(experiments.c.status == status)
        if kind is not None:
            query = query.where(experiments.c.kind == kind)
        if after:
            query = query.where(experiments.c.id > after)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as c:
            return [_record(r.Experiment, row) for row in c.execute(query).mappings()]

    def experiment(self, experiment_id: int) -> r.Experiment:
        query = _EXPERIMENT_ROWS.where(experiments.c.id == experiment_id)
        with self._tx() as c:
            return _record(r.Experiment, c.execute(query).mappings().one())

    def count(self, agent: str | None = None, exclude: tuple[str, ...] = ()) -> int:
        """How many experiments (of one agent), leaving out those with a status in `exclude`."""
        query = sa.select(sa.func.count()).select_from(experiments.join(agents))
        if agent is not None:
            query = query.where(agents.c.name == agent)
        if exclude:
            query = query.where(experiments.c.status.not_in(exclude))
        with self._tx() as c:
            return c.execute(query).scalar_one()

    def spent(self, exclude: tuple[str, ...] = ()) -> float:
        """The compute the experiments took, in full-budget runs (each counts its fidelity)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(experiments.c.fidelity), 0.0))
        if exclude:
            query = query.where(experiments.c.status.not_in(exclude))
        with self._tx() as c:
            return float(c.execute(query).scalar_one())

    def runs_of(self, tree: str, hardware: str | None = None, fidelity: float | None = 1.0) -> list[r.Experiment]:
        """Every successful run of the code `tree` (on `hardware`, if given) at `fidelity` (None: any), whatever
        it was run for, in order.

        Code is identified by its tree, not its commit: the baseline, an agent's replay of it and a merge
        commit of a tested tree are the same code, and their runs pool."""
        query = _EXPERIMENT_ROWS.where(experiments.c.tree == tree, experiments.c.status.in_(r.FINISHED_OK)) \
            .order_by(experiments.c.id)
        if hardware is not None:
            query = query.where(experiments.c.hardware == hardware)
        if fidelity is not None:
            query = query.where(experiments.c.fidelity == fidelity)
        with self._tx() as c:
            return [_record(r.Experiment, row) for row in c.execute(query).mappings()]

    def seeds_of(self, tree: str) -> set[int]:
        """The seeds already used to run `tree` (so that a re-run can take a fresh one)."""
        with self._tx() as c:
            return set(c.execute(sa.select(experiments.c.seed).where(experiments.c.tree == tree)).scalars())

    # merges, the noise floor and verifications --------------------------------------
    def record_merge(self, experiment_id: int, agent: str, by: str, how: str, before: str, after: str,
                     metric: float) -> None:
        with self._tx() as c:
            c.execute(merges.insert().values(program_id=self.program_id, at=self.clock(), experiment_id=experiment_id,
                                             agent=agent, by=by, how=how, before=before, after=after, metric=metric))

    def merges(self) -> list[r.Merge]:
        with self._tx() as c:
            return [_record(r.Merge, row) for row in c.execute(sa.select(merges).order_by(merges.c.id)).mappings()]

    def record_noise(self, hardware: str, commit: str, runs: list[int], mean: float, sigma: float,
                     sigma_low: float, sigma_high: float) -> None:
        with self._tx() as c:
            c.execute(noise.insert().values(program_id=self.program_id, at=self.clock(), hardware=hardware,
                                            commit=commit, runs=runs, mean=mean, sigma=sigma, sigma_low=sigma_low,
                                            sigma_high=sigma_high))

    def noise_floor(self, hardware: str | None = None) -> r.NoiseFloor | None:
        """The latest noise-floor estimate (of one hardware class); None if none was measured."""
        query = sa.select(noise).order_by(noise.c.id.desc())
        if hardware is not None:
            query = query.where(noise.c.hardware == hardware)
        with self._tx() as c:
            row = c.execute(query).mappings().first()
        return _record(r.NoiseFloor, row) if row is not None else None

    def record_verification(self, experiment_id: int, agent: str, role: str, runs: list[int], mean: float | None,
                            claimed: float, incumbent: float | None, reproduced: bool) -> None:
        with self._tx() as c:
            c.execute(verifications.insert().values(
                program_id=self.program_id, at=self.clock(), experiment_id=experiment_id, agent=agent, role=role,
                runs=runs, mean=mean, claimed=claimed, incumbent=incumbent, reproduced=reproduced))

    def verifications(self) -> list[r.Verification]:
        with self._tx() as c:
            return [_record(r.Verification, row)
                    for row in c.execute(sa.select(verifications).order_by(verifications.c.id)).mappings()]

    def reproduction(self, by: str = "agent") -> dict[str, tuple[int, int]]:
        """(reproduced, verified) per agent or per role."""
        column = verifications.c.agent if by == "agent" else verifications.c.role
        query = sa.select(column, sa.func.sum(sa.cast(verifications.c.reproduced, sa.Integer)), sa.func.count()) \
            .group_by(column).order_by(column)
        with self._tx() as c:
            return {name: (int(ok or 0), n) for name, ok, n in c.execute(query)}

    # LLM usage ----------------------------------------------------------------
    def record_usage(self, agent: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        with self._tx() as c:
            c.execute(usage.insert().values(program_id=self.program_id, at=self.clock(), agent=agent, model=model,
                                            input_tokens=input_tokens, output_tokens=output_tokens,
                                            cost_usd=cost_usd))

    def usage(self, agent: str | None = None) -> r.Usage:
        """Total tokens and cost, of one agent or of all."""
        query = sa.select(sa.func.coalesce(sa.func.sum(usage.c.input_tokens), 0),
                          sa.func.coalesce(sa.func.sum(usage.c.output_tokens), 0),
                          sa.func.coalesce(sa.func.sum(usage.c.cost_usd), 0.0), sa.func.count())
        if agent is not None:
            query = query.where(usage.c.agent == agent)
        with self._tx() as c:
            inp, out, cost, calls = c.execute(query).one()
        return r.Usage(int(inp), int(out), float(cost), int(calls))

    # submissions from interactive panes ------------------------------------------
    def add_submission(self, agent: str, description: str, hypothesis: str = "") -> int:
        with self._tx() as c:
            return c.execute(submissions.insert().values(at=self.clock(), agent=agent, description=description,
                                                         hypothesis=hypothesis, taken=False)).inserted_primary_key[0]

    def take_submission(self, agent: str) -> r.Submission | None:
        """The oldest pending submission of `agent`, marked taken; None if there is none."""
        with self._tx() as c:
            row = c.execute(sa.select(submissions).where(submissions.c.agent == agent, submissions.c.taken.is_(False))
                            .order_by(submissions.c.id)).mappings().first()
            if row is not None:
                c.execute(submissions.update().where(submissions.c.id == row["id"]).values(taken=True))
        return _record(r.Submission, row) if row is not None else None

    # messages -----------------------------------------------------------------
    def send(self, sender: str, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> r.Message:
        """Store a message; `recipient` None is a broadcast to every agent."""
        with self._tx() as c:
            new_id = c.execute(messages.insert().values(
                program_id=self.program_id, at=self.clock(), sender=sender, recipient=recipient, kind=kind,
                body=body, experiment_id=experiment_id, data=data or {})).inserted_primary_key[0]
            row = c.execute(sa.select(messages).where(messages.c.id == new_id)).mappings().one()
        return _record(r.Message, row)

    def messages(self, for_agent: str | None = None, limit: int | None = None, after: int = 0,
                 kind: str | None = None) -> list[r.Message]:
        """Messages in order; with `for_agent`, those it received (direct or broadcast) or sent."""
        query = sa.select(messages).order_by(messages.c.id.desc())
        if for_agent is not None:
            query = query.where(sa.or_(messages.c.recipient == for_agent, messages.c.recipient.is_(None),
                                       messages.c.sender == for_agent))
        if after:
            query = query.where(messages.c.id > after)
        if kind is not None:
            query = query.where(messages.c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as c:
            return [_record(r.Message, row) for row in reversed(c.execute(query).mappings().all())]

    # events -------------------------------------------------------------------
    def log_event(self, kind: str, **data: Any) -> None:
        with self._tx() as c:
            c.execute(events.insert().values(program_id=self.program_id, at=self.clock(), kind=kind,
                                             data=json.loads(json.dumps(data, default=str))))

    def events(self, after: int = 0) -> list[r.Event]:
        query = sa.select(events).order_by(events.c.id)
        if after:
            query = query.where(events.c.id > after)
        with self._tx() as c:
            return [_record(r.Event, row) for row in c.execute(query).mappings()]

    # copying --------------------------------------------------------------------
    def copy_from(self, source: Ledger) -> None:
        """Write everything another ledger holds (an in-memory one, say) into this empty one, in one transaction:
        the same ids, times and contents."""
        program = source.program()
        with self._tx() as c:
            c.execute(programs.insert().values(**vars(program)))
            c.execute(agents.insert(), [{**vars(a), "program_id": program.id} for a in source.agents()])
            ids = {a.name: a.id for a in source.agents()}
            rows = [{**{k: v for k, v in vars(e).items() if k != "agent"}, "agent_id": ids[e.agent],
                     "program_id": program.id} for e in source.experiments()]
            for i in range(0, len(rows), 5000):
                c.execute(experiments.insert(), rows[i:i + 5000])
            for table, found in ((noise, source.noise_floors()), (verifications, source.verifications()),
                                 (merges, source.merges()), (messages, source.messages()),
                                 (events, source.events())):
                if found:
                    c.execute(table.insert(), [{**vars(x), "program_id": program.id} for x in found])

    def noise_floors(self) -> list[r.NoiseFloor]:
        with self._tx() as c:
            return [_record(r.NoiseFloor, row) for row in c.execute(sa.select(noise).order_by(noise.c.id)).mappings()]
