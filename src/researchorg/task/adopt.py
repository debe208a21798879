"""Adopting a repository as a task: an autoresearch-style one (prepare.py, train.py, program.md) by its layout,
or any repository with a command and a metric named on the command line.

`infer` reads the repository (never runs it) and says, for every field of the task it infers, where the value
came from; `render` writes that as the program's task.toml, a comment beside each field, for the user to
edit. What it infers from autoresearch's layout:

- `train.py` editable; `prepare.py`, `program.md` and the environment's files (pyproject.toml, uv.lock,
  requirements*.txt, .python-version) protected;
- the metric: the first `name: value` line train.py prints after its `print("---")` (autoresearch's summary
  block: `val_bpb`), its direction from its name (a loss, bpb, perplexity or error is minimized; an accuracy,
  score or reward maximized);
- the budget: a top-level `TIME_BUDGET = 300` in prepare.py or train.py. A different `--budget` rewrites
  that constant, and the figure its comment gives, in the program's copy (a protected file, so the agents
  cannot change it back);
- `requires`: the third-party modules train.py and prepare.py import;
- the interpreter: the repository's own `.venv` where it has one (what `uv run` would use; runs never
  `uv run`, since a run must not install anything and has no network), else the lab's;
- knobs: the editable files' top-level upper-case numeric constants, each over values around its own that
  the repository's code accepts (a size halved, as it is or doubled, so that its asserts still divide; a
  fraction within 0 and 1), so the offline tuner can work on it before any LLM agent does;
- `summary_keys`: autoresearch's summary names for what the lab compares as confounds (`peak_vram_mb` as
  memory, `num_steps` as steps, ...).

The data autoresearch's prepare.py downloads goes to `~/.cache/autoresearch`, outside the checkout: a
run sees such paths read-only (`data`), under the same names.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import operator
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.errors import ConfigError

ENVIRONMENT_FILES = ("pyproject.toml", "uv.lock", "requirements.txt", "requirements-dev.txt", ".python-version",
                     "setup.py", "setup.cfg", "environment.yml")
BUDGET_NAMES = ("TIME_BUDGET", "TIME_BUDGET_SECONDS", "TRAINING_BUDGET", "BUDGET_SECONDS")
MINIMIZE = re.compile(r"bpb|loss|perplexity|ppl|error|err\b|wer|cer|mse|mae|rmse|nll|_bits", re.IGNORECASE)
MAXIMIZE = re.compile(r"acc|f1|auc|score|reward|bleu|rouge|map\b|iou|precision|recall|r2", re.IGNORECASE)
SUMMARY_KEYS = {"peak_vram_mb": "peak_mem_mb", "num_steps": "steps", "num_params_M": "num_params",
                "total_tokens_M": "tokens"}
MAX_KNOBS = 16
NOT_KNOBS = re.compile(r"BUDGET|PEAK|FLOPS|SEED|EVAL|VOCAB|VERSION|PORT")  # constants of the setup, not the model
_SUMMARY_PRINT = re.compile(r"""^\s*([A-Za-z_][A-Za-z0-9_]*):""")


@dataclass
class Adopted:
    """A task inferred from a repository: its fields, where each came from, and what the user must know."""

    fields: dict[str, Any]
    sources: dict[str, str]  # where each field came from
    warnings: list[str] = field(default_factory=list)
    budget_constant: tuple[str, str] | None = None  # (file, constant) that holds the budget in the repository
    history: bool = True  # the program keeps the repository's git history (False: a copy of a plain folder)

    def lines(self) -> list[str]:
        """The inferred task, a field a line, with where each value came from."""
        shown = {k: v for k, v in self.fields.items() if k not in ("knobs", "summary_keys", "harness")}
        out = [f"{key} = {_toml_value(value)}  ({self.sources.get(key, 'default')})" for key, value in shown.items()]
        if self.fields.get("knobs"):
            names = ", ".join(k["name"] for k in self.fields["knobs"])
            out.append(f"knobs: {names}  ({self.sources['knobs']})")
        if self.fields.get("harness"):
            out.append(f"protected entry: {self.fields['harness']['entry']}  ({self.sources['harness']})")
        return out


def infer(repo: Path, *, command: str | None = None, metric: str | None = None, editable: list[str] | None = None,
          protected: list[str] | None = None, budget: float | None = None, pattern: str | None = None,
          name: str | None = None, prepare: str | None = None, environment: Path | None = None,
          where: str | None = None) -> Adopted:
    """The task of `repo`: autoresearch's layout where it has one, any flag overriding what is inferred; a
    repository of another shape needs `command` and `metric` (`NAME:minimize|maximize`). `environment`: where
    the repository's own virtual environment may be (its original folder; a clone has none); `where`: how
    errors name the repository (default its path)."""
    repo = repo.resolve()
    where = where or str(repo)
    autoresearch = (repo / "train.py").is_file() and (repo / "prepare.py").is_file()
    if not autoresearch and (command is None or metric is None):
        raise ConfigError(f"{where}: not an autoresearch-style repository (no train.py and prepare.py); "
                          "say how to run it: --command \"python train.py\" --metric NAME:minimize|maximize "
                          "--editable GLOB")
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []

    def put(key: str, value: Any, source: str) -> None:
        fields[key], sources[key] = value, source

    put("name", _slug(name or repo.name), "the repository's name")
    description = _description(repo)
    if description:
        put("description", description[0], description[1])
    python, python_source = _interpreter(environment or repo)
    if command is not None:
        put("command", command, "--command")
    else:
        put("command", "python train.py", "autoresearch's `uv run train.py`, " + (
            "as the interpreter below runs it" if python is not None else
            "run by the lab's own Python: the repository has no environment of its own (.venv)"))
    if python is not None:
        put("interpreter", python, python_source)
    if prepare is not None:
        put("prepare", prepare, "--prepare")
    elif autoresearch:
        put("prepare", "python prepare.py", "prepare.py (data and tokenizer; run once, at the first `run` or by "
                                            "`researchorg prepare`)")
    put("editable", editable or ["train.py"], "--editable" if editable else "autoresearch: agents edit train.py")
    if not editable and not autoresearch:
        raise ConfigError("say which files the agents may edit: --editable GLOB (e.g. --editable 'model/*.py')")
    found_protected = [p for p in ("prepare.py", "program.md", *ENVIRONMENT_FILES) if (repo / p).is_file()]
    put("protected", list(dict.fromkeys([*(protected or []), *found_protected])),
        ("--protected and " if protected else "") + "the data preparation, instructions and environment files")

    budget_at = _budget_constant(repo)
    if budget_at is None:
        unreadable = next(((f, n) for f in ("prepare.py", "train.py") for n in BUDGET_NAMES
                           if re.search(rf"(?m)^{n}\b", _read(repo / f) or _read_bytes(repo / f))), None)
        if unreadable is not None:  # the code keeps a budget the lab could not read nor rewrite
            raise ConfigError(f"{where}/{unreadable[0]}: {unreadable[1]} is not set as `{unreadable[1]} = <seconds>` "
                              "(a plain number, UTF-8): make it one, so that the lab's budget and the code's agree")
    if budget is not None:
        figure = _toml_value(budget)
        put("budget_seconds", budget, f"--budget {figure}" + (
            f" ({budget_at[0]}'s {budget_at[1]} rewritten from {_toml_value(budget_at[2])} to {figure} to match)"
            if budget_at else ""))
    elif budget_at is not None:
        put("budget_seconds", budget_at[2], f"{budget_at[0]}:{budget_at[3]} {budget_at[1]}")
    else:
        raise ConfigError(f"{where}: no training budget found (a top-level TIME_BUDGET = <seconds> in prepare.py or "
                          "train.py); give one with --budget SECONDS")

    metric_spec, metric_source = _metric(repo, metric, pattern, where)
    sources["metric"] = metric_source
    requires = _requires(repo, [p for p in ("train.py", "prepare.py") if (repo / p).is_file()])
    if requires:
        put("requires", requires, "the third-party modules train.py and prepare.py import")
    data = ["~/.cache/autoresearch"] if autoresearch and "autoresearch" in _read(repo / "prepare.py") else []
    if data:
        put("data", data, "prepare.py's cache directory (runs see it read-only)")
    entry = _protected_entry(repo, metric_spec["name"], requires) if autoresearch and command is None and \
        metric is None else (None, "")
    if entry[0] is not None:
        harness, sealed, how = entry[0]
        put("sealed", sealed, "prepare.py's validation file: out of the training run's sight")
        fields["harness"], sources["harness"] = harness, how
        metric_spec["source"] = "harness"
    elif metric_spec.get("source", "stdout") == "stdout":
        why = f" ({entry[1]})" if entry[1] else ""
        warnings.append(f"the metric {metric_spec['name']} is what the agents' own code prints "
                        f"({', '.join(fields['editable'])}): an edit there could forge it{why}. Name a protected "
                        "evaluation function in task.toml's [harness] to make it trustworthy (docs/tasks.md).")
    knobs = _knobs(repo, fields["editable"])
    if knobs:
        put("knobs", knobs, "the top-level upper-case numeric constants of the editable files, over values their "
                            "code accepts")
    printed = _read(repo / "train.py")
    summary = {k: v for k, v in SUMMARY_KEYS.items() if re.search(rf"\b{re.escape(k)}:", printed)}
    if summary:
        put("summary_keys", summary, "autoresearch's summary names for the lab's confounds")
    fields["metric"] = metric_spec
    return Adopted(fields, sources, warnings, (budget_at[0], budget_at[1]) if budget_at else None)


def render(adopted: Adopted, origin: str) -> str:
    """task.toml of an adopted repository, each field with where it came from."""
    lines = [f"# Adopted from {json.dumps(origin, ensure_ascii=False)} by `researchorg init --from`: every field "
             "says where it came from;",
             "# edit any of them (researchorg check DIR validates the file)."]
    for key, value in adopted.fields.items():
        if key in ("metric", "knobs", "summary_keys", "harness"):
            continue
        lines.append(f"{key} = {_toml_value(value)}  # {adopted.sources.get(key, '')}")
    metric = adopted.fields["metric"]
    lines += ["", f"[metric]  # {adopted.sources['metric']}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in metric.items()]
    if adopted.fields.get("harness"):
        lines += ["", f"[harness]  # {adopted.sources['harness']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in adopted.fields["harness"].items()]
    if adopted.fields.get("summary_keys"):
        lines += ["", f"[summary_keys]  # {adopted.sources['summary_keys']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in adopted.fields["summary_keys"].items()]
    for knob in adopted.fields.get("knobs", []):
        lines += ["", f"[[knobs]]  # {adopted.sources['knobs']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in knob.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write parses
    return text


def set_constant(path: Path, constant: str, value: Any) -> None:
    """Rewrite the top-level `constant = ...` statement in the Python file `path` (over as many lines as it
    spans) to `value`, keeping a comment after it; a budget's comment (`TIME_BUDGET = 300  # 5 minutes`) says
    the new figure where it said the old one."""
    text = path.read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise ConfigError(f"{path}: not valid Python ({err.msg}, line {err.lineno})") from None
    found = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
             and [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  if isinstance(t, ast.Name)] == [constant]]
    if len(found) != 1:
        raise ConfigError(f"{path}: expected one top-level `{constant} = ...` line to set")
    node = found[0].value
    literal = str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)
    lines = text.splitlines(keepends=True)
    first, last = node.lineno - 1, node.end_lineno - 1
    head = lines[first].encode()[:node.col_offset].decode()
    tail = lines[last].encode()[node.end_col_offset:].decode()
    if constant in BUDGET_NAMES and isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool) and isinstance(value, int | float) and "#" in tail:
        code, _, comment = tail.partition("#")
        tail = code + "#" + _restate_seconds(comment, float(node.value), float(value))
    lines[first:last + 1] = [head + literal + tail]
    path.write_text("".join(lines))


SECONDS_IN = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
              "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
_FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:(\s*-?\s*)(" + "|".join(sorted(SECONDS_IN, key=len, reverse=True))
                     + r"))?\b(?!\.\d)", re.IGNORECASE)


def _restate_seconds(comment: str, old: float, new: float) -> str:
    """A comment on a budget of `old` seconds, with each figure of it (300, 300 s, 5 minutes, 5-minute) said for
    `new` seconds, in the same unit where it makes a round figure, else in seconds."""

    def restate(match: re.Match[str]) -> str:
        number, gap, unit = float(match.group(1)), match.group(2) or "", match.group(3) or ""
        scale = SECONDS_IN.get(unit.lower(), 1)
        if number * scale != old:
            return match.group(0)
        amount = new / scale
        if unit and not (amount >= 1 and amount == round(amount, 1)):  # not a round figure in that unit
            amount, unit = new, "seconds" if len(unit) > 4 or unit.lower() == "hour" else "s"
        if unit.lower() in ("second", "seconds", "minute", "minutes", "hour", "hours"):
            unit = unit.rstrip("sS") + ("s" if amount != 1 and "-" not in gap else "")
        elif unit.lower() in ("secs", "mins", "hrs") and amount == 1:
            unit = unit[:-1]
        return f"{amount:g}{gap}{unit}"

    return _FIGURE.sub(restate, comment)


def render_toml(data: dict[str, Any], header: str = "") -> str:
    """A TOML document of `data` (a task.toml's fields): scalars first, then tables, then arrays of tables."""
    lines = [f"# {line}" for line in header.splitlines()]
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
    lines += [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in tables and k not in arrays]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for name, items in arrays.items():
        for item in items:
            lines += ["", f"[[{name}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write parses
    return text


# what is read from the repository ---------------------------------------------------------------------------

def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _read_bytes(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except OSError:
        return ""


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(_read(path))
    except SyntaxError:
        return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "adopted"


def _description(repo: Path) -> tuple[str, str] | None:
    try:
        project = tomllib.loads(_read(repo / "pyproject.toml")).get("project", {})
    except tomllib.TOMLDecodeError:
        project = {}
    if not isinstance(project, dict):
        project = {}
    if isinstance(project.get("description"), str) and project["description"].strip():
        return project["description"].strip(), "pyproject.toml's description"
    for line in _read(repo / "program.md").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip(), "program.md's title"
    return None


def _interpreter(repo: Path) -> tuple[str | None, str]:
    for candidate in (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe"):
        if (repo / candidate).exists():
            return str((repo / candidate).absolute()), f"the repository's own environment ({candidate}, " \
                "as `uv run` uses it; the lab runs it directly, never syncing it)"
    return None, ""


def _budget_constant(repo: Path) -> tuple[str, str, float, int] | None:
    """(file, constant, seconds, line) of the budget constant in prepare.py or train.py."""
    for file in ("prepare.py", "train.py"):
        tree = _parse(repo / file)
        for node in tree.body if tree else []:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in BUDGET_NAMES and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, int | float) and node.value.value > 0:
                return file, node.targets[0].id, float(node.value.value), node.lineno
    return None


def _metric(repo: Path, metric: str | None, pattern: str | None, where: str) -> tuple[dict[str, Any], str]:
    if metric is not None:
        name, _, direction = metric.partition(":")
        direction = direction or _direction(name)
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"--metric {metric}: say NAME:minimize or NAME:maximize")
        spec: dict[str, Any] = {"name": name, "direction": direction}
        source = "--metric"
    else:
        found = _summary_metric(repo / "train.py")
        if found is None:
            raise ConfigError(f"{where}/train.py: no summary block (`print(\"---\")` then `name: value` lines) "
                              "to read the metric from; name it with --metric NAME:minimize|maximize")
        name, line = found
        direction = _direction(name)
        if direction is None:
            raise ConfigError(f"train.py:{line}: cannot tell whether {name} is minimized or maximized; "
                              f"say --metric {name}:minimize or {name}:maximize")
        spec = {"name": name, "direction": direction}
        source = f"train.py:{line}, the first line of the summary block after print(\"---\"); {direction} by its name"
    if pattern is not None:
        spec["pattern"] = pattern
        source += "; pattern from --metric-pattern"
    return spec, source


def unprotected(repo: Path, metric: str, requires: list[str]) -> str:
    """Why an autoresearch-layout repository's metric cannot come from a protected harness (custom kernels, no
    evaluation call of prepare.py...), or "" where it can or the layout is another."""
    if not ((repo / "train.py").is_file() and (repo / "prepare.py").is_file()):
        return ""
    return _protected_entry(repo, metric, requires)[1]


CUSTOM_KERNELS = ("kernels", "flash_attn", "flash_attn_interface", "xformers", "apex", "triton", "mlx", "jax")


def _protected_entry(repo: Path, metric: str, requires: list[str]) -> tuple[tuple[dict, list[str], str] | None, str]:
    """The protected evaluation train.py calls with its model (autoresearch: `evaluate_bpb` of prepare.py):
    ((the [harness] table, the sealed validation path, where it came from), "") or (None, why there is none)."""
    train, prepare = _parse(repo / "train.py"), _parse(repo / "prepare.py")
    if train is None or prepare is None:
        return None, "train.py or prepare.py does not parse"
    kernels = sorted({r for r in requires if r in CUSTOM_KERNELS})
    if kernels or "torch" not in requires:
        reason = f"train.py uses custom kernels ({', '.join(kernels)})" if kernels else "train.py does not use torch"
        return None, f"{reason}: its model cannot be exported as a graph for the protected evaluation"
    imported = {alias.asname or alias.name: alias.name for node in ast.walk(train) if isinstance(node, ast.ImportFrom)
                and node.module == "prepare" for alias in node.names}
    functions = {node.name: node for node in prepare.body if isinstance(node, ast.FunctionDef)}
    # the call whose value train.py prints as the metric (`val_bpb = evaluate_bpb(model, ...)`)
    called = [node.value for node in ast.walk(train) if isinstance(node, ast.Assign)
              and [ast.unparse(t) for t in node.targets] == [metric] and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Name) and imported.get(node.value.func.id) in functions
              and node.value.args]
    if not called:
        return None, f"train.py's {metric} is not the value of a call of a function of prepare.py"
    function = functions[imported[called[0].func.id]]
    constants = _constants(prepare)
    seq_len = next((name for name in ("MAX_SEQ_LEN", "SEQ_LEN", "SEQUENCE_LEN", "BLOCK_SIZE")
                    if isinstance(constants.get(name), int)), None)
    val = constants.get("VAL_FILENAME")
    where = constants.get("DATA_DIR") or constants.get("CACHE_DIR")
    if seq_len is None or not isinstance(val, str) or not isinstance(where, str):
        return None, "prepare.py names no MAX_SEQ_LEN, validation file (VAL_FILENAME) or DATA_DIR"
    classes = {node.name: node for node in prepare.body if isinstance(node, ast.ClassDef)}
    arguments = []
    for param in [a.arg for a in function.args.args][1:]:
        made = next((f"{name}.from_directory()" for name, node in classes.items() if name.lower() == param.lower()
                     and any(isinstance(f, ast.FunctionDef) and f.name == "from_directory" for f in node.body)), None)
        arguments.append(made or param)
    harness = {"entry": f"prepare:{function.name}", "call": f"{function.name}(model, {', '.join(arguments)})",
               "seq_len": seq_len}
    how = (f"train.py:{called[0].lineno} calls prepare.{function.name} with its model: that call hands the model "
           f"over, and the lab scores it with prepare.{function.name} in its evaluation box, on {val}, which "
           "train.py cannot read; what train.py prints is a claim")
    return (harness, [f"{where.rstrip('/')}/{val}"], how), ""


def _constants(tree: ast.Module) -> dict[str, Any]:
    """The top-level constants of a module that plain expressions make (numbers, strings, f-strings,
    arithmetic, os.path.join and expanduser, which keeps `~`), evaluated without running the module."""
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = _evaluate(node.value, found)
            except _UNKNOWN:
                continue
    return found


_UNKNOWN = (ValueError, KeyError, TypeError, ArithmeticError, RecursionError)
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round}


