"""Slot utilization: N agents on M slots through researchorg, against autoresearch's sequential loop.

    python benchmarks/utilization.py [--agents 4] [--slots 2] [--think 1.0] [--budget 2.0] [--experiments 40]
                                     [--backend tuner|openai] [--in-flight 2] [--quick]

The task is a stand-in whose run sleeps for the budget (so the figure measures
the scheduling, not the CPU). With `--backend tuner` the agents are Optuna
tuners that "think" for `--think` seconds before each proposal; with
`--backend openai` they are LLM agents talking to a local OpenAI-compatible
server (the tests' fake, on 127.0.0.1) that takes `--think` seconds per reply.
Both configurations go through the real runtime, lab, git and ledger.
Prints, measured in this one invocation:

    slot_utilization:             researchorg's default rigor (noise floor, noise-aware decisions with
                                  re-runs), N agents on M slots (each with `--in-flight` proposals), over
                                  the whole run, the agents' first thinking included
    sequential_slot_utilization:  one agent on one slot, thinking then running, keeping what is better, as
                                  autoresearch does (no noise floor)
    ..._from_first_run:           the same from the first run's start to the last run's end, counting
                                  only time inside the runs themselves (from the ledger: each run's start
                                  and its time on the slot)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fake OpenAI-compatible server
from researchorg import Limits, Program, Runtime, Slot
from tests.fakes.llm_servers import FakeOpenAI, Reply, tool_call  # noqa: E402

TASK_TOML = """name = "sleep"
command = "python train.py"
editable = ["train.py"]
protected = []
budget_seconds = {budget}
seed = 1

[metric]
name = "score"
direction = "maximize"

[[knobs]]
name = "X"
file = "train.py"
type = "float"
low = 0.0
high = 1.0
"""

TRAIN_PY = """import os, time
X = 0.5
time.sleep(float(os.environ["RESEARCHORG_BUDGET"]))
print("---")
print(f"score: {1 - (X - 0.3) ** 2:.6f}")
"""


def measure(root: Path, agents: int, slots: int, think: float, budget: float, experiments: int,
            in_flight: int, backend: str, autoresearch: bool = False) -> tuple[float, float]:
    """Utilization of one org: researchorg's default rigor (noise floor, noise-aware decisions), or
    autoresearch's loop (keep if better, no noise floor)."""
    task = root / "task"
    task.mkdir(parents=True)
    (task / "task.toml").write_text(TASK_TOML.format(budget=budget))
    (task / "train.py").write_text(TRAIN_PY)
    org = root / "org.toml"
    server = None
    if backend == "openai":
        server = FakeOpenAI()
        server.delay, server.default = think, Reply(tool_calls=[tool_call("submit", {"description": "rerun"})])
        agent = f'backend = "openai"\nmodel = "fake"\nbase_url = "{server.base_url}"\n'
    else:
        agent = f'backend = "tuner"\nthink_seconds = {think}\n'
    rigor = 'policy = "greedy"\n[rigor]\nnoise_runs = 0\n' if autoresearch else ""
    org.write_text(f'name = "bench"\n{rigor}[[roles]]\nname = "researcher"\ncount = {agents}\n'
                   f'in_flight = {in_flight}\n' + agent)
    try:
        program = Program.init(root / "program", str(task), org_file=org)
        report = Runtime(program, slots=[Slot(f"s{i}") for i in range(slots)]).run(Limits(max_experiments=experiments))
    finally:
        if server is not None:
            server.close()
    statuses = [e.status for e in program.ledger.experiments()]
    if report.ran != experiments or len(statuses) != experiments or any(
            s not in ("keep", "discard", "measured") for s in statuses):
        failed = [f"#{e.id} {e.status}: {e.reason[-300:]}" for e in program.ledger.experiments()
                  if e.status not in ("keep", "discard", "measured")]
        raise SystemExit(f"expected {experiments} finished runs, got {statuses}\n" + "\n".join(failed))
    runs = program.ledger.experiments()
    span = max(e.ran_until for e in runs) - min(e.started_at for e in runs)
    steady = sum(e.ran_until - e.started_at for e in runs) / (slots * span)
    return report.utilization, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--experiments", type=int, default=40)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--backend", choices=["tuner", "openai"], default="tuner")
    parser.add_argument("--quick", action="store_true", help="12 experiments of 0.5 s (CI)")
    args = parser.parse_args()
    if args.quick:
        args.experiments, args.budget, args.think = 12, 0.5, 0.25
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_steady = measure(Path(tmp) / "org", args.agents, args.slots, args.think, args.budget,
                                    args.experiments, args.in_flight, args.backend)
        sequential, sequential_steady = measure(Path(tmp) / "seq", 1, 1, args.think, args.budget,
                                                max(args.experiments // 4, 5), 1, args.backend,
                                                autoresearch=True)
    print(f"backend: {args.backend}")
    print(f"agents: {args.agents}")
    print(f"slots: {args.slots}")
    print(f"think_seconds: {args.think:g}")
    print(f"budget_seconds: {args.budget:g}")
    print(f"experiments: {args.experiments}")
    print(f"slot_utilization: {ours:.4f}")
    print(f"slot_utilization_from_first_run: {ours_steady:.4f}")
    print(f"sequential_slot_utilization: {sequential:.4f}")
    print(f"sequential_slot_utilization_from_first_run: {sequential_steady:.4f}")
    print(f"sequential_expected: {args.budget / (args.budget + args.think):.4f}")


if __name__ == "__main__":
    main()
