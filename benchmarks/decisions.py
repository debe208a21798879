"""Which acceptance policy gains the most true improvement at equal compute, and what reaches main falsely.

    python benchmarks/decisions.py [--repeats 200] [--experiments 60] [--quality 0.3] [--win-sigmas 2] [--quick]
                                   [--fidelity-slope S] [--fidelity-deviation D] [--fidelity-sigma R]

Each repeat draws a fresh hidden landscape (seed = repeat number) and runs one
simulated researcher on it in the simulated world (the engine that runs the
real lab, in virtual time; tests/e2e/test_simulated.py checks that both worlds
decide alike), with the same compute for every policy: `--experiments` runs in
all, noise floor, re-runs and verifications included. Each policy runs as the
org it belongs to:

  greedy        autoresearch's loop: keep if better, every keep that beats main merges; no noise floor, no
                verification
  noise-aware   the previous default: a 5-run noise floor, the sequential z-test on every decision, merges
                verified with 2 fresh seeds against the incumbent the candidate was judged against
  explore-gate  the default: a 5-run noise floor; the agent's branch moves on one run that beats its
                incumbent, and a merge passes the gate: 2 fresh-seed runs (and more while borderline) beating
                main's unselected runs by 2 standard errors; runs compared under matched machine load
  screen-gate   explore-gate on a quarter of the budget: proposals (and the branch's decisions) train for 25% of
                it and count a quarter of a run, so the same compute tries four times the ideas; a branch that
                beats main there is confirmed with 2 fresh short runs, then gated on the full budget; a 5-run
                floor on each budget

Every repeat runs on each landscape: `base` (seed noise only), `realistic`
(slot speeds and busy spells of the machine that slow runs, which a wall-clock
budget turns into metric noise: `Landscape.realistic`, its parameters measured
on tinylm as docs/rigor.md says), and `calibrated` (fitted to real agents'
autoresearch runs: `Landscape.calibrated`, benchmarks/calibration.py), at the
H100's seed noise and at the ends of its range, with the fit made there; on
those the researcher draws as the calibration's did (idea quality 0: the
landscape's `insight` is the real agents'). Every decision and merge is scored against
the landscape's truth. `--fidelity-*` replace what the landscapes' short runs
measure (tinylm's figures by default): how screen-gate fares on a task whose
short runs predict its full ones better or worse (benchmarks/fidelity.py
measures a task's).

Prints `default_policy: NAME` once, then per landscape and policy:
  true_improvement:        main's true gain over the baseline at the end, mean and 95% CI
  claimed_improvement:     what its own results.tsv says it gained (first row to the best row kept on main)
  false_keep_rate:         merges into main that bring no true gain (main gets truly no better, or worse)
  branch_false_keep_rate:  keeps on an agent's own branch with no true gain over the code they had to beat
  missed_win_rate:         discarded on the branch among true wins (true gain >= --win-sigmas noise sigmas)
  reproduction_rate:       verified candidates whose fresh-seed runs passed (n/a without verification)
  slot_hours:              simulated slot-hours per repeat (equal compute: equal for all; a run on a quarter of the
                           budget counts a quarter of a run)
  improvement_per_slot_hour
then `oracle_true_improvement:`, the ceiling of full-budget runs: the same researcher and budget with runs that
measure the truth, so that every decision is right and no rigor is paid for; `best_code_true_improvement:`,
the best code of the landscape (a search of the truth), which nothing passes at any budget;
and, per landscape, the policy it crowns (the most true improvement among those with at most 5% false keeps
into main, with the clean policies a paired t-test does not separate from it as ties: the default is the one
crowned, or tied, on both) and whether the default beats greedy by 1.1x with
intervals that do not overlap, at most 5% false keeps into main and a reproduction rate of at least 0.90.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any

from scipy import stats

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld
from researchorg.harness.landscape import CALIBRATED_AT_NOISE
from researchorg.ledger.export import merged_trees, results_tsv
from researchorg.stats.acceptance import DEFAULT_POLICY
from researchorg.stats.traces import parse_trace

POLICIES = ("greedy", "noise-aware", "explore-gate", "screen-gate")
LANDSCAPES = {"base": Landscape, "realistic": Landscape.realistic,
              "calibrated": Landscape.calibrated,
              **{f"calibrated at sigma {noise:g}": functools.partial(Landscape.calibrated, noise=noise)
                 for noise in CALIBRATED_AT_NOISE}}


def quality_on(landscape_name: str, quality: float) -> float:
    """The researcher's idea quality on a landscape: one with `insight` (the calibrated ones) carries real
    agents' own, so its researcher draws as the calibration's did."""
    return 0.0 if LANDSCAPES[landscape_name](seed=0).insight else quality


def _rate(hits: int, total: int) -> str:
    return f"{hits / total:.3f}  ({hits}/{total})" if total else "n/a  (0/0)"


def org_for(policy: str, quality: float) -> OrgSpec:
    """The org each policy belongs to (the module's docstring)."""
    role = {"name": "researcher", "backend": "simulated", "idea_quality": quality, "think_seconds": 60}
    if policy == "greedy":
        return OrgSpec(name=policy, policy=policy, rigor={"noise_runs": 0}, roles=[role],
                       processes=[{"kind": "merge"}])
    return OrgSpec(name=policy, policy=policy, rigor={"noise_runs": 5}, roles=[role],
                   processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2}])


