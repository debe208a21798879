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

The base landscape's noise is seed noise alone. The realistic one
(`Landscape.realistic`) adds what real runs on a fixed wall-clock budget carry,
with parameters measured on tinylm (docs/rigor.md says how): slots of one
hardware class differ in speed, and the machine goes through busy spells (other
work on its cores) that slow every run in them. A run's throughput (its steps)
is the slot's speed times what the load leaves of it, and the metric pays for
lost steps: `+ throughput_slope * ln(1 / throughput)`. Such a run reports its
`steps` and the CPU seconds other work took during it (`other_cpu_s`), as the
real runner does. The truth (`true_value`) is the code's value at full speed.

A run may train for a fraction of the budget (its `fidelity`, as a screening
run does: engine/evidence.py). What a short run measures is not the full
run's truth scaled down: each idea's effect at the short budget is
`fidelity_slope` times its full effect plus a departure of its own (drawn once
per idea: changes that learn fast early, or late), whose spread is
`fidelity_deviation` times the spread of the ideas' scaled effects, and its
seed noise is `fidelity_sigma` times the full run's. Both landscapes take
these from tinylm at a quarter of a 40 s budget (benchmarks/fidelity.py; the
guide (docs/guide.md) gives the command and a shorter budget's figures); they matter only to
runs shorter than the budget, which only a screening policy makes.
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
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
    steps: float | None = None  # realistic landscape: the run's training steps
    other_cpu_s: float | None = None  # realistic landscape: CPU seconds other work took during the run


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
    # "uniform": the shares above, effects uniform in those ranges (nulls exactly 0); "continuous": a law
    # calibrated on real agents' runs: a share p_win of ideas gain Gamma(win_shape) of mean win_mean (a shape
    # below 1: most gains tiny, a few large), the rest lose Exp(harm_mean), in the metric's units at unit scale
    effects: str = "uniform"
    win_mean: float = 0.001
    win_shape: float = 1.0
    harm_mean: float = 0.003
    insight: float = 0.0  # how well a researcher sees an idea's worth before trying it (the correlation of its
    # ranking with the truth): 0, it draws at random; above 0, it tries the ideas that look best first
    scale_spread: float = 0.0  # each landscape's unit of effects and saturation is exp(N(0, this)) (agents and
    # tasks differ in how much there is to gain; the seed noise stays sigma)
    interactions: int = 6  # pairs of ideas that interact
    saturation: float = 0.25  # diminishing returns: realized gain = S * (1 - exp(-raw / S))
    seconds: float = 300.0  # mean simulated duration of a run
    crash_p: float = 0.03
    # realistic noise (all off in the base landscape)
    slot_speed_spread: float = 0.0  # each slot's speed is fixed in 1 +- this (uniform)
    busy_p: float = 0.0  # the share of the machine's time spent in busy spells
    busy_spell: float = 1800.0  # seconds a busy or idle spell of the machine lasts
    busy_slowdown: tuple[float, float] = (0.3, 0.8)  # the share of throughput a busy run loses (uniform)
    busy_cores: float = 2.0  # cores other work keeps busy in a busy spell
    throughput_slope: float = 0.0  # metric lost per unit of ln(1 / throughput)
    steps: float = 1000.0  # steps of a run at full speed
    # what a run on a fraction of the budget measures (measured on tinylm: benchmarks/fidelity.py)
    fidelity_slope: float = 0.74  # an idea's short-budget effect per unit of its full-budget effect
    fidelity_deviation: float = 0.84  # the spread of each idea's own departure from that line, per unit of the
    # spread of the scaled effects (a rank correlation of short and full effects of about 0.72, as on tinylm)
    fidelity_sigma: float = 1.13  # the short run's seed noise, per unit of the full run's
    ideas: list[Idea] = field(init=False)
    unit: float = field(init=False)  # this landscape's draw of the unit (scale_spread)
    pairs: dict[tuple[str, str], float] = field(init=False)

    def __post_init__(self) -> None:
        if self.effects not in ("uniform", "continuous"):
            raise ValueError(f"effects must be 'uniform' or 'continuous', not {self.effects!r}")
        rng = random.Random(self.seed)
        # the landscape's unit, drawn apart from the ideas (a landscape without spread draws as it always did)
        self.unit = math.exp(random.Random(_digest(self.seed, "unit")).gauss(0.0, self.scale_spread)) \
            if self.scale_spread else 1.0
        self.ideas = []
        for i in range(self.n_ideas):
            u = rng.random()
            if self.effects == "continuous":
                effect = self.unit * (rng.gammavariate(self.win_shape, self.win_mean / self.win_shape)
                                      if u < self.p_win else -rng.expovariate(1 / self.harm_mean))
            elif u < self.p_win:
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
        drift = random.Random(_digest(self.seed, "fidelity"))  # apart from the ideas' draws: they stay as they were
        spread = abs(self.fidelity_slope) * statistics.pstdev(idea.effect for idea in self.ideas) \
            if len(self.ideas) > 1 else 0.0
        self._short = {idea.name: self.fidelity_slope * idea.effect + drift.gauss(0.0, self.fidelity_deviation * spread)
                       for idea in self.ideas}
        self._partners: dict[str, list[tuple[str, float]]] = {}
        for (a, b), value in self.pairs.items():
            self._partners.setdefault(a, []).append((b, value))
            self._partners.setdefault(b, []).append((a, value))

    def idea(self, name: str) -> Idea:
        return self._by_name[name]

    def raw_gain(self, config: frozenset[str], short: bool = False) -> float:
        """The ideas' effects and interactions summed (on a short budget: their short-budget effects)."""
        # fsum: exact, so the value of a set of ideas does not depend on the order a set iterates in (which
        # changes with PYTHONHASHSEED between processes)
        scale = self.fidelity_slope if short else 1.0
        effects = (self._short[name] for name in config) if short else (self._by_name[name].effect for name in config)
        return math.fsum([*effects,
                          *(scale * v for (a, b), v in self.pairs.items() if a in config and b in config)])

    def true_value(self, config: frozenset[str], fidelity: float = 1.0) -> float:
        """The metric of `config` without noise (the mean over infinitely many seeds); with `fidelity` < 1,
        what a run on that fraction of the budget measures, less the offset all codes share there (only
        differences between codes at one fidelity mean anything)."""
        raw = self.raw_gain(config, short=fidelity < 1.0)
        ceiling = self.saturation * self.unit
        realized = ceiling * (1 - math.exp(-raw / ceiling)) if raw > 0 else raw
        return self.base - realized

    def best_config(self) -> frozenset[str]:
        """The best code a search of the truth finds: add the idea that truly helps most until none helps (with
        interactions the global best can differ, rarely by much). No policy, at any budget, ends above it.
        Without interactions it is every idea that helps (the gain of a sum of effects only grows with it)."""
        if not self.pairs:
            return frozenset(i.name for i in self.ideas if i.effect > 0)
        config: frozenset[str] = frozenset()
        while True:
            gains = {name: self.true_gain(config | {name}, config) for name in self.helpful(
                config, [i.name for i in self.ideas if i.name not in config])}
            if not gains:
                return config
            config = config | {max(gains, key=gains.__getitem__)}

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

    @classmethod
    def calibrated(cls, seed: int = 0, noise: float | None = None, **overrides: object) -> Landscape:
        """The landscape fitted to real agents' autoresearch runs on its own task (benchmarks/calibration.py); with
        `noise` (or a `sigma` among the overrides: the same thing), the fit made at the seed noise nearest to it
        (calibrated_at), with that noise."""
        noise = overrides.pop("sigma", noise)
        fitted = CALIBRATED if noise is None else {**calibrated_at(float(noise)), "sigma": noise}
        return cls(seed=seed, **{**fitted, **overrides})

    @classmethod
    def realistic(cls, seed: int = 0, **overrides: object) -> Landscape:
        """The landscape with realistic noise, its parameters measured on tinylm (docs/rigor.md)."""
        return cls(seed=seed, **{**REALISTIC, **overrides})

    @property
    def is_realistic(self) -> bool:
        return bool(self.slot_speed_spread or self.busy_p)

    def run(self, config: frozenset[str], seed: int, slot: str = "", at: float = 0.0,
            fidelity: float = 1.0) -> Outcome:
        """One run of `config` with `seed` (on `slot`, starting at `at` seconds, training for `fidelity` of the
        budget): deterministic in all of them."""
        rng = random.Random(_digest(self.seed, seed, *sorted(config)) if fidelity == 1.0
                            else _digest(self.seed, seed, fidelity, *sorted(config)))
        seconds = self.seconds * fidelity * rng.uniform(0.9, 1.1)
        if rng.random() < self.crash_p:
            return Outcome(None, seconds * rng.random())
        noise = self.sigma * (self.fidelity_sigma if fidelity < 1.0 else 1.0)
        metric = self.true_value(config, fidelity) + rng.gauss(0.0, noise)
        if not self.is_realistic:
            return Outcome(metric, seconds)
        slowdown = self.busy(at) and random.Random(_digest(self.seed, seed, slot, at)).uniform(*self.busy_slowdown)
        throughput = self.slot_speed(slot) * (1.0 - slowdown)
        other = self.busy_cores * seconds if slowdown else 0.0
        return Outcome(metric + self.throughput_slope * math.log(1.0 / throughput), seconds,
                       steps=round(self.steps * fidelity * throughput), other_cpu_s=round(other, 2))

    def slot_speed(self, slot: str) -> float:
        """A slot's fixed speed, relative to the hardware class's mean."""
        if not self.slot_speed_spread:
            return 1.0
        return 1.0 + random.Random(_digest(self.seed, "slot", slot)).uniform(-1, 1) * self.slot_speed_spread

    def busy(self, at: float) -> bool:
        """Whether the machine is in a busy spell at time `at`; in one, each run loses its own share of
        throughput (drawn from `busy_slowdown`: other work comes and goes)."""
        if not self.busy_p:
            return False
        return random.Random(_digest(self.seed, "spell", int(at // self.busy_spell))).random() < self.busy_p


# The calibrated landscape's parameters: fitted by `python benchmarks/calibration.py --holdout 0` on all the
# greedy runs of the shared trace corpus on autoresearch's own task (docs/rigor.md gives the figures, and the
# check of the method on held-out repositories).
# Effects, noise and saturation are relative to the metric (base 1). The seed noise is not fitted: published H100
# figures put it at a few 1e-4 bpb on a val_bpb near 1, 0.01% to 0.05% of the metric. The world takes the low
# end, 0.01%: the corpus's keeps gain half what a 0.03% noise makes the same keep rates gain, and the check on
# held-out repositories passes at 0.01% (coverage 0.82) and fails at 0.03% (0.73). CALIBRATED_AT_NOISE holds the
# fits at 0.03% and 0.1%, for every conclusion to be read across the range.
CALIBRATED: dict[str, object] = {
    "effects": "continuous", "n_ideas": 2000, "interactions": 0, "base": 1.0, "sigma": 0.0001, "seconds": 300.0,
    "p_win": 0.11, "win_mean": 0.000791, "win_shape": 0.278, "harm_mean": 0.00456, "saturation": 0.0324,
    "insight": 0.355, "scale_spread": 0.278, "crash_p": 0.0217,
}
# The same fit on the corpus's runs of other tasks (throughput, accuracy, bpb on small GPUs): their units differ
# run to run (scale_spread), and their noise is taken as 0.3% of the metric.
CALIBRATED_OTHER: dict[str, object] = {
    **CALIBRATED, "sigma": 0.003, "p_win": 0.0891, "win_mean": 0.0697, "win_shape": 0.369, "harm_mean": 0.00176,
    "saturation": 0.208, "insight": 0.291, "scale_spread": 3.94, "crash_p": 0.0719,
}

# Fits to resamples of the same runs' repositories (printed by benchmarks/calibration.py --holdout 0): how much
# the parameters could differ with other runs of the kind. `calibration.py --check` draws its predictive
# intervals over them; each overrides CALIBRATED (or CALIBRATED_OTHER).
CALIBRATED_DRAWS: list[dict[str, float]] = [
    {"p_win": 0.142, "win_mean": 0.000286, "win_shape": 0.351, "harm_mean": 0.00178, "saturation": 0.0364,
        "insight": 0.27, "scale_spread": 1.41, "crash_p": 0.0268},
    {"p_win": 0.239, "win_mean": 0.000694, "win_shape": 0.455, "harm_mean": 0.00146, "saturation": 0.0327,
        "insight": 0.0943, "scale_spread": 0.856, "crash_p": 0.0297},
    {"p_win": 0.314, "win_mean": 0.000444, "win_shape": 0.501, "harm_mean": 0.00139, "saturation": 0.042,
        "insight": 0.175, "scale_spread": 0.459, "crash_p": 0.0392},
    {"p_win": 0.0602, "win_mean": 0.000703, "win_shape": 0.41, "harm_mean": 0.00161, "saturation": 0.0316,
        "insight": 0.446, "scale_spread": 0.72, "crash_p": 0.0165},
    {"p_win": 0.255, "win_mean": 0.000425, "win_shape": 0.357, "harm_mean": 0.00182, "saturation": 0.0399,
        "insight": 0.191, "scale_spread": 0.584, "crash_p": 0.0089},
    {"p_win": 0.0826, "win_mean": 0.000585, "win_shape": 0.58, "harm_mean": 0.00141, "saturation": 0.0405,
        "insight": 0.228, "scale_spread": 0.606, "crash_p": 0.0452},
    {"p_win": 0.142, "win_mean": 0.000286, "win_shape": 0.351, "harm_mean": 0.00178, "saturation": 0.0364,
        "insight": 0.27, "scale_spread": 1.41, "crash_p": 0.0268},
    {"p_win": 0.205, "win_mean": 0.000572, "win_shape": 0.335, "harm_mean": 0.00171, "saturation": 0.0202,
        "insight": 0.226, "scale_spread": 0.77, "crash_p": 0.013},
]
# The same fit made at the H100 figure's middle and at the top of the seed noise's range (0.03% and 0.1%)
CALIBRATED_AT_NOISE: dict[float, dict[str, float]] = {
    0.0003: {"p_win": 0.255, "win_mean": 0.0015, "win_shape": 0.4, "harm_mean": 0.00407, "saturation": 0.0159,
        "insight": 0.205, "scale_spread": 0.725},
    0.001: {"p_win": 0.287, "win_mean": 0.00315, "win_shape": 1.08, "harm_mean": 0.00993, "saturation": 0.00502,
        "insight": 0.544, "scale_spread": 0.725},
}
CALIBRATED_OTHER_DRAWS: list[dict[str, float]] = [
    {"p_win": 0.306, "win_mean": 0.0168, "win_shape": 0.471, "harm_mean": 0.0311, "saturation": 0.0284,
        "insight": 0.338, "scale_spread": 0.484, "crash_p": 0.0486},
    {"p_win": 0.408, "win_mean": 0.0336, "win_shape": 0.149, "harm_mean": 0.0164, "saturation": 0.184,
        "insight": 0.164, "scale_spread": 1.27, "crash_p": 0.0331},
    {"p_win": 0.99, "win_mean": 0.00954, "win_shape": 0.0258, "harm_mean": 0.0509, "saturation": 0.162,
        "insight": 0.0792, "scale_spread": 2.1, "crash_p": 0.0789},
    {"p_win": 0.518, "win_mean": 0.00622, "win_shape": 0.142, "harm_mean": 0.0759, "saturation": 0.136,
        "insight": 0.102, "scale_spread": 2.12, "crash_p": 0.0451},
    {"p_win": 0.223, "win_mean": 0.0138, "win_shape": 0.661, "harm_mean": 0.0219, "saturation": 0.0783,
        "insight": 0.153, "scale_spread": 0.765, "crash_p": 0.0777},
    {"p_win": 0.292, "win_mean": 0.0109, "win_shape": 0.143, "harm_mean": 0.0737, "saturation": 0.175,
        "insight": 0.294, "scale_spread": 1.83, "crash_p": 0.0732},
    {"p_win": 0.279, "win_mean": 0.013, "win_shape": 0.342, "harm_mean": 0.0343, "saturation": 0.0354,
        "insight": 0.237, "scale_spread": 0.717, "crash_p": 0.0493},
    {"p_win": 0.279, "win_mean": 0.00875, "win_shape": 0.78, "harm_mean": 0.0291, "saturation": 0.0508,
        "insight": 0.103, "scale_spread": 1.03, "crash_p": 0.079},
]

# The realistic landscape's parameters, measured on tinylm: see docs/rigor.md for the commands and the figures.
REALISTIC: dict[str, object] = {
    "slot_speed_spread": 0.02,  # tinylm's idle steps vary 2.1% run to run (steps_cv)
    "busy_p": 0.25,  # not measured: a machine shared a quarter of the time (a scenario; docs/rigor.md)
    "busy_spell": 1800.0,  # not measured: spells of half an hour, about 6 runs
    "busy_slowdown": (0.2, 0.98),  # one busy core took 20% of a 1-thread run's steps, 98% of a 2-thread run's
    "busy_cores": 1.0,  # the load that did it: one spinning process (other_cpu_s ~ the run's seconds)
    "throughput_slope": 0.059,  # val_bpb lost per unit of ln(1 / steps): 5.9 seed sigmas (sigma here is 0.01)
}


def calibrated_at(noise: float) -> dict[str, object]:
    """The calibrated parameters fitted at the seed noise nearest to `noise` (relative to the metric, on a log
    scale): the law of effects is fitted together with the noise it assumes, so each noise has its own."""
    fits = {float(CALIBRATED["sigma"]): {}, **CALIBRATED_AT_NOISE}
    nearest = min(fits, key=lambda fitted: abs(math.log(fitted / noise)))
    return {**CALIBRATED, **fits[nearest], "sigma": nearest}


def tree_of(config: frozenset[str]) -> str:
    """A stable name of a set of ideas, playing the part of a git tree in the simulated world."""
    return hashlib.sha1(",".join(sorted(config)).encode()).hexdigest()


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")
