"""The benchmark spec (bench.toml): org files x one task x compute x repeats.

    name = "topologies"
    task = "simulated"        # in the simulated world (virtual time); any other task (tinylm, a path) in the real lab
    repeats = 5               # repeat r uses seed + r for every org (the landscape, the agents): paired
    seed = 0                  # another seed: an independent rerun of the whole comparison
    [compute]
    slots = 8
    experiments = 400         # runs per repeat, for every org (or hours = virtual hours)
    machine_slots = 2         # real tasks: this machine's slots filled at once, programs side by side
    [[orgs]]
    file = "solo.toml"        # relative to the spec; roles must be `simulated` on the simulated task
    label = "solo"            # optional; default: the org's name
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from researchorg.agents import check_org
from researchorg.config import OrgSpec, Strict, load_org, load_toml_model
from researchorg.errors import ConfigError


class ComputeSpec(Strict):
    slots: int = Field(default=1, ge=1)
    experiments: int | None = Field(default=None, ge=1)  # runs per repeat, every kind counted
    hours: float | None = Field(default=None, gt=0)  # hours per repeat (virtual in simulation)
    # real tasks: how many of this machine's slots the bench fills at once, with programs side by side on
    # disjoint cores or GPUs (each program gets its org's slots); default: one program at a time
    machine_slots: int | None = Field(default=None, ge=1)
    # real tasks: "auto" or a Ray cluster's address: the programs spread over the cluster's slots instead
    ray: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _bounded(self) -> ComputeSpec:
        if self.experiments is None and self.hours is None:
            raise ValueError("set experiments or hours: every org gets the same compute")
        return self


class OrgEntry(Strict):
    file: str
    label: str | None = None
    slots: int | None = Field(default=None, ge=1)  # this entry's slots instead of compute.slots (a scaling test)


class BenchSpec(Strict):
    name: str
    task: str = "simulated"
    repeats: int = Field(default=3, ge=2)  # at least two, for an interval
    seed: int = Field(default=0, ge=0)  # repeat r uses seed + r: landscape seed, agents' seed offset
    compute: ComputeSpec
    orgs: list[OrgEntry] = Field(min_length=1)
    landscape: dict[str, float | int] = {}  # overrides of the simulated landscape (e.g. n_ideas = 400)
    budget: float | None = Field(default=None, gt=0)  # real tasks: training seconds per run (task default if unset)
    threads: int | None = Field(default=None, ge=1)  # real tasks: CPU threads per slot


def load_bench(path: Path) -> tuple[BenchSpec, list[tuple[str, OrgSpec, Path, int]]]:
    """The spec and its orgs (label, org, org file, slots), every file checked before anything runs."""
    spec = load_toml_model(path, BenchSpec)
    orgs = []
    for entry in spec.orgs:
        org = load_org(path.parent / entry.file)
        for role in org.roles:
            if spec.task == "simulated" and role.backend != "simulated":
                raise ConfigError(f"{path.parent / entry.file}: roles.{role.name}.backend: the simulated world runs "
                                  f"`simulated` agents only, not {role.backend!r}")
        check_org(org, path.parent / entry.file)
        orgs.append((entry.label or org.name, org, path.parent / entry.file, entry.slots or spec.compute.slots))
    if spec.compute.machine_slots is not None and max(slots for *_, slots in orgs) > spec.compute.machine_slots:
        raise ConfigError(f"{path}: compute.machine_slots = {spec.compute.machine_slots} is fewer than an org's "
                          f"{max(slots for *_, slots in orgs)} slots")
    labels = [label for label, *_ in orgs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: orgs: labels must be unique, got {labels}")
    return spec, orgs
