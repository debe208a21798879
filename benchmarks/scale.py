"""Bookkeeping at data-centre scale: many simulated agents on as many slots through the engine, every run in the
ledger.

    python benchmarks/scale.py [--agents 1000] [--experiments 100000] [--policy noise-aware] [--no-ledger] [--quick]

Runs simulated agents (idea quality 0.3, 60 s of thinking, ~300 s runs in
virtual time) on the simulated task's landscape (with 400 ideas, so that no
agent runs out) in the simulated world: the engine that runs the real lab
(the scheduler's fair share, the acceptance policy with re-runs, verification
and merges), under the virtual clock, over the in-memory ledger, which is then
written whole into a SQLite ledger (one transaction). Prints
`experiments_per_second:` (simulated runs per second of real time, the SQLite
copy included) and `peak_rss_mb:` of this process. Target: 100,000
experiments of 1,000 agents in <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from researchorg import Landscape, Limits, OrgSpec, Runtime, SimWorld, SqlLedger
from researchorg.stats.acceptance import POLICIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--policy", default="noise-aware", choices=POLICIES)
    parser.add_argument("--no-ledger", action="store_true", help="keep the runs in memory only")
    parser.add_argument("--quick", action="store_true", help="100 agents, 5,000 experiments (CI)")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.experiments = 100, 5000
    org = OrgSpec(name="scale", policy=args.policy,
                  roles=[{"name": "researcher", "count": args.agents, "backend": "simulated", "idea_quality": 0.3,
                          "think_seconds": 60}],
                  processes=[{"kind": "merge"}, {"kind": "verify"}])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        world = SimWorld(Landscape(seed=0, n_ideas=400), org)
        report = Runtime(world, slots=world.default_slots(args.agents)).run(Limits(max_experiments=args.experiments))
        simulated = time.perf_counter() - started
        ledger = world.ledger
        recorded = len(ledger.experiments())
        size = 0.0
        if not args.no_ledger:
            stored = SqlLedger(Path(tmp) / "ledger.db")
            stored.copy_from(ledger)
            recorded = stored.count()
            stored.close()  # checkpoints the write-ahead log into the file
            size = (Path(tmp) / "ledger.db").stat().st_size / 2**20
        seconds = time.perf_counter() - started
    decided = [e for e in ledger.experiments() if e.status in ("keep", "discard")]
    print(f"agents: {args.agents}  slots: {args.agents}  policy: {args.policy}")
    print(f"experiments: {len(ledger.experiments())}  recorded_in_ledger: {recorded}  ledger_mb: {size:.1f}")
    print(f"decisions: {len(decided)}  kept: {sum(e.status == 'keep' for e in decided)}  "
          f"verifications: {len(ledger.verifications())}  merges: {len(ledger.merges())}")
    print(f"virtual_hours: {report.wall_seconds / 3600:.1f}  slot_utilization: {report.utilization:.3f}")
    print(f"simulation_seconds: {simulated:.1f}")
    print(f"wall_seconds: {seconds:.1f}")
    print(f"experiments_per_second: {len(ledger.experiments()) / seconds:.0f}")
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
