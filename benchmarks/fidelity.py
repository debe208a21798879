"""How well a short training budget predicts the full one: the same changes run at both, side by side.

    python benchmarks/fidelity.py [--task tinylm] [--full 40] [--fraction 0.25] [--seeds 2] [--threads 1] [--quick]

Multi-fidelity search (screen ideas on a short budget, confirm the survivors on
the full one) pays only if a change's gain on the short budget says something
about its gain on the full one. This script measures it on a task's knobs: the
baseline and each change of a list (tinylm's: fewer or more layers, narrower
or wider, another batch, learning rate, context, bf16; another task's: each
knob of its task.toml set to its lowest and highest value, or to each other
choice, up to `--changes`; `--task` takes a built-in name or a task directory)
run with `--seeds` seeds at the short budget (`--fraction` of `--full`
seconds) and at the full budget, in one process, alternating, so that both see
the same machine. Each change's gain is the baseline's mean minus its mean
(the metric's good direction: positive = better).

Prints a line per change and budget, then:
  sigma_short, sigma_full:   the seed noise of one run at each budget (pooled over every code's runs)
  sigma_ratio:               sigma_short / sigma_full (the landscape's `fidelity_sigma`)
  rank_correlation:          Spearman's rho of the changes' short-budget and full-budget gains
  gain_correlation:          their Pearson correlation
  sign_agreement:            the share of changes whose gain has the same sign at both budgets
  top_half_overlap:          the share of the full budget's better half that the short budget also ranks there
  gain_slope:                the least-squares slope of the short gains on the full gains (`fidelity_slope`)
  deviation_sigmas:          the spread of the short gains around that line, in short-budget seed sigmas
  deviation_share:           that spread less what the runs' own noise explains, per unit of the spread of the
                             scaled full gains (`fidelity_deviation`: a change's short gain departs from the line
                             by its own amount, not by chance)
The simulated landscape's fidelity model (harness/landscape.py, `fidelity_*`) takes its parameters from these.
`--quick` runs the simulated task (CI: the script cannot break unseen).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

from scipy import stats

from researchorg import Program, Slot
from researchorg.task.knobs import read_knob, write_knob
from researchorg.world.runner import run_command

TINYLM_CHANGES = [("N_LAYER", 2), ("N_LAYER", 6), ("N_EMBD", 64), ("N_EMBD", 192), ("BATCH_SIZE", 4),
                  ("BATCH_SIZE", 16), ("LR", 4e-3), ("LR", 6e-4), ("SEQ_LEN", 64), ("DTYPE", "bfloat16")]
SIMULATED_CHANGES = [(f"IDEA_{i:02d}", 1) for i in range(6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="tinylm")
    parser.add_argument("--full", type=float, default=40.0, help="the full budget in seconds")
    parser.add_argument("--fraction", type=float, default=0.25, help="the short budget, as a fraction of the full")
    parser.add_argument("--seeds", type=int, default=2, help="runs of each change at each budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--changes", type=int, default=10, help="at most this many changes (tasks other than tinylm)")
    parser.add_argument("--quick", action="store_true", help="the simulated task (CI)")
    args = parser.parse_args()
    if args.quick:
        args.task, args.seeds = "simulated", 2
    with tempfile.TemporaryDirectory() as tmp:
        program = Program.init(Path(tmp) / "fidelity", args.task, budget=args.full)
        changes = {"simulated": SIMULATED_CHANGES, "tinylm": TINYLM_CHANGES}.get(
            args.task, knob_changes(program, args.changes))
        budgets = {"short": args.full * args.fraction, "full": args.full}
        print(f"task: {args.task}  full_budget_s: {args.full:g}  short_budget_s: {budgets['short']:g}  "
              f"seeds: {args.seeds}  threads: {args.threads}", flush=True)
        runs = measure(program, changes, budgets, args.seeds + 1, args.seeds, args.threads, Path(tmp))
    report(runs, changes, program.task.metric.direction)


def knob_changes(program: Program, limit: int) -> list[tuple[str, object]]:
    """Changes of a task's knobs away from the values its code has: each knob to its ends, or to its other
    choices."""
    text = {}
    changes: list[tuple[str, object]] = []
    for knob in program.task.knobs:
        current = read_knob(text.setdefault(knob.file, (program.root / knob.file).read_text()), knob)
        if knob.type == "categorical":
            values = list(knob.choices or [])
        else:
            values = [int(knob.low), int(knob.high)] if knob.type == "int" else [knob.low, knob.high]
        changes += [(knob.name, v) for v in values if v != current]
    if len(changes) < 3:
        raise SystemExit(f"task {program.task.name}: {len(changes)} knob changes; a correlation needs at least 3")
    return changes[:limit]


def measure(program: Program, changes: list[tuple[str, object]], budgets: dict[str, float], baseline_seeds: int,
            seeds: int, threads: int, tmp: Path) -> dict[tuple[str, str], list[float]]:
    """Every code's runs at every budget: (code, budget name) -> metrics. Budgets alternate run by run."""
    knobs = {k.name: k for k in program.task.knobs}
    files = sorted({k.file for k in knobs.values()} or set(program.task.editable[:1]))
    original = {f: (program.root / f).read_text() for f in files}
    codes = [("baseline", dict(original))]
    for name, value in changes:
        knob = knobs[name]
        codes.append((f"{name}={value}", {**original, knob.file: write_knob(original[knob.file], knob, value)}))
    runs: dict[tuple[str, str], list[float]] = {}
    try:
        for label, texts in codes:
            for f, text in texts.items():
                (program.root / f).write_text(text)
            for seed in range(1, (baseline_seeds if label == "baseline" else seeds) + 1):
                for budget_name, seconds in budgets.items():
                    task = program.task.model_copy(update={"budget_seconds": seconds})
                    result = run_command(task, program.root, tmp / f"{label}-{budget_name}-{seed}.log", seed=seed,
                                         slot=Slot("cpu0", threads))
                    if result.status != "ok":
                        raise SystemExit(f"{label} at {seconds:g} s, seed {seed}: {result.status}: {result.reason}")
                    runs.setdefault((label, budget_name), []).append(result.metric)
                    print(f"{label} {budget_name} seed {seed}: {result.metric:.5f}", flush=True)
    finally:
        for f, text in original.items():
            (program.root / f).write_text(text)
    return runs


