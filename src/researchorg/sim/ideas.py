"""How a simulated agent picks its next idea: with probability `quality` one that truly helps the code it
stands at (it "has a good idea"), otherwise any idea it has not tried yet. When it has tried every idea not
in its code, it starts a new round: it forgets what it tried (a discard may have been noise, and the code has
changed since), so an agent keeps working until the budget ends. The same picker drives the `simulated`
backend in the real lab and the agents of the virtual lab, so both make the same proposals."""

from __future__ import annotations

import random

from researchorg.sim.landscape import Landscape


class IdeaPicker:
    def __init__(self, landscape: Landscape, quality: float, seed: int):
        self.landscape, self.quality = landscape, quality
        self.rng = random.Random(seed)
        self.tried: set[str] = set()

    def next(self, config: frozenset[str]) -> str | None:
        """The idea to add to `config` next; None only when `config` has every idea."""
        remaining = [i.name for i in self.landscape.ideas if i.name not in config and i.name not in self.tried]
        if not remaining:  # a new round (in place: leads share one set)
            self.tried.clear()
            remaining = [i.name for i in self.landscape.ideas if i.name not in config]
            if not remaining:
                return None
        if self.rng.random() < self.quality:
            good = [n for n in remaining if self.landscape.true_gain(config | {n}, config) > 0]
            if good:
                remaining = good
        choice = self.rng.choice(remaining)
        self.tried.add(choice)
        return choice


def describe(landscape: Landscape, idea: str) -> str:
    """How a proposal that adds `idea` is described, in both labs."""
    return f"add {idea} ({landscape.idea(idea).kind})"