def evaluate(policy: str, landscape_name: str, args: argparse.Namespace) -> dict[str, Any]:
    counts = {"null": 0, "null_kept": 0, "win": 0, "win_missed": 0, "verified": 0, "reproduced": 0,
              "merged": 0, "merged_false": 0}
    improvements, slot_hours, claimed = [], [], []
    started = time.perf_counter()
    runs = 0
    org = org_for(policy, quality_on(landscape_name, args.quality))
    for repeat in range(args.repeats):
        landscape = LANDSCAPES[landscape_name](seed=repeat, **args.fidelity)
        world = SimWorld(landscape, org)
        report = Runtime(world).run(Limits(max_experiments=args.experiments))
        if report.paused:  # an agent the engine paused (it raised): the figures would hide a failure
            raise SystemExit(f"{policy} on {landscape_name} landscape {repeat}: agent paused: {report.paused}")
        slot_hours.append(report.slot_seconds / 3600)
        ledger = world.ledger
        experiments = ledger.experiments()
        runs += len(experiments)
        win = args.win_sigmas * landscape.sigma
        for e in experiments:
            decision = e.summary.get("decision")
            if e.kind != "proposal" or e.status not in ("keep", "discard") or not decision \
                    or "incumbent_tree" not in decision:
                continue
            gained = world.true_gain(e.tree, decision["incumbent_tree"])
            keep = e.status == "keep"
            if gained <= 0:
                counts["null"] += 1
                counts["null_kept"] += keep
            elif gained >= win:
                counts["win"] += 1
                counts["win_missed"] += not keep
        verifications = ledger.verifications()
        counts["verified"] += len(verifications)
        counts["reproduced"] += sum(v.reproduced for v in verifications)
        previous = landscape.base
        for merge in ledger.merges():
            value = world.true_value(merge.after)
            counts["merged"] += 1
            counts["merged_false"] += value >= previous
            previous = value
        improvements.append(landscape.base - world.true_value(world.main()))
        claimed.append(claimed_improvement(world, org))
    seconds = time.perf_counter() - started
    mean = statistics.fmean(improvements)
    half = stats.t.ppf(0.975, len(improvements) - 1) * statistics.stdev(improvements) / len(improvements) ** 0.5
    hours = statistics.fmean(slot_hours)
    print(f"policy: {policy}")
    print(f"true_improvement: {mean:.4f} ± {half:.4f} (95% CI over {len(improvements)} landscapes)")
    print(f"claimed_improvement: {statistics.fmean(claimed):.4f} (what its results.tsv says: the first row to "
          f"the best row kept on main)")
    print(f"false_keep_rate: {_rate(counts['merged_false'], counts['merged'])}")
    print(f"branch_false_keep_rate: {_rate(counts['null_kept'], counts['null'])}")
    print(f"missed_win_rate: {_rate(counts['win_missed'], counts['win'])}")
    print(f"reproduction_rate: {_rate(counts['reproduced'], counts['verified'])}")
    print(f"slot_hours: {hours:.2f}")
    print(f"improvement_per_slot_hour: {mean / hours:.4f}")
    print(f"simulated_runs: {runs} in {seconds:.1f} s")
    print()
    return {"mean": mean, "half": half, "improvements": improvements,
            "false_keep_rate": counts["merged_false"] / max(counts["merged"], 1),
            "reproduction_rate": counts["reproduced"] / counts["verified"] if counts["verified"] else None}


def claimed_improvement(world: SimWorld, org: OrgSpec) -> float:
    """What the org's own results.tsv says it gained (the lab's exporter, read back as any results.tsv is): its
    first row's value to the best value of a row kept on main, in the metric's units."""
    ledger = world.ledger
    baseline = world.tree_of(ledger.program().baseline_commit)
    measured = baseline if org.measures_baseline else None
    text = results_tsv(ledger.experiments(), "loss", measured, merged_trees(ledger) | {baseline})
    trace = parse_trace(text, metric="loss", higher=False)
    return (trace.total() or 0.0) * abs(trace.rows[0].value or 0.0)


