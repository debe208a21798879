"""The task spec: what is researched, read from a directory's task.toml.

A task is a directory with the files agents may edit (`editable`, globs), the
files nobody may edit (`protected`; task.toml itself always is), the command
that trains and evaluates within `budget_seconds`, how long before the run is
killed (`timeout_seconds`), the metric (name, direction and the regular
expression that reads it from the log), the seed, and the knobs: named
constants in the editable files that offline agents tune.

Everything is checked when the spec is loaded (`check`, `init`, `run`, `bench`): a path that climbs out of the
task, an empty command or one that cannot be split into words, a knob whose file does not hold it, and the like
are each one ConfigError naming the file and the key, before anything runs.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from researchorg.config import Strict, load_toml_model
from researchorg.errors import ConfigError

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
MAX_SECONDS = 30 * 86_400  # a budget or a timeout longer than 30 days is a typo (and past what timers take)


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    if "\x00" in value:
        raise ValueError("holds a NUL character")
    return value


def _in_task(value: str) -> str:
    """A path or glob relative to the task directory, as the lab matches them (`train.py`, `src/*.py`); the
    value is in the error's `(got ...)`."""
    _text(value)
    parts = value.split("/")
    if value.startswith(("/", "~")):
        raise ValueError("is not relative to the task directory: write it like train.py or src/*.py")
    if ".." in parts:
        raise ValueError("climbs out of the task directory")
    if any(part in ("", ".") for part in parts) or value != value.strip():
        raise ValueError("is not a plain relative path: write it like train.py or src/*.py (no ./, no // and no "
                         "trailing / or spaces)")
    return value


def _sealed(value: str) -> str:
    """A sealed path: absolute, `~/...`, `{stdlib}/...`, or relative to the task directory without climbing."""
    _text(value)
    if not value.startswith(("/", "~", "{stdlib}")) and ".." in Path(value).parts:
        raise ValueError("climbs out of the task directory: write an absolute path or ~/... instead")
    return value


def _command(value: str) -> str:
    """A command line the lab splits into words (shlex) and runs without a shell."""
    _text(value)
    try:
        shlex.split(value)
    except ValueError as err:
        raise ValueError(f"cannot be split into words ({err}): check its quotes") from None
    return value


