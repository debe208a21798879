"""Run a benchmark spec and measure each org, with 95% confidence intervals over repeats.

Every org gets the same compute (slots and runs, or hours) and, in repeat r,
the same seed (the spec's seed + r): in simulation the same hidden landscape,
on a real task the same offset of the agents' seeds, so the comparison between
two orgs is paired. The simulated task runs in the virtual lab, any other
through the real lab (bench/real.py). Each finished (org, repeat) is saved as
JSON in the output directory, so an interrupted bench resumes where it stopped.

Per repeat: the **verified** best-so-far curve is the program branch's
measured value (mean of its code's runs) after each merge, which only
verified changes reach; the **raw** curve is the best single kept run. Each
point sits on three axes: time, slot-time used, experiments finished. From
them: the final verified improvement over the baseline, the area under the
verified improvement curve over the horizon (normalized: the time-average of
the improvement), the time and the experiments to reach a target improvement,
keep, reproduction and crash rates, and (the simulation knows it) the true
improvement.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from researchorg.bench.spec import BenchSpec
from researchorg.config import OrgSpec
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import VirtualLab

Point = tuple[float, float, float, float]  # (seconds, slot-seconds, experiments finished, improvement)
AXES = ("hours", "slot-hours", "experiments")  # the x axes of a curve: its first three coordinates


@dataclass
class RepeatResult:
    org: str
    repeat: int  # the repeat's seed (the spec's seed + its index): the same for every org, so pairs match
    verified_curve: list[Point]  # improvement of main over the baseline after each merge
    raw_curve: list[Point]  # the best single kept run's improvement
    horizon: float  # seconds the repeat ran (virtual in simulation)
    experiments: int
    final_verified: float
    final_raw: float
    final_true: float | None  # known only in simulation
    auc: float  # time-average of the verified improvement over the horizon
    keep_rate: float
    reproduction_rate: float | None
    crash_rate: float
    merges: int = 0
    tokens: int = 0  # LLM agents' input + output tokens
    cost_usd: float = 0.0
    slot_seconds: float = 0.0  # slot time the repeat used

    @property
    def tokens_per_merge(self) -> float | None:
        """Tokens spent per change merged into main (LLM agents); None without tokens or merges."""
        return self.tokens / self.merges if self.tokens and self.merges else None

    @property
    def cost_per_merge(self) -> float | None:
        return self.cost_usd / self.merges if self.cost_usd and self.merges else None

    @property
    def horizons(self) -> tuple[float, float, float]:
        return self.horizon, self.slot_seconds, float(self.experiments)

    @classmethod
    def load(cls, path: Path) -> RepeatResult | None:
        """A saved repeat; None if the file is of an older format (the repeat is run again)."""
        data = json.loads(path.read_text())
        if any(len(p) != 4 for p in data.get("verified_curve", [[]])):
            return None
        data["verified_curve"] = [tuple(p) for p in data["verified_curve"]]
        data["raw_curve"] = [tuple(p) for p in data["raw_curve"]]
        return cls(**data)


def on_axes(curve: list[tuple[float, float]], runs: list[tuple[float, float]]) -> list[Point]:
    """Put each (seconds, value) point of a curve on all three axes: the slot-seconds the `runs` (started,
    ended; seconds from the same start) had used by then, and how many of them had finished."""
    starts, ends = sorted(s for s, _ in runs), sorted(e for _, e in runs)
    start_sums, end_sums = list(itertools.accumulate(starts, initial=0.0)), list(itertools.accumulate(ends,
                                                                                                   initial=0.0))
    points = []
    for t, value in curve:
        started, ended = bisect.bisect_right(starts, t), bisect.bisect_right(ends, t)
        used = (started * t - start_sums[started]) - (ended * t - end_sums[ended])
        points.append((t, used, float(ended), value))
    return points


def repeat_seed(spec: BenchSpec, index: int) -> int:
    return spec.seed + index


def run_repeat(spec: BenchSpec, label: str, org: OrgSpec, repeat: int, slots: int) -> RepeatResult:
    """One repeat in the virtual lab; `repeat` is its seed (the landscape's, and the agents' offset)."""
    landscape = Landscape(seed=repeat, **spec.landscape)
    lab = VirtualLab.from_org(org, landscape, slots=slots, seed_offset=1000 * repeat,
                              max_experiments=spec.compute.experiments, max_hours=spec.compute.hours)
    result = lab.run()
    base = result.baseline_value if result.baseline_value is not None else landscape.base
    verified = [(0.0, 0.0)] + [(t, base - v) for (t, _, _), v in zip(result.merges, result.merged_values,
                                                                      strict=True)]
    kept = {d.run for d in result.decisions if d.keep}
    raw = best_so_far((r.ended, base - r.metric) for r in result.runs if r.id in kept)
    spans = [(r.started, r.ended) for r in result.runs]
    horizon = max(result.seconds, 1e-9)
    decisions = len(result.decisions)
    return RepeatResult(
        label, repeat, on_axes(verified, spans), on_axes(raw, spans), horizon, len(result.runs), verified[-1][1],
        raw[-1][1], landscape.base - landscape.true_value(lab.program), area(verified, horizon) / horizon,
        sum(d.keep for d in result.decisions) / decisions if decisions else 0.0,
        sum(ok for _, ok, _ in result.verifications) / len(result.verifications) if result.verifications else None,
        sum(r.status == "crash" for r in result.runs) / max(len(result.runs), 1), merges=len(result.merges),
        slot_seconds=result.slot_seconds)


def best_so_far(gains: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The raw curve: from (0, 0), each (time, gain) that beats every earlier one, in time order."""
    curve = [(0.0, 0.0)]
    for t, g in sorted(gains):
        if g > curve[-1][1]:
            curve.append((t, g))
    return curve


