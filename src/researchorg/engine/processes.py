"""Processes: what the organization does on a clock or on events, beside the agents' own work.

`standup`: every `every_experiments` finished proposals (the lab's own runs,
noise floor and re-runs, do not count) or `every_minutes` minutes (whichever
comes first, checked as each proposal finishes), post a digest of everyone's
results to everyone: per agent, how many experiments since the last standup,
how many kept, its best and its latest three tries (also listed in the
message's data, so that an agent can read them without parsing the text).
"""

from __future__ import annotations

from collections.abc import Callable

from researchorg.config import ProcessSpec
from researchorg.engine.messages import PostOffice
from researchorg.ledger import Experiment, Ledger
from researchorg.report.summary import SUMMARY_DIFF_CHARS, summarize
from researchorg.task.spec import MetricSpec


class Standup:
    """Posts a digest when enough proposals finished or enough time passed since the last one."""

    def __init__(self, spec: ProcessSpec, ledger: Ledger, post: PostOffice, metric: MetricSpec,
                 clock: Callable[[], float]):
        self.spec, self.ledger, self.post, self.metric, self.clock = spec, ledger, post, metric, clock
        self._last_at = clock()
        self._recent: list[Experiment] = []  # proposals finished since the last standup, in the order they finished

    def on_experiment(self, done: Experiment) -> int | None:
        """Called after every finished run; posts the digest if it is due and returns its message id."""
        if done.kind != "proposal":
            return None
        self._recent.append(done)
        due = (self.spec.every_experiments is not None and len(self._recent) >= self.spec.every_experiments) or \
              (self.spec.every_minutes is not None and self.clock() - self._last_at >= 60 * self.spec.every_minutes)
        if not due:
            return None
        finished, self._recent, self._last_at = self._recent, [], self.clock()
        text, listed = digest(finished, self.ledger, self.metric)
        return self.post.send("standup", None, "digest", text, data={"experiments": listed})


def digest(recent: list[Experiment], ledger: Ledger, metric: MetricSpec) -> tuple[str, list[int]]:
    """The digest's text, and the experiments it lists."""
    lines = [f"Standup: {len(recent)} experiments since the last one ({metric.name}, {metric.direction})."]
    listed = []
    for agent in sorted({e.agent for e in recent}):
        mine = [e for e in recent if e.agent == agent]
        best = summarize(ledger.experiments(agent=agent, diff_chars=SUMMARY_DIFF_CHARS), metric).best
        head = f"- **{agent}**: {len(mine)} new, {sum(e.status == 'keep' for e in mine)} kept"
        lines.append(head + (f"; best {best.metric:.6f} (#{best.id}: {best.description})" if best else ""))
        for e in mine[-3:]:
            value = f"{e.metric:.6f}" if e.metric is not None else "-"
            lines.append(f"  - #{e.id} {e.status} {value}: {e.description}")
            listed.append(e.id)
    return "\n".join(lines), listed
