"""The `simulated` backend: a researcher or a lead that draws ideas from the simulated task's hidden landscape.

It stands for an agent of a given idea quality (`idea_quality` in the role).
As a researcher, each proposal sets one more idea of ideas.py to 1: with that
probability one that truly helps the code it stands at (it "has a good
idea"), otherwise any idea it has not tried yet; on a landscape with
`insight` (the calibrated one), the one of those that looks best to it;
given an assignment, the assigned idea. As a lead (`submits = false`), at each turn it assigns an idea
for the program branch's current code to each of its idle researchers, picked
the same way from what the whole organization was assigned, and merges the
kept results their reports announce. Either way it hears the standup's
digest and does not try again an idea it heard was tried. When it has tried
every idea not in its code it starts a new round: a discard may have been
noise, and the code has changed since. It thinks for the role's
`think_seconds` (the engine's clock) and answers at once, so it runs in the
real lab and in virtual time alike. It works only on the simulated task.
"""

from __future__ import annotations

import functools
import math
import random
import re
import statistics
import tomllib

from researchorg.agents.base import AgentContext, Proposal
from researchorg.errors import AgentError
from researchorg.harness.landscape import Landscape
from researchorg.ledger import Experiment, Message

IDEAS_FILE = "ideas.py"
_IDEA_ON = re.compile(r"(?m)^(IDEA_\d+)\s*=\s*1\b")


def config_of(text: str) -> frozenset[str]:
    """The ideas switched on in an ideas.py."""
    return frozenset(_IDEA_ON.findall(text))


def switch_on(text: str, idea: str) -> str:
    """ideas.py with `idea` set to 1 (its line added if the file lists only the ideas that are on)."""
    text, n = re.subn(rf"(?m)^({idea}\s*=\s*)0\b", r"\g<1>1", text)
    return text if n or idea in config_of(text) else f"{text}{idea} = 1\n\n"


@functools.cache
def _landscape(params: str) -> Landscape:
    return Landscape(**tomllib.loads(params))


class IdeaPicker:
    """Which idea to add next to some code, for an agent of a given quality, on a landscape whose researchers see
    ideas with its `insight` (0: none, they draw at random)."""

    def __init__(self, landscape: Landscape, quality: float, seed: int):
        self.landscape, self.quality = landscape, quality
        self.rng = random.Random(seed)
        self.tried: set[str] = set()
        # its own view of this landscape: another landscape, or another agent, looks otherwise
        self.looks = perceived(landscape, random.Random(f"looks {landscape.seed} {seed}")) if landscape.insight else {}

    def next(self, config: frozenset[str]) -> str | None:
        """The idea to add to `config` next; None only when `config` has every idea."""
        remaining = [i.name for i in self.landscape.ideas if i.name not in config and i.name not in self.tried]
        if not remaining:  # a new round
            self.tried.clear()
            remaining = [i.name for i in self.landscape.ideas if i.name not in config]
            if not remaining:
                return None
        if self.rng.random() < self.quality:
            good = self.landscape.helpful(config, remaining)
            if good:
                remaining = good
        choice = max(remaining, key=self.looks.__getitem__) if self.looks else self.rng.choice(remaining)
        self.tried.add(choice)
        return choice


def perceived(landscape: Landscape, rng: random.Random) -> dict[str, float]:
    """How good each idea looks to one researcher: the normal score of its effect's rank, times the landscape's
    insight, plus independent normal noise (so the look correlates with the truth by about `insight`)."""
    rho = min(max(landscape.insight, 0.0), 1.0)
    ranked = sorted(landscape.ideas, key=lambda idea: idea.effect)
    normal = statistics.NormalDist()
    n = len(ranked)
    return {idea.name: rho * normal.inv_cdf((i + 0.5) / n) + math.sqrt(1 - rho * rho) * rng.gauss(0.0, 1.0)
            for i, idea in enumerate(ranked)}


def describe(landscape: Landscape, idea: str) -> str:
    return f"add {idea} ({landscape.idea(idea).kind})"


class SimulatedAgent:
    blocking = False

    def __init__(self, ctx: AgentContext, quality: float, seed: int):
        try:
            landscape = _landscape(ctx.read("landscape.toml"))
            ctx.read(IDEAS_FILE)
        except (OSError, KeyError, tomllib.TOMLDecodeError, TypeError):
            raise AgentError(f"agent {ctx.name}: the simulated backend works only on the simulated task "
                             f"(no landscape.toml and {IDEAS_FILE} here)") from None
        self.picker = IdeaPicker(landscape, quality, seed)
        self._seen = 0  # the last assignment message (a lead's) or report it read
        for e in ctx.history():  # a resumed run does not propose what it already tried
            self.picker.tried.update(e.proposal.get("idea", "").split())

    # a researcher --------------------------------------------------------------------------
    def propose(self, ctx: AgentContext) -> Proposal | None:
        text = ctx.read(IDEAS_FILE)
        assigned = ctx.assignment.data.get("idea") if ctx.assignment is not None else None
        idea = assigned or self.picker.next(config_of(text))
        if idea is None:
            return None
        return Proposal(description=describe(self.picker.landscape, idea), files={IDEAS_FILE: switch_on(text, idea)},
                        data={"idea": idea})

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        pass

    def hear(self, ctx: AgentContext, message: Message) -> None:
        """A standup's digest: the ideas it lists were tried."""
        if message.kind == "digest":
            for experiment_id in message.data.get("experiments", []):
                self.picker.tried.update(ctx.ledger.experiment(experiment_id).proposal.get("idea", "").split())

    # a lead -----------------------------------------------------------------------------------
    def act(self, ctx: AgentContext) -> None:
        """Merge what the latest reports say was kept; give each idle researcher an idea for main's code."""
        for message in ctx.ledger.messages(after=self._seen):
            self._seen = message.id
            if message.kind == "assignment":  # what any lead assigned is tried
                self.picker.tried.update(message.data.get("idea", "").split())
            elif message.kind == "report" and message.recipient == ctx.name and ctx.merge is not None \
                    and message.data.get("status") == "keep":
                ctx.merge(message.experiment_id)
        config = config_of(ctx.read_main(IDEAS_FILE))
        for researcher in ctx.idle():
            idea = self.picker.next(config)
            if idea is None:
                return
            ctx.send(researcher, "assignment", f"Try {describe(self.picker.landscape, idea)}.", data={"idea": idea})
