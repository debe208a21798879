"""Run a benchmark spec: every org, every repeat, the same compute, each repeat measured from its ledger.

Every org gets the same compute (slots and runs, or hours) and, in repeat r,
the same seed (the spec's seed + r): in simulation the same hidden landscape,
on a real task the same offset of the agents' seeds, so the comparison between
two orgs is paired. The simulated task runs in the simulated world (virtual
time, an in-memory ledger), any other task through the real lab (real.py);
the engine is the same, and so is the measurement (measures.py). Each
finished (org, repeat) is saved as JSON in the output directory, so an
interrupted bench resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from researchorg.bench.measures import RepeatResult, measure
from researchorg.bench.real import run_real_repeats
from researchorg.bench.spec import BenchSpec
from researchorg.config import OrgSpec
from researchorg.engine.runtime import Limits, Runtime
from researchorg.world.simulated import SimWorld


def repeat_seed(spec: BenchSpec, index: int) -> int:
    return spec.seed + index


def simulate(spec: BenchSpec, org: OrgSpec, repeat: int, slots: int) -> SimWorld:
    """One repeat in the simulated world; `repeat` is its seed (the landscape's, and the agents' offset)."""
    world = SimWorld(spec.landscape.build(repeat), org)
    report = Runtime(world, slots=world.default_slots(slots), seed_offset=1000 * repeat).run(
        Limits(max_experiments=spec.compute.experiments, max_hours=spec.compute.hours))
    if report.stopped_by == "interrupted":  # Ctrl-C: the repeat is not finished, nothing is saved
        raise KeyboardInterrupt
    return world


def run_repeat(spec: BenchSpec, label: str, org: OrgSpec, repeat: int, slots: int) -> RepeatResult:
    world = simulate(spec, org, repeat, slots)
    def true_gain(commit: str) -> float:
        return world.landscape.base - world.true_value(commit)
    return measure(world.ledger, world.task.metric, label, repeat, final_true=true_gain(world.main()),
                   true_of=true_gain)


def run_bench(spec: BenchSpec, orgs: list[tuple[str, OrgSpec, Path, int]], out: Path,
              on_done: Callable[[RepeatResult], Any] | None = None) -> dict[str, list[RepeatResult]]:
    """Every (org, repeat), skipping those already saved in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    found: dict[tuple[str, int], RepeatResult] = {}
    todo = []
    for label, org, org_file, slots in orgs:
        for index in range(spec.repeats):
            seed = repeat_seed(spec, index)
            path = out / "runs" / f"{label}-{seed}.json"
            saved = RepeatResult.load(path) if path.is_file() else None
            if saved is not None:
                found[(label, seed)] = saved
                if on_done is not None:
                    on_done(saved)
            else:
                todo.append((label, org, org_file, slots, seed, path))

    def save(result: RepeatResult, path: Path) -> None:
        path.write_text(json.dumps(asdict(result)))
        found[(result.org, result.repeat)] = result
        if on_done is not None:
            on_done(result)

    if spec.task == "simulated":
        for label, org, _, slots, seed, path in todo:
            save(run_repeat(spec, label, org, seed, slots), path)
    elif todo:
        run_real_repeats(spec, todo, out / "programs", save)
    return {label: [found[(label, repeat_seed(spec, i))] for i in range(spec.repeats)] for label, *_ in orgs}
