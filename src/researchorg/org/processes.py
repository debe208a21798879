"""Processes: what the organization does on a clock or on events, beside the agents' own work.

`standup`: every `every_experiments` finished proposals (the lab's own runs,
noise floor and re-runs, do not count) or `every_minutes` minutes (whichever
comes first), post a digest of everyone's results to
everyone: per agent, how many experiments since the last standup, how many
kept, its best and its latest tries.
"""

from __future__ import annotations

import threading
import time

from researchorg.config import ProcessSpec
from researchorg.ledger import Experiment, Ledger
from researchorg.org.messages import PostOffice
from researchorg.report.summary import summarize
from researchorg.task.spec import MetricSpec


class Standup:
    """Posts a digest when enough experiments finished or enough time passed since the last one."""

    def __init__(self, spec: ProcessSpec, ledger: Ledger, post: PostOffice, metric: MetricSpec):
        self.spec, self.ledger, self.post, self.metric = spec, ledger, post, metric
        self._lock = threading.Lock()
        self._last_at = time.time()
        self._last_id = max((e.id for e in ledger.experiments(kind="proposal")), default=0)

    def on_experiment(self) -> int | None:
        """Called after every finished experiment; posts the digest if it is due and returns its message id."""
        with self._lock:
            n = self.ledger.finished_since(self._last_id)  # a count: cheap after every run, at any scale
            due = (self.spec.every_experiments is not None and n >= self.spec.every_experiments) or \
                  (self.spec.every_minutes is not None and time.time() - self._last_at >= 60 * self.spec.every_minutes)
            if not due or not n:
                return None
            proposals = self.ledger.experiments(kind="proposal")
            finished = [e for e in proposals if e.id > self._last_id and e.status != "running"]
            self._last_id, self._last_at = max(e.id for e in finished), time.time()
            return self.post.send("standup", None, "digest", digest(finished, proposals, self.metric))


def digest(recent: list[Experiment], everything: list[Experiment], metric: MetricSpec) -> str:
    lines = [f"Standup: {len(recent)} experiments since the last one ({metric.name}, {metric.direction})."]
    for agent in sorted({e.agent for e in everything}):
        mine = [e for e in recent if e.agent == agent]
        best = summarize([e for e in everything if e.agent == agent], metric).best
        head = f"- **{agent}**: {len(mine)} new, {sum(e.status == 'keep' for e in mine)} kept"
        lines.append(head + (f"; best {best.metric:.6f} (#{best.id}: {best.description})" if best else ""))
        for e in mine[-3:]:
            value = f"{e.metric:.6f}" if e.metric is not None else "-"
            lines.append(f"  - #{e.id} {e.status} {value}: {e.description}")
    return "\n".join(lines)
