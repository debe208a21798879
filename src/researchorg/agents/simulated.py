"""The `simulated` backend: an agent that draws ideas from the simulated task's hidden landscape.

It stands for a researcher of a given idea quality (`idea_quality` in the
role): each proposal sets one more idea of ideas.py to 1, a truly helpful one
with that probability, else any untried one. It "thinks" for `think_seconds`.
It works only on the `simulated` task, whose landscape.toml it reads.
"""

from __future__ import annotations

import re
import tomllib

from researchorg.agents.base import AgentContext, Proposal
from researchorg.errors import AgentError
from researchorg.ledger import Experiment
from researchorg.sim.ideas import IdeaPicker, describe
from researchorg.sim.landscape import Landscape

IDEAS_FILE = "ideas.py"
_IDEA_ON = re.compile(r"(?m)^(IDEA_\d+)\s*=\s*1\b")


def config_of(text: str) -> frozenset[str]:
    """The ideas switched on in an ideas.py."""
    return frozenset(_IDEA_ON.findall(text))


def switch_on(text: str, idea: str) -> str:
    return re.sub(rf"(?m)^({idea}\s*=\s*)0\b", r"\g<1>1", text)


class SimulatedAgent:
    def __init__(self, ctx: AgentContext, quality: float, seed: int, think_seconds: float = 0.0):
        landscape_file = ctx.worktree / "landscape.toml"
        if not landscape_file.is_file() or not (ctx.worktree / IDEAS_FILE).is_file():
            raise AgentError(f"agent {ctx.name}: the simulated backend works only on the simulated task "
                             f"(no landscape.toml and {IDEAS_FILE} in {ctx.worktree})")
        landscape = Landscape(**tomllib.loads(landscape_file.read_text()))
        self.picker = IdeaPicker(landscape, quality, seed)
        self.think_seconds = think_seconds
        for e in ctx.history():  # a resumed run does not propose what it already tried
            self.picker.tried.update(e.proposal.get("idea", "").split())

    def propose(self, ctx: AgentContext) -> Proposal | None:
        ctx.think(self.think_seconds)
        text = ctx.read(IDEAS_FILE)
        idea = self.picker.next(config_of(text))
        if idea is None:
            return None
        return Proposal(description=describe(self.picker.landscape, idea), files={IDEAS_FILE: switch_on(text, idea)},
                        data={"idea": idea})

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        pass
