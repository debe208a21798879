"""What a benchmark measures of one repeat, from its ledger, whichever world ran it; and the summary over repeats.

Per repeat: the **verified** best-so-far curve is the program branch's
measured value (its code's value, as stats.score measures it) after each
merge, which only verified changes reach; the **raw** curve is the best
single kept run. Each point sits on three axes: time, slot-time used,
experiments finished. From them: the final verified improvement over the
baseline (the noise floor's mean), the area under the verified improvement
curve over the horizon (normalized: the time-average of the improvement), the
time and the experiments to reach a target improvement, keep, reproduction
and crash rates, tokens and USD per merged gain, and (the simulated world
knows it) the true improvement, after each merge too. Over repeats: means with
95% confidence intervals (Student t) and paired t-tests between orgs.

A target is a number, or a reference org: then each repeat's target is what
that org reached in the same repeat (its final improvement), and each org's
parallel efficiency is `T(ref) * slots(ref) / (T(org) * slots(org))`, the
median over repeats, T the time to the target. With a one-slot reference that
is T(1) / (n T(n)): 1 when n slots reach it n times as fast. Where the world
knows the truth, times to a target are read on the true curve (a main that
lucky runs measured well has not improved).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from researchorg.ledger import Ledger
from researchorg.stats.score import gain
from researchorg.task.spec import MetricSpec

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
    paused: dict[str, str] = field(default_factory=dict)  # agents the engine paused (they failed): agent -> why
    true_curve: list[Point] = field(default_factory=list)  # main's true improvement after each merge (simulation)

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
        data["true_curve"] = [tuple(p) for p in data.get("true_curve", [])]
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


def summarize(results: dict[str, list[RepeatResult]], target: float | str | None = None,
              slots: dict[str, int] | None = None) -> dict[str, Any]:
    """Per org: every measure's mean and 95% CI; the time to `target` (an improvement, or the label of a reference
    org: what it reached in each repeat) and, with a reference, the parallel efficiency (`slots`: each org's);
    paired comparisons."""
    table: dict[str, Any] = {}
    truth = all(r.true_curve for rs in results.values() for r in rs)
    for label, repeats in results.items():
        row = {}
        for key, _ in MEASURES:
            values = [getattr(r, key) for r in repeats if getattr(r, key) is not None]
            row[key] = interval(values) if values else (math.nan, math.nan)
        table[label] = row
    if target is not None:
        _to_target(results, table, target, slots or {}, truth)
    paired = []
    labels = list(results)
    # what the comparisons compare: the truth where every repeat knows it (simulation: a main measured by lucky
    # runs overstates itself, the winner's curse), else main's measured improvement
    key = "final_true" if all(r.final_true is not None for rs in results.values() for r in rs) else "final_verified"
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            xs, ys = [getattr(x, key) for x in results[a]], [getattr(y, key) for y in results[b]]
            diffs = [x - y for x, y in zip(xs, ys, strict=True)]
            mean, half = interval(diffs)
            p = stats.ttest_rel(xs, ys).pvalue if len(diffs) > 1 else math.nan
            paired.append({"a": a, "b": b, "mean_diff": mean, "ci95": half, "p": float(p)})
    summary = {"orgs": table, "paired": paired, "paired_on": dict(MEASURES)[key]}
    if target is not None:
        summary["target"] = {"reference": target if isinstance(target, str) else None,
                             "value": target if not isinstance(target, str) else None,
                             "on": "true improvement" if truth else "improvement of main"}
    return summary


def _to_target(results: dict[str, list[RepeatResult]], table: dict[str, Any], target: float | str,
               slots: dict[str, int], truth: bool) -> None:
    """Each org's median time and experiments to the target, the share of repeats that reached it and, with a
    reference org, the parallel efficiency."""
    def curve(r: RepeatResult) -> list[Point]:
        return r.true_curve if truth else r.verified_curve

    def reached(r: RepeatResult, goal: float) -> Point | None:
        return next((p for p in curve(r) if p[-1] >= goal - 1e-12), None)

    reference = target if isinstance(target, str) else None
    goal = {r.repeat: curve(r)[-1][-1] for r in results[reference]} if reference else {}
    ref_at: dict[int, float] = {}  # when the reference reached its own final improvement, per repeat
    for r in results[reference] if reference else []:
        hit = reached(r, goal[r.repeat])
        if hit is not None and hit[0] > 0:  # a reference that never improved leaves nothing to speed up
            ref_at[r.repeat] = hit[0]
    for label, repeats in results.items():
        row = table[label]
        hits = {r.repeat: reached(r, goal[r.repeat] if reference else target) for r in repeats}
        row["time_to_target_h"] = statistics.median(p[0] if p else math.inf for p in hits.values()) / 3600
        row["experiments_to_target"] = statistics.median(p[2] if p else math.inf for p in hits.values())
        row["reached_target"] = sum(p is not None for p in hits.values()) / len(hits)
        if reference:
            ratios = [0.0 if hits.get(repeat) is None else at * slots.get(reference, 1) /
                      (max(hits[repeat][0], 1e-9) * slots.get(label, 1))
                      for repeat, at in ref_at.items()]
            row["parallel_efficiency"] = statistics.median(ratios) if ratios else math.nan


def measure(ledger: Ledger, metric: MetricSpec, label: str, repeat: int, final_true: float | None = None,
            true_of: Callable[[str], float] | None = None) -> RepeatResult:
    """A repeat's curves and rates, from its ledger (`final_true`: the true improvement, where it is known;
    `true_of`: the true improvement of a commit, where it is known)."""
    runs = [e for e in ledger.experiments() if e.status != "interrupted"]
    start = min((e.started_at for e in runs), default=0.0)
    floor = ledger.noise_floor()
    kept = [e for e in runs if e.status == "keep" and e.metric is not None and e.fidelity == 1.0]  # (not screens)
    base = floor.mean if floor else (kept[0].metric if kept else 0.0)
    merges = ledger.merges()
    verified = [(0.0, 0.0)] + [(m.at - start, gain(metric, m.metric, base)) for m in merges]
    raw = best_so_far(((e.ended_at or start) - start, gain(metric, e.metric, base)) for e in kept)
    spans = [(e.started_at - start, e.ran_until - start) for e in runs]
    # a merge can land just after the last run ended (its verification decided it)
    horizon = max([end for _, end in spans] + [verified[-1][0], raw[-1][0]]) or 1e-9
    decided = [e for e in runs if e.kind == "proposal" and e.status in ("keep", "discard")]
    rates = ledger.reproduction("agent").values()
    usage = ledger.usage()
    verified_n = sum(n for _, n in rates)
    return RepeatResult(
        label, repeat, on_axes(verified, spans), on_axes(raw, spans), horizon, len(runs), verified[-1][1],
        raw[-1][1], final_true, area(verified, horizon) / horizon,
        sum(e.status == "keep" for e in decided) / len(decided) if decided else 0.0,
        sum(ok for ok, _ in rates) / verified_n if verified_n else None,
        statistics.fmean(e.status in ("crash", "timeout", "invalid") for e in runs) if runs else 0.0,
        merges=len(merges), tokens=usage.input_tokens + usage.output_tokens, cost_usd=usage.cost_usd,
        slot_seconds=sum(end - begin for begin, end in spans),
        paused={e.data["agent"]: e.data.get("reason", "") for e in ledger.events() if e.kind == "agent_paused"},
        true_curve=on_axes([(0.0, 0.0)] + [(m.at - start, true_of(m.after)) for m in merges], spans)
        if true_of is not None else [])