def _evaluate(node: ast.AST, names: dict[str, Any]) -> Any:
    """The value of a plain expression of `names` (what _constants and the knobs' checks read), or one of
    _UNKNOWN. Bounded: a repository cannot make it build a huge number or string."""
    import os

    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _evaluate(node.left, names), _evaluate(node.right, names)
        if isinstance(node.op, ast.Pow) and (not isinstance(right, int | float) or abs(right) > 256):
            raise ValueError("exponent")
        value = _ARITHMETIC[type(node.op)](left, right)
        if isinstance(value, int) and value.bit_length() > 4096 or isinstance(value, str) and len(value) > 10_000:
            raise ValueError("too large")
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
        operand = _evaluate(node.operand, names)
        return -operand if isinstance(node.op, ast.USub) else +operand if isinstance(node.op, ast.UAdd) \
            else not operand
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _evaluate(node.left, names)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, names) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(_evaluate(v, names)) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        spec = _evaluate(node.format_spec, names) if node.format_spec is not None else ""
        if re.search(r"\d{5,}", spec):  # a width or precision that would fill the memory
            raise ValueError(spec)
        return format(_evaluate(node.value, names), spec)
    if isinstance(node, ast.Call) and not node.keywords:
        name = ast.unparse(node.func)
        args = [_evaluate(a, names) for a in node.args]
        if name == "os.path.join" and args and all(isinstance(a, str) for a in args):
            return os.path.join(*args)
        if name == "os.path.expanduser" and args == ["~"]:
            return "~"
        if name in _FUNCTIONS and args and all(isinstance(a, int | float) for a in args):
            return _FUNCTIONS[name](*args)
    raise ValueError(ast.unparse(node))


