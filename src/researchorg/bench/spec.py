"""The benchmark spec (bench.toml): org files x one task x compute x repeats.

    name = "topologies"
    task = "simulated"        # in the simulated world (virtual time); any other task (tinylm, a path) in the real lab
    repeats = 5               # repeat r uses seed + r for every org (the landscape, the agents): paired
    seed = 0                  # another seed: an independent rerun of the whole comparison
    target = "solo-1"         # optional: an improvement, or an org's label (what it reaches in each repeat);
                              # each org's time to it, and with an org its parallel efficiency
    [compute]
    slots = 8
    experiments = 400         # runs per repeat, for every org (or hours = virtual hours)
    machine_slots = 2         # real tasks: this machine's slots filled at once, programs side by side
    [[orgs]]
    file = "solo.toml"        # relative to the spec; roles must be `simulated` on the simulated task
    label = "solo"            # optional; default: the org's name
    [landscape]               # the simulated task only: overrides of its hidden landscape (harness/landscape.py)
    preset = "calibrated"     # optional: start from a named landscape (base, realistic, calibrated); on
                              # calibrated, a sigma also takes the fit made at the noise nearest it
    n_ideas = 400

Loading checks every file and value before anything runs: the task (a built-in name or a task directory,
relative to the working directory or the spec), each org, and each landscape parameter's type and range.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from researchorg.agents import check_org
from researchorg.config import OrgSpec, Strict, load_org, load_toml_model
from researchorg.errors import ConfigError
from researchorg.harness.landscape import CALIBRATED, REALISTIC, Landscape
from researchorg.task import find_task, load_task
from researchorg.task.spec import MAX_SECONDS

Share = Annotated[float, Field(ge=0, le=1)]  # a probability or a fraction
Scale = Annotated[float, Field(ge=0, le=1e9)]
Positive = Annotated[float, Field(gt=0, le=1e9)]


class LandscapeParams(Strict):
    """A bench's `[landscape]`: overrides of the simulated task's hidden landscape (harness/landscape.py says
    what each means), each of its type and in its range; unset ones keep the landscape's defaults. It reads
    as a mapping of the set ones (`Landscape(seed=s, **params)`)."""

    # a named landscape to start from (harness/landscape.py): "base" (the defaults), "realistic" (tinylm's
    # noise), "calibrated" (fitted to real agents' autoresearch runs); the other keys override it
    preset: Literal["base", "realistic", "calibrated"] | None = None
    n_ideas: int | None = Field(default=None, ge=2, le=100_000)
    sigma: Positive | None = None
    base: float | None = Field(default=None, ge=-1e9, le=1e9)
    p_win: Share | None = None
    p_harm: Share | None = None
    win_sigmas: tuple[Scale, Scale] | None = None
    harm_sigmas: tuple[Scale, Scale] | None = None
    effects: Literal["uniform", "continuous"] | None = None
    win_mean: Positive | None = None
    win_shape: float | None = Field(default=None, ge=0.01, le=100)
    harm_mean: Positive | None = None
    scale_spread: float | None = Field(default=None, ge=0, le=5)
    insight: float | None = Field(default=None, ge=0, le=1)
    interactions: int | None = Field(default=None, ge=0, le=100_000)
    saturation: Positive | None = None
    seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    crash_p: float | None = Field(default=None, ge=0, lt=1)
    slot_speed_spread: float | None = Field(default=None, ge=0, lt=1)
    busy_p: Share | None = None
    busy_spell: float | None = Field(default=None, ge=1, le=1e9)  # seconds: a spell is no shorter than 1 s
    busy_slowdown: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] | None = None
    busy_cores: Scale | None = None
    throughput_slope: Scale | None = None
    steps: Positive | None = None
    fidelity_slope: float | None = Field(default=None, ge=-1e9, le=1e9)
    fidelity_deviation: Scale | None = None
    fidelity_sigma: Scale | None = None

    @model_validator(mode="after")
    def _together(self) -> LandscapeParams:
        given = {name: getattr(self, name) for name in type(self).model_fields if name != "preset"}
        default = {f.name: f.default for f in dataclasses.fields(Landscape) if f.init}
        default.update({"realistic": REALISTIC, "calibrated": CALIBRATED}.get(self.preset or "", {}))
        value = {name: default[name] if v is None else v for name, v in given.items()}
        if value["p_win"] + value["p_harm"] > 1:
            raise ValueError(f"p_win + p_harm must be at most 1 (they are {value['p_win']:g} and "
                             f"{value['p_harm']:g}: the shares of ideas that help and that hurt)")
        return self

    @field_validator("win_sigmas", "harm_sigmas", "busy_slowdown")
    @classmethod
    def _ordered(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        if pair is not None and not pair[0] <= pair[1]:
            raise ValueError("must be [low, high] with low <= high")
        return pair

    def keys(self) -> list[str]:
        """The parameters set, the preset apart."""
        return [name for name in type(self).model_fields if name != "preset" and getattr(self, name) is not None]

    def build(self, seed: int) -> Landscape:
        """The landscape of `seed`: the preset's (default: base), with the set parameters over it. On the calibrated
        preset a `sigma` also picks the fit made at the noise nearest it (`Landscape.calibrated`: the law of
        effects is fitted with the noise it assumes)."""
        make = {None: Landscape, "base": Landscape, "realistic": Landscape.realistic,
                "calibrated": Landscape.calibrated}[self.preset]
        return make(seed=seed, **{name: self[name] for name in self.keys()})

    def __getitem__(self, name: str) -> Any:
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def __bool__(self) -> bool:
        return bool(self.keys()) or self.preset is not None


class ComputeSpec(Strict):
    slots: int = Field(default=1, ge=1, le=100_000)
    experiments: int | None = Field(default=None, ge=1, le=100_000_000)  # runs per repeat, every kind counted
    hours: float | None = Field(default=None, gt=0, le=100_000)  # hours per repeat (virtual in simulation)
    # real tasks: how many of this machine's slots the bench fills at once, with programs side by side on
    # disjoint cores or GPUs (each program gets its org's slots); default: one program at a time
    machine_slots: int | None = Field(default=None, ge=1, le=100_000)
    # real tasks: "auto" or a Ray cluster's address: the programs spread over the cluster's slots instead
    ray: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _bounded(self) -> ComputeSpec:
        if self.experiments is None and self.hours is None:
            raise ValueError("set experiments or hours: every org gets the same compute")
        return self


class OrgEntry(Strict):
    file: str = Field(min_length=1)  # relative to the spec
    label: str | None = None
    # this entry's slots instead of compute.slots (a scaling test)
    slots: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("file", "label")
    @classmethod
    def _printable(cls, text: str | None) -> str | None:
        if text is not None and (not text.strip() or not text.isprintable()):
            raise ValueError("must be a name that prints on one line")
        return text


class BenchSpec(Strict):
    name: str
    task: str = "simulated"
    repeats: int = Field(default=3, ge=2, le=100_000)  # at least two, for an interval
    seed: int = Field(default=0, ge=0)  # repeat r uses seed + r: landscape seed, agents' seed offset
    compute: ComputeSpec
    orgs: list[OrgEntry] = Field(min_length=1)
    landscape: LandscapeParams = LandscapeParams()  # overrides of the simulated landscape (e.g. n_ideas = 400)
    # real tasks: training seconds per run (task default if unset)
    budget: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    threads: int | None = Field(default=None, ge=1, le=100_000)  # real tasks: CPU threads per slot
    # the improvement each org's time to reach is reported, or the label of a reference org: what it reached in
    # each repeat, and each org's parallel efficiency against it (bench/measures.py)
    target: float | str | None = None

    @field_validator("target")
    @classmethod
    def _finite(cls, target: float | str | None) -> float | str | None:
        if isinstance(target, float) and not math.isfinite(target):
            raise ValueError("must be a finite improvement or an org's label")
        return target


def load_bench(path: Path) -> tuple[BenchSpec, list[tuple[str, OrgSpec, Path, int]]]:
    """The spec and its orgs (label, org, org file, slots), every file checked before anything runs."""
    spec = load_toml_model(path, BenchSpec)
    task = None
    if spec.task != "simulated":
        task = load_task(_task_dir(spec, path))
        if spec.landscape:
            raise ConfigError(f"{path}: landscape: only the simulated task has a landscape; task {spec.task} takes "
                              "none (remove [landscape])")
    orgs = []
    for i, entry in enumerate(spec.orgs):
        org_file = path.parent / entry.file
        if org_file.is_dir():
            raise ConfigError(f"{path}: orgs.{i}.file: {entry.file} is a directory, not an org file")
        org = load_org(org_file)
        for role in org.roles:
            if spec.task == "simulated" and role.backend != "simulated":
                raise ConfigError(f"{path.parent / entry.file}: roles.{role.name}.backend: the simulated world runs "
                                  f"`simulated` agents only, not {role.backend!r}")
        check_org(org, org_file, task)
        orgs.append((entry.label or org.name, org, path.parent / entry.file, entry.slots or spec.compute.slots))
    if spec.compute.machine_slots is not None and max(slots for *_, slots in orgs) > spec.compute.machine_slots:
        raise ConfigError(f"{path}: compute.machine_slots = {spec.compute.machine_slots} is fewer than an org's "
                          f"{max(slots for *_, slots in orgs)} slots")
    labels = [label for label, *_ in orgs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: orgs: labels must be unique, got {labels}")
    if isinstance(spec.target, str) and spec.target not in labels:
        raise ConfigError(f"{path}: target: {spec.target!r} is not an org of the bench (its orgs: "
                          f"{', '.join(labels)})")
    return spec, orgs


def bench_target(text: str, labels: list[str]) -> float | str:
    """A target given on the command line: a finite improvement, or the label of one of the bench's orgs."""
    if text in labels:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"--target: {text!r} is neither a finite improvement nor an org of the bench (its orgs: "
                          f"{', '.join(labels)})")
    return value


def _task_dir(spec: BenchSpec, path: Path) -> Path:
    """The directory of the bench's real task: a built-in task by name, or a task directory relative to the
    working directory (as `init --task` takes it) or else to the spec, whose path `spec.task` then becomes."""
    try:
        return find_task(spec.task)
    except ConfigError as err:
        beside = path.parent / spec.task
        if spec.task.strip() and (beside / "task.toml").is_file():
            spec.task = str(beside.resolve())
            return beside.resolve()
        raise ConfigError(f"{path}: task: {err}") from None