def area(curve: list[tuple[float, ...]], horizon: float) -> float:
    """Area under a step curve (value holds until the next point; x first, value last) from 0 to `horizon`."""
    total = 0.0
    for p0, p1 in zip(curve, [*curve[1:], (horizon, 0.0)], strict=True):
        total += p0[-1] * (min(p1[0], horizon) - min(p0[0], horizon))
    return total


def value_at(curve: list[Point], x: float, axis: int = 0) -> float:
    """The curve's value at `x` on axis `axis` (0 seconds, 1 slot-seconds, 2 experiments)."""
    value = 0.0
    for point in curve:
        if point[axis] > x:
            break
        value = point[-1]
    return value


def run_bench(spec: BenchSpec, orgs: list[tuple[str, OrgSpec, Path, int]], out: Path,
              on_done: Any = None) -> dict[str, list[RepeatResult]]:
    """Every (org, repeat), skipping those already saved in `out`: the simulated task in the virtual lab, any
    other task through the real lab (bench/real.py, programs side by side when the spec allows)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    found: dict[tuple[str, int], RepeatResult] = {}
    todo = []
    for label, org, org_file, slots in orgs:
        for index in range(spec.repeats):
            seed = repeat_seed(spec, index)
            path = out / "runs" / f"{label}-{seed}.json"
            saved = RepeatResult.load(path) if path.is_file() else None
            if saved is not None:
                found[(label, seed)] = saved
                if on_done is not None:
                    on_done(saved)
            else:
                todo.append((label, org, org_file, slots, seed, path))

    def save(result: RepeatResult, path: Path) -> None:
        path.write_text(json.dumps(asdict(result)))
        found[(result.org, result.repeat)] = result
        if on_done is not None:
            on_done(result)

    if spec.task == "simulated":
        for label, org, _, slots, seed, path in todo:
            save(run_repeat(spec, label, org, seed, slots), path)
    elif todo:
        from researchorg.bench.real import run_real_repeats

        run_real_repeats(spec, todo, out / "programs", save)
    return {label: [found[(label, repeat_seed(spec, i))] for i in range(spec.repeats)] for label, *_ in orgs}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


MEASURES = (("final_verified", "final improvement of main"), ("final_raw", "final raw improvement"),
            ("final_true", "final true improvement"), ("auc", "time-averaged improvement of main (AUC)"),
            ("keep_rate", "keep rate"), ("reproduction_rate", "reproduction rate"), ("crash_rate", "crash rate"),
            ("tokens_per_merge", "tokens per merged gain"), ("cost_per_merge", "USD per merged gain"))


def summarize(results: dict[str, list[RepeatResult]], target: float | None = None) -> dict[str, Any]:
    """Per org: every measure's mean and 95% CI; time to `target` verified improvement; paired comparisons."""
    table: dict[str, Any] = {}
    for label, repeats in results.items():
        row = {}
        for key, _ in MEASURES:
            values = [getattr(r, key) for r in repeats if getattr(r, key) is not None]
            row[key] = interval(values) if values else (math.nan, math.nan)
        if target is not None:
            reached = [next((p for p in r.verified_curve if p[-1] >= target), None) for r in repeats]
            row["time_to_target_h"] = statistics.median(p[0] if p else math.inf for p in reached) / 3600
            row["experiments_to_target"] = statistics.median(p[2] if p else math.inf for p in reached)
            row["reached_target"] = sum(p is not None for p in reached) / len(reached)
        table[label] = row
    paired = []
    labels = list(results)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            diffs = [x.final_verified - y.final_verified for x, y in zip(results[a], results[b], strict=True)]
            mean, half = interval(diffs)
            p = stats.ttest_rel([x.final_verified for x in results[a]],
                                [y.final_verified for y in results[b]]).pvalue if len(diffs) > 1 else math.nan
            paired.append({"a": a, "b": b, "mean_diff": mean, "ci95": half, "p": float(p)})
    return {"orgs": table, "paired": paired}