def _direction(name: str) -> str | None:
    if MINIMIZE.search(name):
        return "minimize"
    if MAXIMIZE.search(name):
        return "maximize"
    return None


def _summary_metric(train: Path) -> tuple[str, int] | None:
    """The first key train.py prints after `print("---")`, and its line."""
    tree = _parse(train)
    if tree is None:
        return None
    prints = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and isinstance(node.func, ast.Name) and node.func.id == "print" and node.args),
                    key=lambda n: n.lineno)
    after = False
    for call in prints:
        first = call.args[0]
        text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else \
            "".join(v.value for v in first.values if isinstance(v, ast.Constant)) \
            if isinstance(first, ast.JoinedStr) and first.values else None
        if text is None:
            continue
        if text.strip() == "---":
            after = True
            continue
        match = _SUMMARY_PRINT.match(text)
        if after and match:
            return match.group(1), call.lineno
    return None


def _requires(repo: Path, files: list[str]) -> list[str]:
    local = {p.stem for p in repo.glob("*.py")} | {p.name for p in repo.iterdir() if (p / "__init__.py").is_file()}
    found: dict[str, None] = {}
    for file in files:
        tree = _parse(repo / file)
        for node in ast.walk(tree) if tree else []:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for module in names:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found[top] = None
    return list(found)


