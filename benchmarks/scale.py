"""Bookkeeping at data-centre scale: the virtual lab with many agents on as many slots, every run in the ledger.

    python benchmarks/scale.py [--agents 1000] [--experiments 100000] [--policy noise-aware] [--no-ledger]

Runs simulated agents (idea quality 0.3, 60 s of thinking, ~300 s runs in
virtual time) on the simulated task's landscape (with 400 ideas, so that no
agent runs out) through the virtual lab: the scheduler's fair share, the
acceptance policy with re-runs, verification and merges, and every run
written to a SQLite ledger (in batches, one transaction each). Prints
`experiments_per_second:` (simulated runs per second of real time, bookkeeping
included) and `peak_rss_mb:` of this process. Target: 100,000 experiments in
<= 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from researchorg.ledger import Ledger
from researchorg.sim.landscape import Landscape
from researchorg.sim.virtual import SimRole, VirtualLab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--policy", default="noise-aware", choices=("greedy", "noise-aware"))
    parser.add_argument("--no-ledger", action="store_true", help="keep the runs in memory only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = None if args.no_ledger else Ledger(Path(tmp) / "ledger.db")
        lab = VirtualLab(Landscape(seed=0, n_ideas=400), [SimRole(count=args.agents, quality=0.3, think_seconds=60)],
                         slots=args.agents, policy=args.policy, max_experiments=args.experiments, ledger=ledger)
        started = time.perf_counter()
        result = lab.run()
        seconds = time.perf_counter() - started
        recorded = ledger.count() if ledger is not None else len(result.runs)
        size = (Path(tmp) / "ledger.db").stat().st_size / 2**20 if ledger is not None else 0.0
    print(f"agents: {args.agents}  slots: {args.agents}  policy: {args.policy}")
    print(f"experiments: {len(result.runs)}  recorded_in_ledger: {recorded}  ledger_mb: {size:.1f}")
    print(f"decisions: {len(result.decisions)}  kept: {sum(d.keep for d in result.decisions)}  "
          f"verifications: {len(result.verifications)}  merges: {len(result.merges)}")
    print(f"virtual_hours: {result.seconds / 3600:.1f}  slot_utilization: "
          f"{result.slot_seconds / max(result.seconds * args.agents, 1e-9):.3f}")
    print(f"wall_seconds: {seconds:.1f}")
    print(f"experiments_per_second: {len(result.runs) / seconds:.0f}")
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
