"""Slot utilization: N agents on M slots through researchorg, against autoresearch's sequential loop.

    python benchmarks/utilization.py [--agents 4] [--slots 2] [--think 1.0] [--budget 2.0] [--experiments 40]
                                     [--backend tuner|openai] [--in-flight 2]

The task is a stand-in whose run sleeps for the budget (so the figure measures
the scheduling, not the CPU). With `--backend tuner` the agents are Optuna
tuners that "think" for `--think` seconds before each proposal; with
`--backend openai` they are LLM agents talking to a local OpenAI-compatible
server (the tests' fake, on 127.0.0.1) that takes `--think` seconds per reply.
Both configurations go through the real runtime, lab, git and ledger.
Prints, measured in this one invocation:

    slot_utilization:             researchorg, N agents on M slots (each with `--in-flight` proposals),
                                  over the whole run, the agents' first thinking included
    sequential_slot_utilization:  one agent on one slot, thinking then running, as autoresearch does
    ..._from_first_run:           the same from the first run's start to the last run's end, counting
                                  only time inside the runs themselves (the ledger's start and end times)
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
            in_flight: int, backend: str) -> tuple[float, float]:
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
    org.write_text(f'name = "bench"\n[[roles]]\nname = "researcher"\ncount = {agents}\nin_flight = {in_flight}\n'
                   + agent)
    try:
        program = Program.init(root / "program", str(task), org_file=org)
        report = Runtime(program, slots=[Slot(f"s{i}") for i in range(slots)]).run(Limits(max_experiments=experiments))
    finally:
        if server is not None:
            server.close()
    assert len(report.ran) == experiments and all(e.status in ("keep", "discard") for e in report.ran)
    runs = program.ledger.experiments()
    span = max(e.ended_at for e in runs) - min(e.started_at for e in runs)
    steady = sum(e.ended_at - e.started_at for e in runs) / (slots * span)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_steady = measure(Path(tmp) / "org", args.agents, args.slots, args.think, args.budget,
                                    args.experiments, args.in_flight, args.backend)
        sequential, sequential_steady = measure(Path(tmp) / "seq", 1, 1, args.think, args.budget,
                                                max(args.experiments // 4, 5), 1, args.backend)
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
