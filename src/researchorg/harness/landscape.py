"""A hidden landscape of research ideas with known true effects: the instrument for judging decisions and orgs.

An idea is something an agent may try: turning a knob or making a code-like
change. Each idea has a true effect on the metric (most are null, some harm,
some help), a few pairs interact (together they help or hurt more than apart),
gains show diminishing returns (the more the program already gained, the less
the next idea adds), and every run adds seed noise of a known sigma. A run
takes a simulated duration and crashes with a small probability.

Everything is a pure function of the landscape's seed, the set of ideas in the
code and the run's seed: the real lab (through `harness.py` of the `simulated`
task) and the simulated world (world/simulated.py) measure the same code alike.

Effects are in the metric's units, positive = better; the metric is minimized:
`value = base - realized_gain`.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Idea:
    name: str
    effect: float  # true gain when added alone to the baseline (positive: better)
    kind: str  # "knob" or "code"


@dataclass(frozen=True)
class Outcome:
    metric: float | None  # None: the run crashed
    seconds: float  # simulated training time


@dataclass
class Landscape:
    seed: int = 0
    n_ideas: int = 40
    sigma: float = 0.01  # seed noise of one run
    base: float = 1.0  # the baseline's true metric
    p_win: float = 0.3  # fraction of ideas that help ...
    p_harm: float = 0.3  # ... and that hurt; the rest are null
    win_sigmas: tuple[float, float] = (1.0, 5.0)  # true gains of helpful ideas, in units of sigma
    harm_sigmas: tuple[float, float] = (1.0, 8.0)
    interactions: int = 6  # pairs of ideas that interact
    saturation: float = 0.25  # diminishing returns: realized gain = S * (1 - exp(-raw / S))
    seconds: float = 300.0  # mean simulated duration of a run
    crash_p: float = 0.03
    ideas: list[Idea] = field(init=False)
    pairs: dict[tuple[str, str], float] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.ideas = []
        for i in range(self.n_ideas):
            u = rng.random()
            if u < self.p_win:
                effect = rng.uniform(*self.win_sigmas) * self.sigma
            elif u < self.p_win + self.p_harm:
                effect = -rng.uniform(*self.harm_sigmas) * self.sigma
            else:
                effect = 0.0
            self.ideas.append(Idea(f"IDEA_{i:02d}", effect, "knob" if i % 2 == 0 else "code"))
        names = [idea.name for idea in self.ideas]
        self.pairs = {}
        for _ in range(self.interactions):
            a, b = sorted(rng.sample(names, 2))
            self.pairs[(a, b)] = rng.choice((-1, 1)) * rng.uniform(1.0, 4.0) * self.sigma
        self._by_name = {idea.name: idea for idea in self.ideas}
        self._partners: dict[str, list[tuple[str, float]]] = {}
        for (a, b), value in self.pairs.items():
            self._partners.setdefault(a, []).append((b, value))
            self._partners.setdefault(b, []).append((a, value))

    def idea(self, name: str) -> Idea:
        return self._by_name[name]

    def raw_gain(self, config: frozenset[str]) -> float:
        # fsum: exact, so the value of a set of ideas does not depend on the order a set iterates in (which
        # changes with PYTHONHASHSEED between processes)
        return math.fsum([*(self._by_name[name].effect for name in config),
                          *(v for (a, b), v in self.pairs.items() if a in config and b in config)])

    def true_value(self, config: frozenset[str]) -> float:
        """The metric of `config` without noise (the mean over infinitely many seeds)."""
        raw = self.raw_gain(config)
        realized = self.saturation * (1 - math.exp(-raw / self.saturation)) if raw > 0 else raw
        return self.base - realized

    def helpful(self, config: frozenset[str], candidates: list[str]) -> list[str]:
        """The candidates whose addition to `config` truly helps: its effect and its interactions with the
        ideas in `config` sum to a gain (what `true_gain` says, without re-summing the whole code each time)."""
        found = []
        for name in candidates:
            effect = self._by_name[name].effect
            partners = [v for other, v in self._partners.get(name, ()) if other in config]
            if (math.fsum([effect, *partners]) if partners else effect) > 0:
                found.append(name)
        return found

    def true_gain(self, candidate: frozenset[str], incumbent: frozenset[str]) -> float:
        """How much `candidate` truly beats `incumbent` (positive: better)."""
        return self.true_value(incumbent) - self.true_value(candidate)

    def run(self, config: frozenset[str], seed: int) -> Outcome:
        """One run of `config` with `seed`: deterministic in both."""
        rng = random.Random(_digest(self.seed, seed, *sorted(config)))
        seconds = self.seconds * rng.uniform(0.9, 1.1)
        if rng.random() < self.crash_p:
            return Outcome(None, seconds * rng.random())
        return Outcome(self.true_value(config) + rng.gauss(0.0, self.sigma), seconds)


def tree_of(config: frozenset[str]) -> str:
    """A stable name of a set of ideas, playing the part of a git tree in the simulated world."""
    return hashlib.sha1(",".join(sorted(config)).encode()).hexdigest()


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")
