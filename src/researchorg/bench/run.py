"""Run a benchmark spec in the virtual lab and measure each org, with 95% confidence intervals over repeats.

Every org gets the same compute (slots and runs, or virtual hours) and, in
repeat r, the same hidden landscape (seed r): the comparison between two orgs
is paired. Each finished (org, repeat) is saved as JSON in the output
directory, so an interrupted bench resumes where it stopped.

Per repeat: the **verified** best-so-far curve is the program branch's
measured value (mean of its code's runs) after each merge, which only
verified changes reach; the **raw** curve is the best single kept run. From
them: the final verified improvement over the baseline, the area under the
verified improvement curve over the horizon (normalized: the time-average of
the improvement), the time to reach a target improvement, keep, reproduction,
crash rates, and (the simulation knows it) the true improvement.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from researchorg.bench.spec import BenchSpec
from researchorg.config import OrgSpec
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import SimRole, VirtualLab


@dataclass
class RepeatResult:
    org: str
    repeat: int
    verified_curve: list[tuple[float, float]]  # (virtual seconds, improvement of main over the baseline)
    raw_curve: list[tuple[float, float]]  # (virtual seconds, best single kept run's improvement)
    horizon: float  # virtual seconds the repeat ran
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

    @property
    def tokens_per_merge(self) -> float | None:
        """Tokens spent per change merged into main (LLM agents); None without tokens or merges."""
        return self.tokens / self.merges if self.tokens and self.merges else None

    @property
    def cost_per_merge(self) -> float | None:
        return self.cost_usd / self.merges if self.cost_usd and self.merges else None


def run_repeat(spec: BenchSpec, label: str, org: OrgSpec, repeat: int, slots: int) -> RepeatResult:
    roles = [SimRole(r.name, r.count, r.idea_quality, r.think_seconds, r.priority, r.seed + 1000 * repeat)
             for r in org.roles]
    verify = [p.runs for p in org.processes if p.kind == "verify"]
    landscape = Landscape(seed=repeat, **spec.landscape)
    lab = VirtualLab(landscape, roles, slots=slots, policy=org.policy, sigmas=org.rigor.sigmas,
                     max_runs=org.rigor.max_runs, noise_runs=org.rigor.noise_runs,
                     verify_runs=verify[0] if verify else 0,
                     merge=any(p.kind == "merge" for p in org.processes),
                     max_experiments=spec.compute.experiments, max_hours=spec.compute.hours)
    result = lab.run()
    base = result.baseline_value if result.baseline_value is not None else landscape.base
    verified = [(0.0, 0.0)] + [(t, base - v) for (t, _, _), v in zip(result.merges, result.merged_values,
                                                                      strict=True)]
    raw, best = [(0.0, 0.0)], 0.0
    kept = {d.run for d in result.decisions if d.keep}
    for run in sorted((r for r in result.runs if r.id in kept), key=lambda r: r.ended):
        if base - run.metric > best:
            best = base - run.metric
            raw.append((run.ended, best))
    horizon = max(result.seconds, 1e-9)
    decisions = len(result.decisions)
    return RepeatResult(
        label, repeat, verified, raw, horizon, len(result.runs), verified[-1][1], raw[-1][1],
        landscape.base - landscape.true_value(lab.program), area(verified, horizon) / horizon,
        sum(d.keep for d in result.decisions) / decisions if decisions else 0.0,
        sum(ok for _, ok, _ in result.verifications) / len(result.verifications) if result.verifications else None,
        sum(r.status == "crash" for r in result.runs) / max(len(result.runs), 1), merges=len(result.merges))


def area(curve: list[tuple[float, float]], horizon: float) -> float:
    """Area under a step curve (value holds until the next point) from 0 to `horizon`."""
    total = 0.0
    for (t0, v), (t1, _) in zip(curve, [*curve[1:], (horizon, 0.0)], strict=True):
        total += v * (min(t1, horizon) - min(t0, horizon))
    return total


def value_at(curve: list[tuple[float, float]], t: float) -> float:
    value = 0.0
    for time, v in curve:
        if time > t:
            break
        value = v
    return value


def run_bench(spec: BenchSpec, orgs: list[tuple[str, OrgSpec, Path, int]], out: Path,
              on_done: Any = None) -> dict[str, list[RepeatResult]]:
    """Every (org, repeat), skipping those already saved in `out`: the simulated task in the virtual lab, any
    other task through the real lab (bench/real.py)."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[RepeatResult]] = {}
    for label, org, org_file, slots in orgs:
        for repeat in range(spec.repeats):
            path = out / "runs" / f"{label}-{repeat}.json"
            if path.is_file():
                data = json.loads(path.read_text())
                data["verified_curve"] = [tuple(p) for p in data["verified_curve"]]
                data["raw_curve"] = [tuple(p) for p in data["raw_curve"]]
                result = RepeatResult(**data)
            else:
                if spec.task == "simulated":
                    result = run_repeat(spec, label, org, repeat, slots)
                else:
                    from researchorg.bench.real import run_real_repeat

                    result = run_real_repeat(spec, label, org_file, repeat, slots,
                                             out / "programs" / f"{label}-{repeat}")
                path.parent.mkdir(exist_ok=True)
                path.write_text(json.dumps(asdict(result)))
            results.setdefault(label, []).append(result)
            if on_done is not None:
                on_done(result)
    return results


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
            times = [next((t for t, v in r.verified_curve if v >= target), math.inf) for r in repeats]
            row["time_to_target_h"] = statistics.median(times) / 3600
            row["reached_target"] = sum(t < math.inf for t in times) / len(times)
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