def report(runs: dict[tuple[str, str], list[float]], changes: list[tuple[str, object]], direction: str) -> None:
    sign = 1.0 if direction == "minimize" else -1.0
    labels = [f"{name}={value}" for name, value in changes]
    gains = {b: [sign * (statistics.fmean(runs[("baseline", b)]) - statistics.fmean(runs[(label, b)]))
                 for label in labels] for b in ("short", "full")}
    print()
    for label, short, full in zip(labels, gains["short"], gains["full"], strict=True):
        print(f"change: {label:18s} gain_short: {short:+.5f}  gain_full: {full:+.5f}")
    sigmas = {}
    for b in ("short", "full"):
        groups = [v for (_, budget), v in runs.items() if budget == b and len(v) > 1]
        dof = sum(len(g) - 1 for g in groups)
        sigmas[b] = (sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups) / dof) ** 0.5
        print(f"sigma_{b}: {sigmas[b]:.5f}")
    rho = stats.spearmanr(gains["short"], gains["full"]).statistic
    agree = sum((s > 0) == (f > 0) for s, f in zip(gains["short"], gains["full"], strict=True)) / len(labels)
    half = len(labels) // 2
    top = {b: set(sorted(range(len(labels)), key=lambda i, b=b: -gains[b][i])[:half]) for b in gains}
    fit = statistics.linear_regression(gains["full"], gains["short"])
    residual = [s - (fit.intercept + fit.slope * f) for s, f in zip(gains["short"], gains["full"], strict=True)]
    spread = math.sqrt(sum(r * r for r in residual) / (len(residual) - 2)) if len(residual) > 2 else 0.0
    # a gain is a mean of `seeds` runs less the baseline's mean of `baseline` runs: its own noise
    seeds, baseline = len(runs[(labels[0], "short")]), len(runs[("baseline", "short")])
    noise = (sigmas["short"] ** 2 + fit.slope ** 2 * sigmas["full"] ** 2) * (1 / seeds + 1 / baseline)
    scale = abs(fit.slope) * statistics.stdev(gains["full"])
    print(f"sigma_ratio: {sigmas['short'] / sigmas['full']:.2f}" if sigmas["full"] > 0 else "sigma_ratio: n/a")
    print(f"rank_correlation: {rho:.3f}")
    print(f"gain_correlation: {statistics.correlation(gains['short'], gains['full']):.3f}")
    print(f"sign_agreement: {agree:.3f}")
    print(f"top_half_overlap: {len(top['short'] & top['full']) / max(half, 1):.3f}")
    print(f"gain_slope: {fit.slope:.3f}")
    print(f"deviation_sigmas: {spread / sigmas['short']:.2f}" if sigmas["short"] > 0 else "deviation_sigmas: n/a")
    share = math.sqrt(max(spread ** 2 - noise, 0.0)) / scale if scale > 0 else 0.0
    print(f"deviation_share: {share:.2f}")


if __name__ == "__main__":
    main()
