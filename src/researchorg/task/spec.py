"""The task spec: what is researched, read from a directory's task.toml.

A task is a directory with the files agents may edit (`editable`, globs), the
files nobody may edit (`protected`; task.toml itself always is), the command
that trains and evaluates within `budget_seconds`, how long before the run is
killed (`timeout_seconds`), the metric (name, direction and the regular
expression that reads it from the log), the seed, and the knobs: named
constants in the editable files that offline agents tune.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from researchorg.config import Strict, load_toml_model

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


class Knob(Strict):
    """A top-level constant `NAME = value` in an editable file, and the values it may take."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str
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
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"knob {self.name}: an {self.type} knob needs `low` < `high`")
        elif self.log and self.low <= 0:
            raise ValueError(f"knob {self.name}: a log-scale knob needs `low` > 0")
        return self


class CpuVariant(Strict):
    """A GPU task's tiny configuration, which `init` writes on a machine without a GPU: the budget, the
    constants it sets in the task's files (`{"train.py": {"DEPTH": 2}}`) and the knobs' ranges there."""

    budget_seconds: float | None = Field(default=None, gt=0)
    set: dict[str, dict[str, int | float | str | bool | list[int | float | str | bool]]] = {}
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
    command: str
    prepare: str | None = None  # run once at `init`, e.g. to check the data
    editable: list[str] = Field(min_length=1)
    protected: list[str] = []
    budget_seconds: float = Field(gt=0)
    # a protected harness's allowances around the budget: start-up before training (the sandbox, imports, data,
    # the first step and its compilation) and the hand-off after it; None: 60 s and 30 s on a CPU slot, 600 s
    # and 120 s on a GPU slot
    startup_allowance: float | None = Field(default=None, gt=0, le=86_400)
    handoff_allowance: float | None = Field(default=None, gt=0, le=86_400)
    timeout_seconds: float | None = Field(default=None, gt=0)
    seed: int = 42
    requires: list[str] = []  # Python modules the command imports, checked before the first run
    network: bool = False  # whether runs may reach the network (their sandbox has none otherwise)
    pass_env: list[str] = []  # secrets a run needs (e.g. WANDB_API_KEY): every other key and token is removed
    # paths no agent may see (the validation data): hidden from coding-CLI agents' sandboxes; `{stdlib}` is
    # the standard library of the interpreter that runs researchorg, `~` your home
    sealed: list[str] = []
    # the Python that runs `python` in the command and the prepare step (e.g. the repository's own .venv);
    # default: the interpreter that runs researchorg
    interpreter: str | None = None
    # paths outside the checkout a run may read (read-only), e.g. a dataset cache; `~` is your home, and a
    # path in it is also found under the run's own home
    data: list[str] = []
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
        for knob in [*self.knobs, *(self.cpu.knobs or [] if self.cpu else [])]:
            if not self.is_editable(knob.file):
                raise ValueError(f"knob {knob.name}: file {knob.file!r} is not editable")
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
        import shlex
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


def load_task(task_dir: Path) -> TaskSpec:
    """Load and validate `task_dir/task.toml`."""
    return load_toml_model(task_dir / "task.toml", TaskSpec, root=task_dir.resolve())