def _module(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", value):
        raise ValueError("is not a Python module name, like torch or numpy.linalg")
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("is not an environment variable's name, like WANDB_API_KEY")
    return value


TaskPath = Annotated[str, AfterValidator(_in_task)]
SealedPath = Annotated[str, AfterValidator(_sealed)]
OutsidePath = Annotated[str, AfterValidator(_text)]
Command = Annotated[str, AfterValidator(_command)]
Module = Annotated[str, AfterValidator(_module)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]


class Knob(Strict):
    """A top-level constant `NAME = value` in an editable file, and the values it may take."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: TaskPath
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[int | float | str | bool] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> Knob:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"knob {self.name}: a categorical knob needs `choices`")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError(f"knob {self.name}: a categorical knob takes `choices`, not `low`, `high` or `log`")
        elif self.choices is not None:
            raise ValueError(f"knob {self.name}: an {self.type} knob takes `low` and `high`, not `choices`")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"knob {self.name}: an {self.type} knob needs `low` < `high`")
        elif not math.isfinite(self.high - self.low):
            raise ValueError(f"knob {self.name}: `high` - `low` must be a finite number")
        elif self.log and self.low <= 0:
            raise ValueError(f"knob {self.name}: a log-scale knob needs `low` > 0")
        elif self.type == "int" and math.ceil(self.low) > math.floor(self.high):
            raise ValueError(f"knob {self.name}: no integer lies between `low` {self.low:g} and `high` {self.high:g}")
        return self

    def check_value(self, value: Any) -> None:
        """ConfigError unless `value`, the knob's value in its file, is of the knob's type."""
        if self.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"knob {self.name}: {self.file} sets it to {value!r}, not an integer")
        if self.type == "float" and (isinstance(value, bool) or not isinstance(value, int | float)
                                     or not math.isfinite(value)):
            raise ConfigError(f"knob {self.name}: {self.file} sets it to {value!r}, not a finite number")


class CpuVariant(Strict):
    """A GPU task's tiny configuration, which `init` writes on a machine without a GPU: the budget, the
    constants it sets in the task's files (`{"train.py": {"DEPTH": 2}}`) and the knobs' ranges there."""

    budget_seconds: Seconds | None = None
    set: dict[TaskPath, dict[str, int | float | str | bool | list[int | float | str | bool]]] = {}
    knobs: list[Knob] | None = None


class MetricSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    direction: Literal["minimize", "maximize"]
    pattern: str | None = None  # a regex whose first group is the value; default `^<name>:\s*<number>`
    # "stdout": the command prints the metric; "harness": the protected command writes a verdict file
    # (status, metric, summary) to $RESEARCHORG_RESULT and printed lines are ignored (harness/protected.py)
    source: Literal["stdout", "harness"] = "stdout"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except re.error as err:
                raise ValueError(f"not a regular expression: {err}") from None
            if compiled.groups < 1:
                raise ValueError("needs a group that captures the value, e.g. '^val_bpb:\\s*(\\S+)'")
        return pattern

    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern or rf"^{re.escape(self.name)}:\s*{NUMBER}\s*$", re.MULTILINE)


class RunLimits(Strict):
    """What one run may use of the machine (task.toml's `[limits]`), enforced from outside it
    (world/limits.py); a run past one is a crash that names it."""
    processes: int = Field(default=1024, ge=16, le=1 << 20)  # processes at once
    disk_gib: float = Field(default=4.0, gt=0, le=1 << 20)  # disk it may fill in its checkout and scratch
    output_mib: float = Field(default=64.0, gt=0, le=1 << 20)  # what it may print

    @property
    def disk_bytes(self) -> int:
        return int(self.disk_gib * (1 << 30))

    @property
    def output_bytes(self) -> int:
        return int(self.output_mib * (1 << 20))


class HarnessSpec(Strict):
    """A protected evaluation function that train.py calls with its model (task.toml's `[harness]`): the lab's
    harness (harness/adopted.py) makes that call hand the model over, and scores it with the function."""
    entry: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")  # "prepare:evaluate_bpb"
    # how the evaluation calls it: `model` is the handed-over model (its loss computed by the lab), other names
    # are the module's own or the plain arguments train.py passed in its call
    call: str
    seq_len: int | str  # the length of the sequences it scores: a number, or a constant of the entry's module

    @field_validator("call")
    @classmethod
    def _parses(cls, call: str) -> str:
        import ast
        try:
            ast.parse(call, mode="eval")
        except SyntaxError as err:
            raise ValueError(f"not a Python expression: {err.msg}") from None
        return call


class TaskSpec(Strict):
    name: str
    description: str = ""
    command: Command
    prepare: Command | None = None  # run once at `init`, e.g. to check the data
    editable: list[TaskPath] = Field(min_length=1)
    protected: list[TaskPath] = []
    budget_seconds: Seconds
    # a protected harness's allowances around the budget: start-up before training (the sandbox, imports, data,
    # the first step and its compilation) and the hand-off after it; None: 60 s and 30 s on a CPU slot, 600 s
    # and 120 s on a GPU slot
    startup_allowance: float | None = Field(default=None, gt=0, le=86_400)
    handoff_allowance: float | None = Field(default=None, gt=0, le=86_400)
    timeout_seconds: Seconds | None = None
    seed: int = 42
    requires: list[Module] = []  # Python modules the command imports, checked before the first run
    network: bool = False  # whether runs may reach the network (their sandbox has none otherwise)
    pass_env: list[EnvName] = []  # secrets a run needs (e.g. WANDB_API_KEY): every other key and token is removed
    # paths no agent may see (the validation data): hidden from coding-CLI agents' sandboxes; `{stdlib}` is
    # the standard library of the interpreter that runs researchorg, `~` your home
    sealed: list[SealedPath] = []
    # the Python that runs `python` in the command and the prepare step (e.g. the repository's own .venv);
    # default: the interpreter that runs researchorg
    interpreter: OutsidePath | None = None
    # paths outside the checkout a run may read (read-only), e.g. a dataset cache; `~` is your home, and a
    # path in it is also found under the run's own home
    data: list[OutsidePath] = []
    # the names the command's summary block uses for what the lab compares (peak_vram_mb = "peak_mem_mb")
    summary_keys: dict[str, str] = {}
    metric: MetricSpec
    knobs: list[Knob] = []
    cpu: CpuVariant | None = None  # a GPU task's tiny configuration for machines without one
    limits: RunLimits = RunLimits()
    # a protected evaluation function train.py calls with its model: the lab scores the model with it, and what
    # train.py prints is a claim (metric.source must be "harness")
    harness: HarnessSpec | None = None
    # whether two runs of the same code under different seeds must hand over different weights (a harness task's
    # check that the code does not pick its seed; turn it off for a model that training brings to the same
    # weights from any start, such as a convex one)
    seed_check: bool = True
    root: Path  # the task directory; set by load_task, not read from the file
    _protected_files: list[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.timeout_seconds is not None and self.timeout_seconds <= self.budget_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds}) must exceed budget_seconds ({self.budget_seconds})"
            )
        for i, pattern in enumerate(self.editable):
            if not any(c in pattern for c in "*?[") and (self.is_protected(pattern) or pattern == "task.toml"):
                raise ValueError(f"editable.{i}: {pattern} is also protected, so no agent may edit it")
        for key, knobs in (("knobs", self.knobs), ("cpu.knobs", self.cpu.knobs or [] if self.cpu else [])):
            names = [knob.name for knob in knobs]
            for i, knob in enumerate(knobs):
                if not self.is_editable(knob.file):
                    raise ValueError(f"{key}.{i}.file: knob {knob.name}: file {knob.file!r} is not editable")
                if names.count(knob.name) > 1:
                    raise ValueError(f"{key}.{i}.name: two knobs named {knob.name}")
        if self.harness is not None:
            if self.metric.source != "harness":
                raise ValueError('[harness] needs [metric] source = "harness": the lab\'s harness computes it')
            if self.script() is None:
                raise ValueError(f"command {self.command!r}: with [harness] it must be `python SCRIPT.py [ARGS]`")
            module = self.harness.entry.split(":")[0].replace(".", "/") + ".py"
            if not self.is_protected(module):
                raise ValueError(f"[harness] entry {self.harness.entry}: {module} must be protected")
        if "task.toml" not in self.protected:
            self.protected = [*self.protected, "task.toml"]
        return self

    def at_fidelity(self, fidelity: float) -> TaskSpec:
        """The task with a run trained for `fidelity` of its budget (a screening run; 1: the task itself). The
        run's command learns it from RESEARCHORG_BUDGET, as it learns the full budget."""
        if fidelity == 1.0:
            return self
        return self.model_copy(update={"budget_seconds": self.budget_seconds * fidelity})

    def allowances(self, gpu: bool) -> tuple[float, float]:
        """(start-up, hand-off) seconds a protected harness allows around the budget on a CPU or a GPU slot."""
        return (self.startup_allowance or (600.0 if gpu else 60.0), self.handoff_allowance or (120.0 if gpu else 30.0))

    def timeout(self, gpu: bool = False) -> float:
        """Seconds after which the lab kills a run, whatever it does: as set; else for a protected harness its
        allowances, the budget and 10 minutes for the evaluation; else twice the budget and a minute."""
        if self.timeout_seconds:
            return self.timeout_seconds
        if self.metric.source == "harness":
            return sum(self.allowances(gpu)) + 1.05 * self.budget_seconds + 660
        return 2 * self.budget_seconds + 60

    def script(self) -> tuple[str, list[str]] | None:
        """(script, arguments) of a `python SCRIPT.py ARGS` command, or None."""
        try:
            argv = shlex.split(self.command)
        except ValueError:
            return None
        if len(argv) >= 2 and argv[0] == "python" and argv[1].endswith(".py"):
            return argv[1], argv[2:]
        return None

    def sealed_paths(self) -> list[Path]:
        """The `sealed` paths, `{stdlib}` and `~` filled in, relative ones taken in the task directory, and
        their copies in the machine's other Python installations."""
        import sysconfig

        from researchorg.harness.sealed import with_copies
        stdlib = sysconfig.get_paths()["stdlib"]
        return with_copies([self.root / p if not Path(p).is_absolute() else Path(p)
                            for p in (os.path.expanduser(entry.replace("{stdlib}", stdlib))
                                      for entry in self.sealed)])

    def python(self) -> str:
        """The interpreter that runs `python` in the task's commands."""
        return os.path.expanduser(self.interpreter) if self.interpreter else sys.executable

    def data_paths(self) -> list[Path]:
        return [Path(os.path.expanduser(p)) for p in self.data]

    def is_editable(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.editable) and not self.is_protected(path)

    def is_protected(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.protected)

    def protected_files(self) -> list[str]:
        """The protected files present in the task directory, relative, sorted. Listed once per loaded spec: a
        program's task directory is the lab's own (no run or agent writes there), and a run asks for each
        experiment."""
        if self._protected_files is None:
            found = {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}
            self._protected_files = sorted(f for f in found if self.is_protected(f))
        return list(self._protected_files)

    def read_metric(self, log_text: str) -> float | None:
        """The last value of the metric in a run's log, or None if it never appears."""
        matches = self.metric.regex().findall(log_text)
        if not matches:
            return None
        value = float(matches[-1] if isinstance(matches[-1], str) else matches[-1][0])
        return value if math.isfinite(value) else None


def load_task(task_dir: Path, check_files: bool = True) -> TaskSpec:
    """Load and validate `task_dir/task.toml`; with `check_files`, also that every knob's file holds the knob
    and every constant [cpu.set] sets is there. An experiment's checkout, whose editable files the agents may
    have rewritten, is loaded without (a knob its code no longer has is its run's business, not the spec's)."""
    path = task_dir / "task.toml"
    spec = load_toml_model(path, TaskSpec, root=task_dir.resolve())
    if check_files:
        _check_files(spec, path)
    return spec


def _check_files(spec: TaskSpec, where: Path) -> None:
    """Each knob's file is a file of the task that holds one top-level `NAME = literal` of the knob's type,
    and each file [cpu.set] names holds the constants it sets: a ConfigError naming the key otherwise."""
    from researchorg.task.knobs import find_constant, read_knob
    texts: dict[str, str | None] = {}

    def text_of(file: str, key: str) -> str:
        if file not in texts:
            path = spec.root / file
            try:
                inside = path.resolve().is_relative_to(spec.root)
                texts[file] = path.read_text(encoding="utf-8") if inside and path.is_file() else None
            except (OSError, UnicodeDecodeError):
                texts[file] = None
        found = texts[file]
        if found is None:
            raise ConfigError(f"{where}: {key}: {file!r} is not a readable text file of the task")
        return found

    for key, knobs in (("knobs", spec.knobs), ("cpu.knobs", spec.cpu.knobs or [] if spec.cpu else [])):
        for i, knob in enumerate(knobs):
            text = text_of(knob.file, f"{key}.{i}.file")
            try:
                # a [cpu] knob's constant holds its CPU value only once [cpu.set] wrote it: its type is checked then
                value = read_knob(text, knob)
                if key == "knobs":
                    knob.check_value(value)
            except ConfigError as err:
                raise ConfigError(f"{where}: {key}.{i}: {err}") from None
    for file, constants in (spec.cpu.set if spec.cpu else {}).items():
        text = text_of(file, f"cpu.set.{file}")
        for constant in constants:
            try:
                find_constant(text, constant, file)
            except ConfigError as err:
                raise ConfigError(f"{where}: cpu.set.{file}.{constant}: {err}") from None