def _knobs(repo: Path, editable: list[str]) -> list[dict[str, Any]]:
    """Knobs over the top-level upper-case constants of the editable Python files, each over values the
    repository's own code accepts, so that nothing a tuner draws fails on its first line:

    - a size (a batch, a width, heads, a head's dimension, a context length) is a choice of its value halved,
      as it is and doubled, which keeps what divides it dividing it;
    - a fraction (a name ending in _RATIO, _FRAC, _PROB, DROPOUT, a warmup or warmdown float) stays within
      0 to 1: a quarter of its value to four times, at most 1, or 0 to 1 when it is 0;
    - another int goes from half its value to twice it, another float from a quarter to four times on a log
      scale, a bool either way;
    - then the file's checks hold for every combination of the values: its asserts of constants (autoresearch:
      `TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0`) and, by their names, a width divisible by
      its heads and by a head's dimension, heads by key-value heads, a head's dimension even (rotary
      embeddings); an int a check involves becomes a choice, and the values that break a check are left out.

    Constants of the setup (the budget, a seed, peak FLOPs) are not knobs."""
    files = sorted({p.relative_to(repo).as_posix() for pattern in editable for p in repo.glob(pattern)
                    if p.suffix == ".py" and p.is_file()})
    knobs: list[dict[str, Any]] = []
    for file in files:
        tree = _parse(repo / file)
        if tree is None:
            continue
        mine: list[dict[str, Any]] = []
        values: dict[str, Any] = {}
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)):
                continue
            name, v = node.targets[0].id, node.value.value
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or NOT_KNOBS.search(name) or name in values:
                continue
            knob = _knob(name, file, v)
            if knob is not None:
                values[name] = v
                mine.append(knob)
        knobs += _checked(mine, values, tree, _imported(repo, tree))
    return knobs[:MAX_KNOBS]