def oracle(landscape_name: str, args: argparse.Namespace) -> float:
    """The ceiling: greedy's org with runs that measure the truth (no noise, no load), so every decision is right;
    what the same researcher could reach at this budget with perfect decisions and no rigor to pay for."""
    improvements = []
    for repeat in range(args.repeats):
        landscape = LANDSCAPES[landscape_name](seed=repeat, **args.fidelity)
        world = SimWorld(landscape, org_for("greedy", quality_on(landscape_name, args.quality)), exact=True)
        Runtime(world).run(Limits(max_experiments=args.experiments))
        improvements.append(landscape.base - world.true_value(world.main()))
    return statistics.fmean(improvements)


def crowned(results: dict[str, dict[str, Any]]) -> str:
    """The policy the benchmark crowns: the most true improvement among those whose false keeps into main are at
    most 5% (a policy that lets a third of its merges in without a true gain does not count, however fast), and
    the clean policies it does not beat by a paired t-test at p < 0.05 (the same landscapes), as ties."""
    clean = [p for p in POLICIES if results[p]["false_keep_rate"] <= 0.05] or list(POLICIES)
    best = max(clean, key=lambda p: results[p]["mean"])
    tied = [p for p in clean if p != best and len(results[p]["improvements"]) > 1 and stats.ttest_rel(
        results[best]["improvements"], results[p]["improvements"]).pvalue >= 0.05]
    return best + (f" (tied with {', '.join(tied)}: paired p >= 0.05)" if tied else "")


def verdict(results: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Whether the default beats greedy as the issue asks: 1.1x, intervals apart, false keeps <= 0.05,
    reproduction >= 0.90; and the line that says so."""
    d, g = results[DEFAULT_POLICY], results["greedy"]
    ratio = d["mean"] / g["mean"] if g["mean"] > 0 else float("inf")
    apart = d["mean"] - d["half"] > g["mean"] + g["half"]
    paired = stats.ttest_rel(d["improvements"], g["improvements"]).pvalue if len(d["improvements"]) > 1 else 1.0
    ok = ratio >= 1.1 and apart and d["false_keep_rate"] <= 0.05 and (d["reproduction_rate"] or 0) >= 0.90
    reproduction = f"{d['reproduction_rate']:.3f}" if d["reproduction_rate"] is not None else "n/a"
    return ok, (f"{DEFAULT_POLICY} / greedy: {ratio:.2f}x (intervals {'apart' if apart else 'overlap'}, paired "
                f"p = {paired:.2g}), false keeps into main {d['false_keep_rate']:.3f}, reproduction {reproduction}: "
                + ("1.1x targets met" if ok else "1.1x targets NOT met"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200, help="landscapes per policy")
    parser.add_argument("--experiments", type=int, default=60, help="runs per repeat, for every policy")
    parser.add_argument("--quality", type=float, default=0.3, help="the simulated researcher's idea quality")
    parser.add_argument("--win-sigmas", type=float, default=2.0,
                        help="a true win gains at least this many noise sigmas")
    parser.add_argument("--quick", action="store_true", help="a few landscapes: checks that the script runs (CI)")
    for name in ("slope", "deviation", "sigma"):
        parser.add_argument(f"--fidelity-{name}", type=float, default=None,
                            help=f"what a short run measures, in place of tinylm's figure (Landscape.fidelity_{name})")
    args = parser.parse_args()
    args.fidelity = {f"fidelity_{name}": value for name in ("slope", "deviation", "sigma")
                     if (value := getattr(args, f"fidelity_{name}")) is not None}
    if args.quick:
        args.repeats = 5
    print(f"repeats: {args.repeats}  experiments_per_repeat: {args.experiments}  idea_quality: {args.quality}  "
          f"win: true gain >= {args.win_sigmas:g} sigma"
          + "".join(f"  {k}: {v:g}" for k, v in args.fidelity.items()))
    print(f"default_policy: {DEFAULT_POLICY}\n")
    lines = []
    for name in LANDSCAPES:
        print(f"landscape: {name}\n")
        results = {policy: evaluate(policy, name, args) for policy in POLICIES}
        ceiling = oracle(name, args)
        print(f"oracle_true_improvement: {ceiling:.4f} (every decision right and no run paid for rigor: "
              f"{ceiling / results['greedy']['mean']:.2f}x greedy)")
        best = statistics.fmean(landscape.base - landscape.true_value(landscape.best_config()) for landscape in
                                (LANDSCAPES[name](seed=repeat, **args.fidelity) for repeat in range(args.repeats)))
        print(f"best_code_true_improvement: {best:.4f} (the landscape's best code, which no policy at any budget "
              f"passes: {best / results['greedy']['mean']:.2f}x greedy)\n")
        lines.append(f"{name}: crowned {crowned(results)} (the most true improvement with false keeps into main "
                     f"<= 0.05); {verdict(results)[1]}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
