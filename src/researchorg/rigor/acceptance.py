"""Acceptance policies: whether a finished experiment is kept.

`greedy` is autoresearch's rule: keep when the metric beats the agent's
current best (its last kept experiment); the first successful run of an agent
(its baseline) is always kept. Every decision carries its evidence, which the
ledger stores with the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from researchorg.task.spec import MetricSpec


@dataclass
class Decision:
    keep: bool
    evidence: dict[str, Any] = field(default_factory=dict)


def greedy(metric: MetricSpec, candidate: float, incumbent: float | None) -> Decision:
    if incumbent is None:
        return Decision(True, {"policy": "greedy", "rule": "first result of the agent"})
    keep = metric.better(candidate, incumbent)
    return Decision(keep, {"policy": "greedy", "incumbent": incumbent, "delta": candidate - incumbent})


POLICIES = {"greedy": greedy}