SIZE_WORDS = {"BATCH", "HEAD", "HEADS", "EMBD", "EMBED", "EMBEDDING", "DIM", "WIDTH", "HIDDEN", "CHANNELS", "SEQ",
              "CONTEXT", "CTX"}
SIZE_NAMES = re.compile(r"D_MODEL|BLOCK_SIZE")
FRACTION = re.compile(r"(?:^|_)(?:RATIO|FRAC|FRACTION|PROB|DROPOUT)$")
FRACTION_FLOAT = re.compile(r"(?:^|_)(?:WARMUP|WARMDOWN|COOLDOWN)(?:_|$)")
# by their names: (dividend, divisor) pairs the model's code needs dividing, and names that must be even
WIDTH = re.compile(r"(?:N_|NUM_)?(?:EMBD|EMBED|EMBEDDING)(?:_DIM)?|D_MODEL|MODEL_DIM|DIM|WIDTH|HIDDEN_(?:DIM|SIZE)")
HEADS = re.compile(r"(?:N_|NUM_)?HEADS?")
KV_HEADS = re.compile(r"(?:N_|NUM_)?KV_HEADS?")
HEAD_DIM = re.compile(r"HEAD_(?:DIM|SIZE)|D_HEAD")
DIVIDES = ((WIDTH, HEADS), (WIDTH, HEAD_DIM), (HEADS, KV_HEADS))
HALVINGS = 6  # times a float's bound moves halfway back to its value before it is pinned there


