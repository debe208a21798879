"""Calibrate the simulated world on real agents' autoresearch runs, and check it on runs it never saw.

    python benchmarks/calibration.py [--fit DIR] [--sigma 0.0001] [--holdout 0.3] [--replicates 40]
    python benchmarks/calibration.py --check DIR [--replicates 40]
    python benchmarks/calibration.py --quick

A trace folder holds `index.tsv` and `runs/<run_id>.tsv` (the shared corpus's
layout, `../shared/traces` by default). Each run is a real agent's greedy
loop: one seed per row, kept when its value beat the best so far.

`--fit DIR` splits DIR's repositories into a fitting part and a held-out part
(`--holdout` of the runs, whole repositories taken in the order of a hash of
their names, so a repository is never on both sides), fits the landscape (harness/landscape.py, `effects =
"continuous"`) to the fitting part's runs on autoresearch's own task, and
prints each parameter, then for each figure of `stats/traces.py describe`
the fitting part's value beside the calibrated world's mean and 90%
interval, a goodness of fit, and the same check on the held-out part
(`check_coverage`). The seed noise is not fitted: `--sigma` gives it (by
default the calibrated world's, 1e-4 of val_bpb: the low end of the published
H100 figures, a few 1e-4, which the held-out check prefers), and the fit is
repeated at `--sigma-range` (0.03% and 0.1%) to show how the parameters move.

`--check DIR` simulates, with the calibrated landscape (`Landscape.calibrated`)
for runs on autoresearch's own task and `CALIBRATED_OTHER` for the rest, as many
runs as DIR holds, of the same lengths, `--replicates` times over, and prints
per figure DIR's value, the 90% predictive interval and whether it lies
inside; then `check_coverage: F`, the share of figures inside.

The search is fast (a loop in this file that draws ideas and keeps the
better, as greedy does); every figure printed comes from runs through the
engine (`Runtime` over `SimWorld`, one simulated researcher, greedy, one
slot). The engine's first experiment is kept whatever it measures, as a
results.tsv's baseline row is, so it stands for the baseline row.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import optimize, special

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld
from researchorg.harness.landscape import CALIBRATED, CALIBRATED_DRAWS, CALIBRATED_OTHER, CALIBRATED_OTHER_DRAWS
from researchorg.stats.traces import (
    BUCKETS,
    CRASH,
    DISCARD,
    KEEP,
    Row,
    Trace,
    bucket_name,
    describe,
    quantile,
    read_corpus,
)

# the shared trace corpus: beside the repository, or where RESEARCHORG_TRACES says
DEFAULT_TRACES = Path(os.environ.get("RESEARCHORG_TRACES")
                      or Path(__file__).resolve().parents[1].parent / "shared" / "traces")
FITTED = ("p_win", "win_mean", "win_shape", "harm_mean", "saturation", "insight")  # the parameters the fit moves
RATES = (*(f"keep_rate_{bucket_name(b)}" for b in BUCKETS), "crash_rate")
SIZES = ("gain_q1", "gain_median", "gain_q3", "total_q1", "total_median", "total_q3")
FIGURES = RATES + SIZES
OTHER_SIGMA = float(CALIBRATED_OTHER["sigma"])  # the other tasks' noise, relative: not fitted either


def split(traces: list[Trace], share: float) -> tuple[list[Trace], list[Trace]]:
    """(fitting, held out): whole repositories, in the order of a hash of their names, held out until they hold
    `share` of the runs (stable, and a repository is never on both sides)."""
    def order(repo: str) -> str:
        return hashlib.sha256(repo.encode()).hexdigest()
    repos = sorted({t.repo or t.name for t in traces}, key=order)
    held: set[str] = set()
    for repo in repos:
        if sum((t.repo or t.name) in held for t in traces) >= share * len(traces):
            break
        held.add(repo)
    return [t for t in traces if (t.repo or t.name) not in held], [t for t in traces if (t.repo or t.name) in held]


# the fast search ------------------------------------------------------------------------------------------
def quick_trace(params: dict[str, float], length: int, rng: np.random.Generator) -> Trace:
    """One greedy run of `length` rows on a landscape of `params`, drawn directly (no engine): for the search.
    The same world as the engine's: a pool of ideas, tried best-looking first (by insight), the better kept."""
    n = max(int(CALIBRATED["n_ideas"]), length)
    unit = math.exp(rng.normal(0.0, params.get("scale_spread", 0.0)))
    shape = params.get("win_shape", 1.0)
    wins = rng.random(n) < params["p_win"]
    effects = unit * np.where(wins, rng.gamma(shape, params["win_mean"] / shape, n),
                              -rng.exponential(params["harm_mean"], n))
    rho = params.get("insight", 0.0)
    scores = special.ndtri((np.argsort(np.argsort(effects)) + 0.5) / n)
    order = np.argsort(-(rho * scores + math.sqrt(1 - rho * rho) * rng.normal(0.0, 1.0, n)))
    ceiling, sigma = params["saturation"] * unit, params["sigma"]
    crashes, noise = rng.random(length) < params["crash_p"], rng.normal(0.0, sigma, length)
    raw, best, rows = 0.0, None, []
    for k in range(length):
        if crashes[k]:
            rows.append(Row(CRASH, None))
            continue
        trial = raw + float(effects[order[k]])
        value = 1.0 - (ceiling * (1 - math.exp(-trial / ceiling)) if trial > 0 else trial) + float(noise[k])
        if best is None or value < best:
            best, raw = value, trial
            rows.append(Row(KEEP, value))
        else:
            rows.append(Row(DISCARD, value))
    return Trace("quick", rows)


