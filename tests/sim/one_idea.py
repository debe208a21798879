"""A simulated researcher whose one proposal switches on the idea a rule picks from the landscape."""

from __future__ import annotations

from collections.abc import Callable

from researchorg import register_backend
from researchorg.agents.base import Proposal
from researchorg.agents.options import SimulatedOptions
from researchorg.agents.simulated import SimulatedAgent, switch_on
from researchorg.harness.landscape import Idea


def register_one_idea(backend: str, pick: Callable[[list[Idea]], Idea]) -> None:
    """Register `backend`: a researcher proposing `pick(landscape's ideas)` switched on."""

    class _OneIdea(SimulatedAgent):
        def propose(self, ctx):
            text = ctx.read("ideas.py")
            idea = pick(self.picker.landscape.ideas)
            return Proposal(description=f"add {idea.name}", files={"ideas.py": switch_on(text, idea.name)},
                            data={"idea": idea.name})

    register_backend(backend, lambda role, ctx, index: _OneIdea(ctx, 0.0, index), SimulatedOptions)
