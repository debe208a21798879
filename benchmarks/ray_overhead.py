"""What running on Ray costs: the same experiments through local slots and through a local 2-node Ray cluster.

    python benchmarks/ray_overhead.py [--experiments 8] [--agents-experiments 16] [--budget 10] [--quick]

The same program (tinylm's baseline at a 10 s budget) on two local CPU slots of one thread each, and on a Ray
cluster of two nodes of one CPU each (`ray.cluster_utils.Cluster`, a head with no resources of its own)
through `RayCluster`, the executor `researchorg run --ray` uses, one side after the other in this process.
Neither side's slots are pinned to cores (Ray does not pin CPUs, and on one machine both nodes share its
cores), so the difference is what the cluster adds.

First the same N experiments on each side: the baseline's code with N fresh seeds, queued at once (an
experiment plan, as `ablate` runs). Of each run's slot time (from taking the slot to giving it back), the part
outside its training process (the training's wall time as the harness measured it) is what the executor
costs: the checkout or the archive and the node's unpacking, the harness's start and evaluation, the log
copied back. Then tuners, more agents than slots, run on the cluster, for its utilization.

    local_outside_seconds_per_experiment:  slot time beyond training per run on local slots
    ray_outside_seconds_per_experiment:    the same on the Ray cluster
    ray_overhead_seconds_per_experiment:   their difference (target at most 1.0 at a 10 s budget)
    ray_slot_utilization:                  of the cluster's slot time while 4 tuners ran, the part runs held
                                           (target at least 0.95)

`--quick` (CI) runs the simulated task: 4 experiments a side and 6 for the tuners.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from researchorg import Program
from researchorg.engine.evidence import Code
from researchorg.engine.runtime import Limits, Runtime
from researchorg.world.slots import Slot

AGENT = "overhead"
ORG = """name = "ray-overhead"
[[roles]]
name = "tuner"
backend = "{backend}"
count = {agents}
[rigor]
noise_runs = 0
"""


def make(root: Path, task: str, budget: float | None, agents: int) -> Program:
    org = root.with_suffix(".org.toml")
    org.write_text(ORG.format(backend="simulated" if task == "simulated" else "tuner", agents=agents))
    return Program.init(root, task, budget=budget, org_file=org)


def outside(program: Program, n: int, cluster=None) -> tuple[float, list[str]]:
    """Run the baseline n times at once; the mean slot time per run beyond its training process."""
    slots = None if cluster else [Slot(f"cpu{i}", threads=1) for i in range(2)]  # unpinned, as Ray's are
    runtime = Runtime(program, slots=slots, cluster=cluster)
    baseline = program.ledger.program().baseline_commit
    program.ledger.ensure_agent(AGENT, AGENT, AGENT, "", "", baseline)
    code = Code(baseline, baseline, program.git.tree_of(baseline), "baseline")
    runs = runtime.measure_codes(AGENT, [(code, n)], "overhead")[0]
    trained = program.task.name != "simulated"  # the simulated task's training_seconds are virtual
    beyond = [e.summary["slot_seconds"] - (e.summary.get("training_seconds", 0.0) if trained else 0.0) for e in runs]
    return statistics.mean(beyond), sorted({e.status for e in runs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=8, help="the baseline's runs on each side")
    parser.add_argument("--agents-experiments", type=int, default=16, help="the tuners' runs on the cluster")
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="the simulated task, fewer runs (CI)")
    args = parser.parse_args()
    task, budget = ("simulated", None) if args.quick else ("tinylm", args.budget)
    n, m = (4, 6) if args.quick else (args.experiments, args.agents_experiments)

    from ray.cluster_utils import Cluster

    from researchorg.world.cluster import RayCluster

    with tempfile.TemporaryDirectory(prefix="researchorg-ray-overhead-") as tmp:
        local, local_statuses = outside(make(Path(tmp) / "local", task, budget, args.agents), n)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            on_ray = RayCluster(cluster.address, threads=1)
            try:
                ray, ray_statuses = outside(make(Path(tmp) / "ray", task, budget, args.agents), n, on_ray)
                tuners = make(Path(tmp) / "tuners", task, budget, args.agents)
                report = Runtime(tuners, cluster=on_ray).run(Limits(max_experiments=m))
            finally:
                on_ray.close()
        finally:
            cluster.shutdown()
    print(f"task:                                  {task}, {budget or 'default'} s budget, 2 slots a side")
    print(f"local_outside_seconds_per_experiment:  {local:.3f}")
    print(f"ray_outside_seconds_per_experiment:    {ray:.3f}")
    print(f"ray_overhead_seconds_per_experiment:   {ray - local:.3f}")
    print(f"ray_slot_utilization:                  {report.utilization:.3f}")
    print(f"experiments:                           {n} a side (statuses {', '.join(local_statuses)} / "
          f"{', '.join(ray_statuses)}), {report.ran} by {args.agents} agents on Ray")


if __name__ == "__main__":
    main()