def counts(traces: list[Trace]) -> dict[str, int]:
    """How many observations each figure of `traces` rests on (experiments in a bucket, keeps, runs)."""
    figures = describe(traces)
    n = {key: 0 for key in FIGURES}
    for trace in traces:
        rows = trace.experiments()
        for low, high in BUCKETS:
            n[f"keep_rate_{bucket_name((low, high))}"] += max(0, min(len(rows), high or len(rows)) - low + 1)
        n["crash_rate"] += len(rows)
        improving = sum(g > 0 for g in trace.gains())
        for key in ("gain_q1", "gain_median", "gain_q3"):
            n[key] += improving
        for key in ("total_q1", "total_median", "total_q3"):
            n[key] += trace.total() is not None
    return {k: v for k, v in n.items() if not math.isnan(figures.get(k, math.nan))}


def distance(observed: dict[str, float], simulated: dict[str, float], n: dict[str, int]) -> float:
    """How far simulated figures are from observed ones, each in units of its sampling error: a rate's binomial
    error (at least 0.02), a size's (a relative gain, compared in decades) about 0.8 decade over the square root
    of its count, at least 0.05."""
    total = 0.0
    for key in FIGURES:
        o, s = observed.get(key, math.nan), simulated.get(key, math.nan)
        if math.isnan(o) or not n.get(key):
            continue
        if math.isnan(s):
            total += 25.0
        elif key in RATES:
            error = max(0.02, math.sqrt(max(o * (1 - o), 0.01) / n[key]))
            total += ((s - o) / error) ** 2
        else:
            error = max(0.05, 0.8 / math.sqrt(n[key]))
            total += ((math.log10(max(s, 1e-7)) - math.log10(max(o, 1e-7))) / error) ** 2
    return total


