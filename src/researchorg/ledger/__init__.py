"""The ledger: durable record of experiments (store.py) and its exports (export.py)."""

from researchorg.ledger.store import STATUSES, Experiment, Ledger

__all__ = ["Experiment", "Ledger", "STATUSES"]
