"""The ledger: a storage protocol (protocol.py) with typed records (records.py), kept in SQL (sql.py: SQLite by
default, PostgreSQL by URL) or in memory (memory.py), and its exports (export.py)."""

from researchorg.ledger.memory import MemoryLedger
from researchorg.ledger.protocol import Ledger
from researchorg.ledger.records import (
    FINISHED_OK,
    KINDS,
    STATUSES,
    Agent,
    Event,
    Experiment,
    Merge,
    Message,
    NoiseFloor,
    Program,
    Submission,
    Usage,
    Verification,
)
from researchorg.ledger.sql import SqlLedger

__all__ = ["Ledger", "SqlLedger", "MemoryLedger", "Experiment", "Agent", "Program", "Merge", "Message", "NoiseFloor",
           "Verification", "Event", "Usage", "Submission", "STATUSES", "FINISHED_OK", "KINDS"]