def fit(traces: list[Trace], sigma: float, crash_p: float, spread: bool, replicates: int,
        maxfev: int = 400) -> dict[str, float]:
    """The parameters whose quick runs (as many as `traces`, of the same lengths, `replicates` times over) come
    closest to the traces' figures (Nelder-Mead over their logarithms, the same draws at every step)."""
    observed, n = describe(traces), counts(traces)
    lengths = [len(t.rows) for t in traces]
    names = FITTED + (("scale_spread",) if spread else ())
    start = {"p_win": 0.3, "win_mean": 3 * sigma, "harm_mean": 10 * sigma, "saturation": 0.03, "scale_spread": 0.5,
             "win_shape": 0.5, "insight": 0.3}

    def params_of(x: list[float]) -> dict[str, float]:
        p = dict(zip(names, (math.exp(v) for v in x), strict=True))
        p["p_win"], p["insight"] = min(p["p_win"], 0.99), min(p.get("insight", 0.0), 0.99)
        return {**p, "sigma": sigma, "crash_p": crash_p}

    def loss(x: list[float]) -> float:
        rng = np.random.default_rng(0)
        p = params_of(x)
        runs = [quick_trace(p, n, rng) for _ in range(replicates) for n in lengths]
        return distance(observed, describe(runs), n)

    x0 = [math.log(start[n]) for n in names]
    simplex = [x0] + [[v + (0.7 if i == j else 0.0) for j, v in enumerate(x0)] for i in range(len(x0))]
    best = optimize.minimize(loss, x0, method="Nelder-Mead",
                             options={"maxfev": maxfev, "xatol": 0.02, "fatol": 0.01, "initial_simplex": simplex})
    return params_of(list(best.x))


def bootstrap(traces: list[Trace], sigma: float, spread: bool, draws: int) -> list[dict[str, float]]:
    """Fits to `draws` resamples of the traces' repositories (drawn with replacement), each with its own crash
    rate: how much the parameters could differ with other runs of the same kind, for predictive intervals that
    carry it."""
    by_repo: dict[str, list[Trace]] = {}
    for trace in traces:
        by_repo.setdefault(trace.repo or trace.name, []).append(trace)
    repos = sorted(by_repo)
    found = []
    for draw in range(draws):
        rng = random.Random(draw)
        sample = [t for repo in rng.choices(repos, k=len(repos)) for t in by_repo[repo]]
        found.append(fit(sample, sigma, describe(sample)["crash_rate"], spread, replicates=4, maxfev=200))
    return found


# the engine ------------------------------------------------------------------------------------------------
GREEDY = OrgSpec(name="autoresearch", policy="greedy", rigor={"noise_runs": 0},
                 roles=[{"name": "researcher", "backend": "simulated", "idea_quality": 0.0, "think_seconds": 60}],
                 processes=[{"kind": "merge"}])


def engine_trace(params: dict[str, object], length: int, seed: int) -> Trace:
    """One autoresearch run of `length` rows through the engine, on a calibrated landscape of `params`."""
    landscape = Landscape(seed=seed, **{k: v for k, v in params.items() if k != "seed"})
    world = SimWorld(landscape, GREEDY)
    Runtime(world).run(Limits(max_experiments=length))
    rows = [Row(KEEP if e.status == "keep" else CRASH if e.status == "crash" else DISCARD, e.metric)
            for e in world.ledger.experiments()]
    return Trace(f"engine-{seed}", rows)


def _rounded(params: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.3g}") for k, v in params.items() if k != "sigma"}


def predictive(groups: list[tuple[list[dict[str, object]], list[int]]], replicates: int,
               seed: int = 1) -> list[dict]:
    """The figures of `replicates` simulated copies of a set of runs, each group's lengths run on one of its
    parameter sets (copy r on set r modulo their number: the fit's uncertainty is in the spread)."""
    found = []
    for r in range(replicates):
        traces = [engine_trace(draws[r % len(draws)], n, seed * 1_000_003 + r * 10_007 + i)
                  for draws, lengths in groups for i, n in enumerate(lengths)]
        found.append(describe(traces))
    return found


def interval(values: list[float]) -> tuple[float, float, float]:
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return math.nan, math.nan, math.nan
    return statistics.fmean(kept), quantile(kept, 0.05), quantile(kept, 0.95)