def _knob(name: str, file: str, v: Any) -> dict[str, Any] | None:
    """The knob of one constant `name = v` by its name and value, before the file's checks; None if none."""
    knob: dict[str, Any] = {"name": name, "file": file}
    if isinstance(v, bool):
        return {**knob, "type": "categorical", "choices": [v, not v]}
    if not isinstance(v, int | float):
        return None
    if (FRACTION.search(name) or FRACTION_FLOAT.search(name) and isinstance(v, float)) and 0 <= v <= 1 \
            and (isinstance(v, float) or v in (0, 1)):
        if v == 0:
            return {**knob, "type": "float", "low": 0.0, "high": 1.0}
        return {**knob, "type": "float", "low": float(f"{v / 4:.3g}"), "high": min(1.0, float(f"{v * 4:.3g}")),
                "log": True}
    if isinstance(v, int) and v >= 2 and (SIZE_WORDS & set(name.split("_")) or SIZE_NAMES.search(name)):
        return {**knob, "type": "categorical", "choices": _doublings(v)}
    if isinstance(v, int) and v >= 2:
        return {**knob, "type": "int", "low": max(1, v // 2), "high": v * 2}
    if isinstance(v, float) and v > 0:
        return {**knob, "type": "float", "low": float(f"{v / 4:.3g}"), "high": float(f"{v * 4:.3g}"), "log": True}
    return None


def _doublings(v: int) -> list[int]:
    return [x for x in (v // 2 if v % 2 == 0 else 0, v, v * 2) if x >= 1]


def _imported(repo: Path, tree: ast.Module) -> dict[str, Any]:
    """The constants a module imports from the repository's own modules (`from prepare import MAX_SEQ_LEN`)."""
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            path = repo / (node.module.replace(".", "/") + ".py")
            module = _parse(path) if path.is_file() else None
            constants = _constants(module) if module is not None else {}
            for alias in node.names:
                if alias.name in constants:
                    found[alias.asname or alias.name] = constants[alias.name]
    return found


def _checked(knobs: list[dict[str, Any]], values: dict[str, Any], tree: ast.Module,
             imported: dict[str, Any]) -> list[dict[str, Any]]:
    """`knobs` (of one file, whose constants are `values`) narrowed so that every combination of the values a
    tuner can draw passes the file's checks (see _knobs); a knob left with one value is no knob."""
    names = {k["name"] for k in knobs}
    walks: dict[tuple, tuple[dict[str, Any], dict[str, set[str]], dict[Any, tuple[bool | None, set[str]]]]] = {}

    def walk(overrides: dict[str, Any]):
        key = tuple(sorted(overrides.items()))
        if key not in walks:
            walks[key] = _walk(tree, imported, names, overrides)
        return walks[key]

    def holds(check: tuple, overrides: dict[str, Any]) -> bool:
        found, _, asserted = walk(overrides)
        if check[0] == "assert":
            return asserted.get(check[1], (None,))[0] is True
        a, b = (n if isinstance(n, int) else found.get(n) for n in check[1])
        return isinstance(a, int) and isinstance(b, int) and b != 0 and a % b == 0

    found, deps, asserted = walk({})
    checks = [("assert", key, involved) for key, (ok, involved) in asserted.items() if ok and involved]
    for dividend, divisor in DIVIDES:
        for a in (n for n in found if dividend.fullmatch(n)):
            checks += [("divides", (a, b), deps.get(a, set()) | deps.get(b, set())) for b in found
                       if divisor.fullmatch(b)]
    checks += [("divides", (a, 2), deps.get(a, set())) for a in found if HEAD_DIM.fullmatch(a)]
    checks = [c for c in checks if c[2] and holds(c, {})]  # a check the code as it is fails is not its own
    by_name = {k["name"]: k for k in knobs}
    for check in checks:
        for name in check[2]:
            knob = by_name[name]
            if knob["type"] == "int":  # an int a check involves: the values that keep its divisors
                by_name[name] = knob = {"name": name, "file": knob["file"], "type": "categorical",
                                        "choices": _doublings(values[name])}
    moved: dict[tuple[str, str], int] = {}
    for check in checks:
        involved = sorted(check[2])
        while True:
            points = [_points(by_name[n], values[n]) for n in involved]
            if math.prod(len(p) for p in points) > 4096:  # too many to try: what is not known to pass is left out
                for n in involved:
                    by_name[n] = {**by_name[n], "type": "categorical", "choices": [values[n]]}
                break
            failing = [combo for combo in itertools.product(*points)
                       if not holds(check, dict(zip(involved, combo, strict=True)))]
            if not failing:
                break
            counts: dict[tuple[str, Any], int] = {}
            for combo in failing:
                for n, value in zip(involved, combo, strict=True):
                    if value != values[n]:
                        counts[(n, value)] = counts.get((n, value), 0) + 1
            if not counts:  # it fails as the code is: not a check of the repository's
                break
            (n, value), _ = max(counts.items(), key=lambda item: item[1])
            knob = by_name[n]
            if knob["type"] == "categorical":
                knob["choices"] = [c for c in knob["choices"] if c != value]
            else:  # a float's bound moves halfway back to its value, and at last to it
                bound = "low" if value == knob["low"] else "high"
                moved[(n, bound)] = moved.get((n, bound), 0) + 1
                halfway = (knob[bound] + values[n]) / 2
                knob[bound] = values[n] if moved[(n, bound)] > HALVINGS else float(f"{halfway:.3g}")
    return [k for k in by_name.values() if (len(k["choices"]) > 1 if k["type"] == "categorical"
                                            else k["low"] < k["high"])]


def _points(knob: dict[str, Any], value: Any) -> list[Any]:
    """The values of a knob a check is tried at: each choice, or a float's bounds and its value."""
    if knob["type"] == "categorical":
        return list(knob["choices"])
    return list(dict.fromkeys([knob["low"], value, knob["high"]]))


def _walk(tree: ast.Module, seed: dict[str, Any], knobs: set[str], overrides: dict[str, Any]):
    """Read a module as Python would run it, as far as plain expressions go, with the knobs set to `overrides`:
    (the module's names and their values, the knobs each name depends on, each assert's (key: (whether it
    holds, None where it cannot be told; the knobs it depends on)). Functions are read after the module, with
    its names and without their parameters."""
    values: dict[str, Any] = dict(seed)
    deps: dict[str, set[str]] = {name: set() for name in seed}
    asserted: dict[Any, tuple[bool | None, set[str]]] = {}

    def forget(target: ast.AST, values: dict[str, Any], deps: dict[str, set[str]]) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Name | ast.arg):
                name = node.id if isinstance(node, ast.Name) else node.arg
                values.pop(name, None)
                deps.pop(name, None)

    def block(body: list[ast.stmt], values: dict[str, Any], deps: dict[str, set[str]], top: bool) -> None:
        for node in body:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
                    for target in targets:
                        forget(target, values, deps)
                    continue
                name = targets[0].id
                expression = node.value if not isinstance(node, ast.AugAssign) else \
                    ast.BinOp(ast.Name(name, ast.Load()), node.op, node.value)
                if top and name in knobs and isinstance(node, ast.Assign):
                    deps[name] = {name}
                    if name in overrides:
                        values[name] = overrides[name]
                        continue
                else:
                    deps[name] = set().union(*(deps.get(n.id, set()) for n in ast.walk(expression)
                                               if isinstance(n, ast.Name)))
                try:
                    values[name] = _evaluate(expression, values)
                except _UNKNOWN:
                    values.pop(name, None)
            elif isinstance(node, ast.Assert):
                try:
                    ok: bool | None = bool(_evaluate(node.test, values))
                except _UNKNOWN:
                    ok = None
                asserted[(node.lineno, node.col_offset)] = (ok, set().union(
                    *(deps.get(n.id, set()) for n in ast.walk(node.test) if isinstance(n, ast.Name))))
            elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.Import | ast.ImportFrom):
                for target in ([node.target] if isinstance(node, ast.For | ast.AsyncFor) else
                               [i.optional_vars for i in node.items if i.optional_vars] if
                               isinstance(node, ast.With | ast.AsyncWith) else []):
                    forget(target, values, deps)
                for alias in node.names if isinstance(node, ast.Import | ast.ImportFrom) else []:
                    name = (alias.asname or alias.name).split(".")[0]
                    if not (top and name in seed):
                        values.pop(name, None)
                        deps.pop(name, None)
            if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.With | ast.AsyncWith | ast.Try):
                for part in ("body", "orelse", "handlers", "finalbody"):
                    for inner in getattr(node, part, []):
                        block(inner.body if isinstance(inner, ast.ExceptHandler) else [inner], values, deps, False)

    block(tree.body, values, deps, True)
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        local, local_deps = dict(values), {k: set(v) for k, v in deps.items()}
        forget(function.args, local, local_deps)
        block(function.body, local, local_deps, False)
    return values, deps, asserted


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if not isinstance(value, float) or not value.is_integer() else f"{value:g}"
    if isinstance(value, str):
        # JSON's escapes are TOML's (newlines, quotes, control characters); DEL it leaves as it is
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")
