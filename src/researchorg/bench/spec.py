"""The benchmark spec (bench.toml): org files x one task x compute x repeats.

    name = "topologies"
    task = "simulated"        # this first version runs the simulated task in the virtual lab
    repeats = 5               # repeat r uses landscape seed r for every org: paired comparisons
    [compute]
    slots = 8
    experiments = 400         # runs per repeat, for every org (or hours = virtual hours)
    [[orgs]]
    file = "solo.toml"        # relative to the spec; roles must be `simulated` in the virtual lab
    label = "solo"            # optional; default: the org's name
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from researchorg.config import OrgSpec, Strict, load_org, load_toml_model
from researchorg.errors import ConfigError


class ComputeSpec(Strict):
    slots: int = Field(default=1, ge=1)
    experiments: int | None = Field(default=None, ge=1)  # runs per repeat, every kind counted
    hours: float | None = Field(default=None, gt=0)  # virtual hours per repeat

    @model_validator(mode="after")
    def _bounded(self) -> ComputeSpec:
        if self.experiments is None and self.hours is None:
            raise ValueError("set experiments or hours: every org gets the same compute")
        return self


class OrgEntry(Strict):
    file: str
    label: str | None = None


class BenchSpec(Strict):
    name: str
    task: str = "simulated"
    repeats: int = Field(default=3, ge=2)  # at least two, for an interval
    compute: ComputeSpec
    orgs: list[OrgEntry] = Field(min_length=1)
    landscape: dict[str, float | int] = {}  # overrides of the simulated landscape (e.g. n_ideas = 400)


def load_bench(path: Path) -> tuple[BenchSpec, list[tuple[str, OrgSpec]]]:
    """The spec and its orgs (label, org), every file checked before anything runs."""
    spec = load_toml_model(path, BenchSpec)
    if spec.task != "simulated":
        raise ConfigError(f"{path}: task: this version of `researchorg bench` runs the simulated task in the "
                          f"virtual lab; {spec.task!r} needs the real-lab runner (not built yet)")
    orgs = []
    for entry in spec.orgs:
        org = load_org(path.parent / entry.file)
        for role in org.roles:
            if role.backend != "simulated":
                raise ConfigError(f"{path.parent / entry.file}: roles.{role.name}.backend: the virtual lab runs "
                                  f"`simulated` agents only, not {role.backend!r}")
        orgs.append((entry.label or org.name, org))
    labels = [label for label, _ in orgs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: orgs: labels must be unique, got {labels}")
    return spec, orgs
