"""A benchmark repeat on a real task: one program per (org, repeat), run through the real lab.

Every repeat starts from the task's baseline in a program of its own
(`OUT/programs/<org>-<repeat>`), with the spec's compute (slots, threads,
runs or hours) and the agents' seeds offset by the repeat, so repeats search
differently. A repeat interrupted midway resumes like `researchorg run`.
Curves are over wall time since the repeat's first run started.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from researchorg.bench.run import RepeatResult, area
from researchorg.bench.spec import BenchSpec
from researchorg.lab.program import Program
from researchorg.lab.scheduler import detect_slots
from researchorg.org.runtime import Limits, Runtime


def run_real_repeat(spec: BenchSpec, label: str, org_file: Path, repeat: int, slots: int,
                    where: Path) -> RepeatResult:
    program = Program(where) if (where / ".researchorg").exists() else \
        Program.init(where, spec.task, budget=spec.budget, org_file=org_file)
    runtime = Runtime(program, slots=detect_slots(slots, spec.threads), seed_offset=1000 * repeat)
    report = runtime.run(Limits(max_experiments=spec.compute.experiments, max_hours=spec.compute.hours))
    if report.stopped_by == "interrupted":
        raise KeyboardInterrupt  # the bench stops here; the same command resumes this repeat
    return measure(program, label, repeat)


def measure(program: Program, label: str, repeat: int) -> RepeatResult:
    """The repeat's curves and rates, from its ledger."""
    ledger, metric = program.ledger, program.task.metric
    runs = [e for e in ledger.experiments() if e.status != "interrupted"]
    start = min((e.started_at for e in runs), default=0.0)
    sign = -1.0 if metric.direction == "minimize" else 1.0
    floor = ledger.noise_floor()
    kept = [e for e in runs if e.status == "keep" and e.metric is not None]
    base = floor["mean"] if floor else (kept[0].metric if kept else 0.0)
    verified = [(0.0, 0.0)] + [(m["at"] - start, sign * (m["metric"] - base)) for m in ledger.merges()]
    raw, best = [(0.0, 0.0)], 0.0
    for e in sorted(kept, key=lambda e: e.ended_at or 0.0):
        if sign * (e.metric - base) > best:
            best = sign * (e.metric - base)
            raw.append(((e.ended_at or start) - start, best))
    horizon = max((e.ended_at or start for e in runs), default=start) - start or 1e-9
    decided = [e for e in runs if e.kind == "proposal" and e.status in ("keep", "discard")]
    rates = ledger.reproduction("agent").values()
    usage = ledger.usage()
    verified_n = sum(n for _, n in rates)
    return RepeatResult(
        label, repeat, verified, raw, horizon, len(runs), verified[-1][1], raw[-1][1], None,
        area(verified, horizon) / horizon,
        sum(e.status == "keep" for e in decided) / len(decided) if decided else 0.0,
        sum(ok for ok, _ in rates) / verified_n if verified_n else None,
        statistics.fmean(e.status in ("crash", "timeout", "invalid") for e in runs) if runs else 0.0,
        merges=len(ledger.merges()), tokens=int(usage["input_tokens"] + usage["output_tokens"]),
        cost_usd=float(usage["cost_usd"]))
