"""Benchmark repeats on a real task: one program per (org, repeat), run through the real lab.

Every repeat starts from the task's baseline in a program of its own
(`OUT/programs/<org>-<seed>`), with the spec's compute (slots, threads, runs
or hours) and the agents' seeds offset by the repeat's seed, so repeats search
differently. A repeat interrupted midway resumes like `researchorg run`.

Programs run side by side when `compute.machine_slots` allows: the machine's
slots (CPU cores in groups of `threads`, or GPUs) form a pool, each program
takes as many as its org has, on disjoint cores or GPUs, and the next waits
(in spec order) until enough are free. With `compute.ray` the pool is a Ray
cluster's slots instead (world/cluster.py), as they are when the bench starts:
the programs spread over its nodes. Curves are over wall time since the
repeat's first run started.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from researchorg.bench.measures import RepeatResult, measure
from researchorg.bench.spec import BenchSpec
from researchorg.engine.runtime import Limits, Runtime
from researchorg.errors import ConfigError
from researchorg.world.program import Program
from researchorg.world.slots import Slot, detect_slots


def run_real_repeats(spec: BenchSpec, todo: list[tuple[str, Any, Path, int, int, Path]], programs: Path,
                     save: Callable[[RepeatResult, Path], None]) -> None:
    """Run the (label, org, org file, slots, seed, result path) repeats, side by side as far as the machine's
    slots allow; `save` is called in this thread as each finishes. Ctrl-C interrupts every program in flight
    (each resumes like `run`) and is raised again."""
    cluster = None
    if spec.compute.ray:
        from researchorg.world.cluster import RayCluster
        cluster = RayCluster(spec.compute.ray, spec.threads)
        pool: list[Any] = cluster.slots()
        widest = max(job[3] for job in todo)
        if widest > len(pool):
            raise ConfigError(f"an org of the bench needs {widest} slots; the Ray cluster has {len(pool)}")
    else:
        pool = detect_slots(spec.compute.machine_slots or max(job[3] for job in todo), spec.threads)
    free: list[Slot] = list(pool)
    finished: queue.Queue = queue.Queue()
    running: dict[int, Runtime] = {}
    threads: list[threading.Thread] = []

    def work(key: int, label: str, org_file: Path, seed: int, slots: list[Slot], path: Path) -> None:
        try:
            where = programs / f"{label}-{seed}"
            program = Program(where) if (where / ".researchorg").exists() else \
                Program.init(where, spec.task, budget=spec.budget, org_file=org_file)
            runtime = running[key] = Runtime(program, slots=slots, seed_offset=1000 * seed)
            report = runtime.run(Limits(max_experiments=spec.compute.experiments, max_hours=spec.compute.hours))
            result = None if report.stopped_by == "interrupted" else \
                measure(program.ledger, program.task.metric, label, seed)
            finished.put((key, slots, result, path, None))
        except BaseException as err:  # reported in the bench's thread
            finished.put((key, slots, None, path, err))

    pending = list(enumerate(todo))
    in_flight = 0
    try:
        while pending or in_flight:
            while pending and len(free) >= pending[0][1][3]:
                key, (label, _, org_file, slots, seed, path) = pending.pop(0)
                mine, free[:] = free[:slots], free[slots:]
                thread = threading.Thread(target=work, args=(key, label, org_file, seed, mine, path),
                                          name=f"bench-{label}-{seed}", daemon=True)
                thread.start()
                threads.append(thread)
                in_flight += 1
            try:
                key, slots, result, path, error = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            in_flight -= 1
            running.pop(key, None)
            free.extend(slots)
            free.sort(key=pool.index)
            if error is not None:
                raise error
            if result is None:
                raise KeyboardInterrupt  # a program was interrupted (its run saw Ctrl-C first)
            save(result, path)
    except BaseException:
        for runtime in list(running.values()):
            runtime.interrupt()
        for thread in threads:
            thread.join()
        raise
    finally:
        if cluster is not None:
            cluster.close()
