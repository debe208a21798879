"""The storage protocol: the SQL store and the in-memory store answer every query alike, with typed records."""

from __future__ import annotations

import dataclasses

import pytest

from researchorg import MemoryLedger, SqlLedger
from researchorg.ledger import Agent, Experiment, Merge, Message, NoiseFloor, Verification


def _fill(ledger) -> None:
    ticks = iter(range(1, 10_000))
    ledger.clock = lambda: float(next(ticks))  # the same times in both stores
    ledger.create_program("p", "t", "loss", "minimize", "base", {"harness.py": "abc"})
    for name in ("lab", "a", "b"):
        ledger.ensure_agent(name, name, "simulated", "", "", "base")
    for i, (agent, kind, tree, status, metric) in enumerate([
            ("lab", "noise", "t0", "measured", 1.0), ("lab", "noise", "t0", "measured", 1.02),
            ("a", "proposal", "t1", "keep", 0.9), ("b", "proposal", "t2", "discard", 1.1),
            ("a", "verify", "t1", "measured", 0.91), ("b", "proposal", "t3", "crash", None),
            ("a", "proposal", "t4", "running", None)]):
        e = ledger.start_experiment(agent, "base", f"c{i}", diff="", description=f"#{i}", hypothesis="",
                                    proposal={"i": i}, seed=i, log_dir=None, kind=kind, tree=tree)
        ledger.set_slot(e.id, "s0", "cpu")
        if status != "running":
            ledger.finish_experiment(e.id, status, agent_head="c2" if agent == "a" else None, metric=metric,
                                     summary={"training_seconds": 3})
    ledger.record_noise("cpu", "base", [1, 2], 1.01, 0.014, 0.006, 0.4)
    ledger.record_verification(3, "a", "a", [5], 0.91, 0.9, 1.01, True)
    ledger.record_merge(3, "a", "merge", "fast-forward", "base", "c2", 0.905)
    ledger.send("a", None, "note", "hello")
    ledger.send("standup", "b", "digest", "digest", data={"experiments": [3, 4]})
    ledger.record_usage("a", "m", 10, 5, 0.01)
    ledger.log_event("run_started", slots=["s0"])


@pytest.fixture
def stores(tmp_path):
    sql, memory = SqlLedger(tmp_path / "ledger.db"), MemoryLedger()
    _fill(sql)
    _fill(memory)
    return sql, memory


def test_both_stores_answer_every_query_alike(stores):
    sql, memory = stores
    for query in (lambda s: s.program(), lambda s: s.agents(), lambda s: s.agent("a"), lambda s: s.experiments(),
                  lambda s: s.experiments(agent="a", kind="proposal"), lambda s: s.experiments(status="running"),
                  lambda s: s.experiments(after=4), lambda s: s.experiment(3), lambda s: s.count(),
                  lambda s: s.count(agent="b", exclude=("crash",)), lambda s: s.runs_of("t1"),
                  lambda s: s.runs_of("t0", "cpu"), lambda s: s.runs_of("t0", "gpu"), lambda s: s.seeds_of("t1"),
                  lambda s: s.merges(), lambda s: s.noise_floor("cpu"), lambda s: s.noise_floor("gpu"),
                  lambda s: s.verifications(), lambda s: s.reproduction("role"), lambda s: s.usage("a"),
                  lambda s: s.messages(), lambda s: s.messages(for_agent="b", limit=1),
                  lambda s: s.messages(kind="digest"), lambda s: s.messages(after=1), lambda s: s.events()):
        assert query(sql) == query(memory)


def test_records_are_typed_and_frozen(stores):
    sql, _ = stores
    assert isinstance(sql.agent("a"), Agent) and sql.agent("a").head_commit == "c2"
    assert all(isinstance(e, Experiment) for e in sql.experiments())
    assert isinstance(sql.merges()[0], Merge) and isinstance(sql.noise_floor(), NoiseFloor)
    assert isinstance(sql.verifications()[0], Verification) and isinstance(sql.messages()[-1], Message)
    assert sql.messages()[-1].data == {"experiments": [3, 4]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        sql.experiment(3).metric = 0.0  # a record is what the ledger said, never edited in place


def test_a_memory_ledger_copied_into_sql_keeps_everything(stores, tmp_path):
    _, memory = stores
    copy = SqlLedger(tmp_path / "copy.db")
    copy.copy_from(memory)
    assert copy.experiments() == memory.experiments() and copy.messages() == memory.messages()
    assert copy.merges() == memory.merges() and copy.noise_floors() == memory.noise_floors()
    assert copy.verifications() == memory.verifications() and copy.events() == memory.events()
