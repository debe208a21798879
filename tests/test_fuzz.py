"""Fuzzing in the suite: a few hundred generated inputs of each kind (benchmarks/fuzz.py runs 10,000).

Every org.toml, task.toml, bench spec, command line and LLM tool call either
works or is one readable error: no traceback, no hang, no change on disk.
"""

from __future__ import annotations

import pytest

from benchmarks.fuzz import KINDS, Tally


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_inputs_work_or_fail_in_one_readable_line(kind):
    tally = Tally()
    KINDS[kind](tally, 120)
    assert tally.cases >= 100
    assert tally.failures == []
