"""Do independent reruns of one benchmark spec agree? Runs the spec with several seeds and compares intervals.

    python benchmarks/repeatability.py [SPEC] [--seeds 0 100 200] [--measure final_verified] [--quick]

Each seed is an independent rerun of the whole comparison (repeat r of seed s
uses landscape and agent seed s + r: no repeat is shared between reruns). For
every org it prints each rerun's mean and 95% CI of the measure, then
`intervals_overlap:` (true when every pair of reruns' intervals overlap, for
every org) and `orders_agree:` (the orgs ranked alike by every rerun, where
their intervals do not overlap within a rerun). Default spec: the shipped
simulated comparison, which runs in seconds; a real-task spec works too but
takes its full time once per seed.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from researchorg import load_bench, run_bench, summarize_bench

DEFAULT = Path(__file__).parents[1] / "examples" / "bench" / "simulated" / "bench.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    parser.add_argument("--measure", default="final_verified")
    parser.add_argument("--quick", action="store_true", help="two seeds of the default spec (CI)")
    args = parser.parse_args()
    if args.quick:
        args.spec, args.seeds = DEFAULT, [0, 100]
    started = time.perf_counter()
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            spec, orgs = load_bench(args.spec)
            spec.seed = seed
            summaries[seed] = summarize_bench(run_bench(spec, orgs, Path(tmp) / str(seed)))["orgs"]
    labels = list(summaries[args.seeds[0]])
    print(f"spec: {args.spec}  measure: {args.measure}  seeds: {args.seeds}")
    overlap = True
    for label in labels:
        cells = []
        for seed in args.seeds:
            mean, half = summaries[seed][label][args.measure]
            cells.append(f"{mean:.4f} ± {half:.4f}")
        pairs = [(summaries[a][label][args.measure], summaries[b][label][args.measure])
                 for a, b in itertools.combinations(args.seeds, 2)]
        mine = all(abs(m1 - m2) <= h1 + h2 for (m1, h1), (m2, h2) in pairs)
        overlap &= mine
        print(f"  {label:<28} " + "   ".join(cells) + ("" if mine else "   (no overlap)"))
    agree = True
    for a, b in itertools.combinations(labels, 2):
        signs = set()
        for seed in args.seeds:
            (ma, ha), (mb, hb) = summaries[seed][a][args.measure], summaries[seed][b][args.measure]
            if abs(ma - mb) > ha + hb:  # separated in this rerun
                signs.add(ma > mb)
        agree &= len(signs) <= 1
    print(f"intervals_overlap: {str(overlap).lower()}")
    print(f"orders_agree: {str(agree).lower()}")
    print(f"seconds: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