def show(title: str, observed: dict[str, float], simulated: list[dict]) -> float:
    """Print each figure, observed beside the simulation's mean and 90% interval; the share inside."""
    print(f"== {title}")
    print(f"{'figure':<18}{'observed':>11}{'simulated':>11}   90% interval")
    inside, counted = 0, 0
    for key in FIGURES:
        o = observed.get(key, math.nan)
        mean, low, high = interval([s.get(key, math.nan) for s in simulated])
        if math.isnan(o):
            continue
        ok = low <= o <= high
        counted += 1
        inside += ok
        print(f"{key:<18}{_fmt(key, o):>11}{_fmt(key, mean):>11}   [{_fmt(key, low)}, {_fmt(key, high)}]"
              f"{'' if ok else '   outside'}")
    return inside / counted if counted else math.nan


def _fmt(key: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" if key in RATES else f"{100 * value:.3f}%"


GREEDY_SHARE = 0.8  # a run whose keeps improved on the best less often than this (two of them at least did
# not) keeps by another rule


def greedy_runs(traces: list[Trace]) -> list[Trace]:
    """The runs that keep as autoresearch's greedy loop does (the world simulates that loop); each other run is
    one line."""
    kept = []
    for trace in traces:
        gains = trace.gains()
        worse = sum(g <= 0 for g in gains)  # keeps that did not beat the best so far
        if gains and worse >= 2 and 1 - worse / len(gains) < GREEDY_SHARE:
            print(f"not greedy, left out: {trace.name} ({1 - worse / len(gains):.0%} of its keeps improved on the "
                  f"best so far)")
        else:
            kept.append(trace)
    return kept


def classes(traces: list[Trace]) -> tuple[list[Trace], list[Trace]]:
    return [t for t in traces if t.original_task], [t for t in traces if not t.original_task]


def check(traces: list[Trace], original: list[dict[str, object]], other: list[dict[str, object]],
          replicates: int, title: str) -> float:
    """Coverage of `traces`' figures (all of them, and the original-task ones) by the calibrated world's 90%
    predictive intervals (`original` and `other`: the parameter sets of each class)."""
    orig, rest = classes(traces)
    groups = [(original, [len(t.rows) for t in orig]), (other, [len(t.rows) for t in rest])]
    simulated = predictive(groups, replicates)
    shares = [show(f"{title}: all {len(traces)} runs", describe(traces), simulated)]
    if orig:
        only = predictive([(original, [len(t.rows) for t in orig])], replicates, seed=2)
        shares.append(show(f"{title}: {len(orig)} runs on autoresearch's own task", describe(orig), only))
    kept = [s for s in shares if not math.isnan(s)]
    return statistics.fmean(kept) if kept else math.nan


def synthetic_corpus(folder: Path) -> Path:
    """A trace folder of the calibrated world's own runs through the engine (12 runs of 3 repositories, some on
    autoresearch's task): what --quick fits where the shared corpus is not at hand."""
    (folder / "runs").mkdir(parents=True)
    index = ["run_id\trepo\tmetric\tdirection\tstatus_column\toriginal_task"]
    for i in range(12):
        original = i % 2 == 0
        trace = engine_trace(dict(CALIBRATED if original else CALIBRATED_OTHER), 20 + 5 * i, 900 + i)
        rows = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
        rows += [f"c{n}\t{'' if r.value is None else f'{r.value:.6f}'}\t1.0\t{r.status}\trun {n}"
                 for n, r in enumerate(trace.rows)]
        (folder / "runs" / f"run{i}.tsv").write_text("\n".join(rows) + "\n")
        index.append(f"run{i}\tengine/repo{i % 3}\tval_bpb\tlower\tstatus\t{'yes' if original else 'no'}")
    (folder / "index.tsv").write_text("\n".join(index) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", type=Path, default=DEFAULT_TRACES, help="the trace folder to fit on")
    parser.add_argument("--check", type=Path, help="a trace folder to check the calibrated world on")
    parser.add_argument("--sigma", type=float, default=float(CALIBRATED["sigma"]),
                        help="the seed noise of autoresearch's task, relative to the metric")
    parser.add_argument("--sigma-range", type=float, nargs=2, default=(0.0003, 0.001),
                        help="the ends of the noise range the fit is repeated at")
    parser.add_argument("--holdout", type=float, default=0.3, help="the share of repositories held out")
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--draws", type=int, default=8, help="resampled fits that carry the fit's uncertainty")
    parser.add_argument("--quick", action="store_true", help="a small fit and check (CI)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.quick:
        args.replicates = 3
    if args.check is not None:
        if not (args.check / "index.tsv").is_file():
            raise SystemExit(f"error: {args.check} is not a trace folder (an index.tsv and runs/<run_id>.tsv)")
        corpus = read_corpus(args.check)
        for line in corpus.problems:
            print(f"skipped: {line}")
        original = [{**CALIBRATED, **d} for d in CALIBRATED_DRAWS] or [dict(CALIBRATED)]
        other = [{**CALIBRATED_OTHER, **d} for d in CALIBRATED_OTHER_DRAWS] or [dict(CALIBRATED_OTHER)]
        coverage = check(greedy_runs(corpus.traces), original, other, args.replicates, str(args.check))
        print(f"check_coverage: {coverage:.3f}")
        print(f"seconds: {time.perf_counter() - started:.1f}")
        return
    if args.quick and not (args.fit / "index.tsv").is_file():  # CI without the corpus: the engine writes one
        args.fit = synthetic_corpus(Path(tempfile.mkdtemp(prefix="researchorg-traces-")))
        print(f"no trace corpus at {DEFAULT_TRACES} (set RESEARCHORG_TRACES): fitting the engine's own runs")
    if not args.fit.is_dir():
        raise SystemExit(f"error: no trace folder at {args.fit} (give --fit DIR or set RESEARCHORG_TRACES)")
    corpus = read_corpus(args.fit)
    for line in corpus.problems:
        print(f"skipped: {line}")
    runs = greedy_runs(corpus.traces)
    fitting, holding = split(runs, args.holdout)
    if args.quick:
        fitting, holding = fitting[:12], holding[:6]
    print(f"runs: {len(corpus.traces)}  fitting: {len(fitting)}  held_out: {len(holding)} "
          f"({len({t.repo for t in holding})} repositories)")
    orig, rest = classes(fitting)
    crash_orig, crash_rest = (describe(x)["crash_rate"] if x else 0.0 for x in (orig, rest))
    fits: dict[str, list[dict[str, object]]] = {}
    for name, traces, sigma, crash, base in (("original", orig, args.sigma, crash_orig, CALIBRATED),
                                             ("other", rest, OTHER_SIGMA, crash_rest, CALIBRATED_OTHER)):
        if not traces:
            continue
        fitted = fit(traces, sigma, crash, True, 2 if args.quick else 12)
        print(f"fit[{name}]: " + "  ".join(f"{k}={v:.4g}" for k, v in fitted.items()))
        print(f"fit[{name}] as a landscape: " + repr(_rounded(fitted)))
        draws = bootstrap(traces, sigma, True, 2 if args.quick else args.draws)
        print(f"fit[{name}] draws ({len(draws)} resamples of its repositories): " + repr([_rounded(d)
                                                                                         for d in draws]))
        fits[name] = [{**base, **d} for d in draws]
        if name == "original" and not args.quick:
            for end in args.sigma_range:
                moved = fit(traces, end, crash, True, 12)
                print(f"fit[{name}] at sigma={end:g}: " + "  ".join(f"{k}={moved[k]:.4g}" for k in FITTED))
    original = fits.get("original", [dict(CALIBRATED)])
    other = fits.get("other", [dict(CALIBRATED_OTHER)])
    coverage_fit = check(fitting, original, other, args.replicates, "fitted runs")
    print(f"fit_coverage: {coverage_fit:.3f}")
    if holding:
        print(f"check_coverage: {check(holding, original, other, args.replicates, 'held-out runs'):.3f}")
    print(f"seconds: {time.perf_counter() - started:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
