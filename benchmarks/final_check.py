"""Each bench repeat's final `main` measured again beside its baseline, with fresh seeds: a fair final comparison.

    python benchmarks/final_check.py OUT [--runs 2] [--threads 1] [--quick]

OUT is a real-task bench's output directory (`researchorg bench SPEC --out OUT`). A bench reports each org's
improvement of `main` over the baseline as the org measured them: an org without a noise floor measured its
baseline once, and an org without verification measured `main` by the runs that got it kept (its luckiest),
so orgs with less rigor judge themselves on noisier and luckier numbers. Here every program's final `main`
and its baseline run `--runs` times each with fresh seeds, side by side on 2 slots (the same machine load for
both), through the engine (`Runtime.measure_codes`: the runs join the program's ledger as kind `ablation`,
unselected re-measurements). Prints per org `checked_improvement:` (baseline mean minus main mean, for a
metric to minimize; mean ± 95% CI over repeats), then `paired:` lines (mean difference ± 95% CI, paired t-test
p) between orgs, paired by repeat seed. `--quick` checks a 4-run program of the simulated task in a
temporary directory (CI).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

from scipy import stats

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.engine.evidence import Code
from researchorg.stats.score import gain
from researchorg.world.protocol import PROGRAM_BRANCH

AGENT = "check"


def check(program: Program, runs: int, threads: int) -> float:
    """The program's final main measured against its baseline with `runs` fresh seeds each: main's gain."""
    git, ledger = program.git, program.ledger
    baseline, main = ledger.program().baseline_commit, git.head_of(PROGRAM_BRANCH)
    ledger.ensure_agent(AGENT, AGENT, AGENT, "", "", baseline)
    runtime = Runtime(program, slots=detect_slots(2, threads))
    codes = [(Code(main, main, git.tree_of(main), "final check of main"), runs),
             (Code(baseline, baseline, git.tree_of(baseline), "final check of the baseline"), runs)]
    measured = runtime.measure_codes(AGENT, codes, "ablation")
    main_runs, base_runs = ([e.metric for e in group if e.status == "measured"] for group in measured)
    if not main_runs or not base_runs:
        raise SystemExit(f"{program.root}: no successful check run of main or the baseline")
    return gain(program.task.metric, statistics.fmean(main_runs), statistics.fmean(base_runs))


def _interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.4f} ± {half:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, help="a real-task bench's output directory")
    parser.add_argument("--runs", type=int, default=2, help="fresh-seed runs of main and of the baseline")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per slot (the bench's)")
    parser.add_argument("--quick", action="store_true", help="a 4-run simulated-task program (CI)")
    args = parser.parse_args()
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            program = Program.init(Path(tmp) / "check", "simulated")
            Runtime(program).run(Limits(max_experiments=4))
            print(f"checked_improvement: {check(program, 1, 1):.4f}")
        return
    if args.out is None or not (args.out / "programs").is_dir():
        raise SystemExit(f"{args.out}: not a real-task bench's output directory (no programs/ in it)")
    by_org: dict[str, dict[int, float]] = {}
    for where in sorted((args.out / "programs").iterdir()):
        found = re.fullmatch(r"(.+)-(\d+)", where.name)
        if not found or not (where / ".researchorg").is_dir():
            continue
        value = check(Program(where), args.runs, args.threads)
        by_org.setdefault(found[1], {})[int(found[2])] = value
        print(f"{where.name}: {value:.4f}", flush=True)
    for org, values in by_org.items():
        print(f"org: {org}")
        print(f"checked_improvement: {_interval(list(values.values()))} ({len(values)} repeats, "
              f"{args.runs} fresh runs each of main and the baseline)")
    orgs = list(by_org)
    for i, a in enumerate(orgs):
        for b in orgs[i + 1:]:
            seeds = sorted(set(by_org[a]) & set(by_org[b]))
            diffs = [by_org[a][s] - by_org[b][s] for s in seeds]
            p = stats.ttest_rel([by_org[a][s] for s in seeds], [by_org[b][s] for s in seeds]).pvalue \
                if len(seeds) > 1 else float("nan")
            print(f"paired: {a} - {b}: {_interval(diffs)} (paired t-test p = {p:.3g}, {len(seeds)} repeats)")


if __name__ == "__main__":
    main()
