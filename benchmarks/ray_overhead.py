"""What running on Ray costs: the same experiments through local slots and through a local 2-node Ray cluster.

    python benchmarks/ray_overhead.py [--experiments 16] [--budget 10] [--agents 4] [--quick]

Two programs of the same task and org (tuners, as many agents as slots or more, no noise floor), one after the
other in this process: one on two local CPU slots of one thread each, one on a Ray cluster of two nodes of one
CPU each (`ray.cluster_utils.Cluster`, a head with no resources of its own), through `RayCluster`, the
executor `researchorg run --ray` uses. Each run's slot time (from taking the slot to giving it back: the
checkout or the archive, the node's unpacking, the run, the log copied back) is in its summary, so:

    local_seconds_per_experiment:         mean slot time per run on local slots
    ray_seconds_per_experiment:           the same on the Ray cluster
    ray_overhead_seconds_per_experiment:  their difference (target at most 1.0 at a 10 s budget)
    local_slot_utilization:               of the slots' time while the program ran, the part runs held
    ray_slot_utilization:                 the same on Ray (target at least 0.95)
    experiments:                          runs per side

The default is tinylm at a 10 s budget. `--quick` (CI) runs the simulated task, 6 experiments a side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from researchorg import Program
from researchorg.engine.runtime import Limits, Runtime
from researchorg.world.slots import detect_slots

ORG = """name = "ray-overhead"
[[roles]]
name = "tuner"
backend = "{backend}"
count = {agents}
[rigor]
noise_runs = 0
"""


def side(root: Path, task: str, budget: float | None, agents: int, n: int, cluster=None) -> dict[str, float]:
    org = root.with_suffix(".org.toml")
    org.write_text(ORG.format(backend="simulated" if task == "simulated" else "tuner", agents=agents))
    program = Program.init(root, task, budget=budget, org_file=org)
    slots = None if cluster else detect_slots(2, 1)
    report = Runtime(program, slots=slots, cluster=cluster).run(Limits(max_experiments=n))
    runs = [e for e in program.ledger.experiments() if e.status != "interrupted"]
    held = [e.summary["slot_seconds"] for e in runs if "slot_seconds" in e.summary]
    return {"seconds": statistics.mean(held), "utilization": report.utilization, "n": len(runs),
            "statuses": sorted({e.status for e in runs})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=16)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="the simulated task, 6 experiments a side (CI)")
    args = parser.parse_args()
    task, budget, n = ("simulated", None, 6) if args.quick else ("tinylm", args.budget, args.experiments)

    from ray.cluster_utils import Cluster

    from researchorg.world.cluster import RayCluster

    with tempfile.TemporaryDirectory(prefix="researchorg-ray-overhead-") as tmp:
        local = side(Path(tmp) / "local", task, budget, args.agents, n)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            on_ray = RayCluster(cluster.address, threads=1)
            try:
                ray = side(Path(tmp) / "ray", task, budget, args.agents, n, cluster=on_ray)
            finally:
                on_ray.close()
        finally:
            cluster.shutdown()
    print(f"task:                                 {task}, {budget or 'default'} s budget, {args.agents} agents, "
          f"2 slots")
    print(f"local_seconds_per_experiment:         {local['seconds']:.3f}")
    print(f"ray_seconds_per_experiment:           {ray['seconds']:.3f}")
    print(f"ray_overhead_seconds_per_experiment:  {ray['seconds'] - local['seconds']:.3f}")
    print(f"local_slot_utilization:               {local['utilization']:.3f}")
    print(f"ray_slot_utilization:                 {ray['utilization']:.3f}")
    print(f"experiments:                          {local['n']} local, {ray['n']} on Ray "
          f"(statuses {', '.join(local['statuses'])} / {', '.join(ray['statuses'])})")


if __name__ == "__main__":
    main()
