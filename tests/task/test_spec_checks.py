"""Specs that are well-formed but meaningless are refused at load, each in one line naming the file and the key.

Property tests (hypothesis) of every path, command, knob, number and landscape-parameter check of task.toml,
org.toml and bench specs: generated bad values are a ConfigError of one line that names the key, and generated
good values load. benchmarks/fuzz.py (its `checks` kind) tries the same kinds of input through the CLI.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import SIM_ORG, VALID_ORG, run_cli, to_toml
from researchorg import ConfigError
from researchorg.bench.spec import load_bench
from researchorg.config import load_org
from researchorg.harness.landscape import Landscape
from researchorg.task import builtin_tasks, find_task, load_task
from researchorg.task.spec import MAX_SECONDS
from tests.conftest import ACCURACY_TASK

ROOT = Path(__file__).resolve().parents[2]
TASK = tomllib.loads((ACCURACY_TASK / "task.toml").read_text())
BENCH = {"name": "b", "task": "simulated", "repeats": 2, "compute": {"slots": 2, "experiments": 4},
         "landscape": {}, "orgs": [{"file": "org.toml"}]}
examples = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh directory per generated example (hypothesis runs many examples in one test)."""
    path = Path(tempfile.mkdtemp(prefix="spec-checks-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def task_with(edit: Callable[[dict], None], files: dict[str, str] | None = None, check_files: bool = True):
    """The accuracy task with `edit` applied to its task.toml (and `files` written beside it), loaded."""
    doc = copy.deepcopy(TASK)
    edit(doc)
    with folder() as tmp:
        task = tmp / "task"
        shutil.copytree(ACCURACY_TASK, task)
        for name, text in (files or {}).items():
            (task / name).write_text(text)
        (task / "task.toml").write_text(to_toml(doc))
        return load_task(task, check_files=check_files)


def refused(load: Callable[[], Any], key: str, file: str = "task.toml") -> str:
    """`load()` raises one ConfigError of one line that names the file and the key; its message."""
    with pytest.raises(ConfigError) as err:
        load()
    message = str(err.value)
    assert "\n" not in message, message
    assert file in message, message
    assert key in message, message
    return message


# -- generated values --------------------------------------------------------------------------------------------
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
relative = st.lists(segment, min_size=1, max_size=3).map("/".join).map(lambda p: p + ".py")
bad_paths = st.one_of(
    st.sampled_from(["..", "../x.py", "a/../../x.py", "/etc/passwd", "~/x.py", "./train.py", "a//b.py", "src/",
                     "", "   ", " train.py", "x\x00y.py", "."]),
    relative.map(lambda p: "../" + p), relative.map(lambda p: "/" + p), relative.map(lambda p: "~/" + p),
    relative.map(lambda p: p + "/"), relative.map(lambda p: "./" + p), st.text(alphabet=" \t", max_size=4))
words = st.lists(st.text(alphabet="abcxyz_-.=/", min_size=1, max_size=6), min_size=1, max_size=4)
unsplittable = st.tuples(words, st.sampled_from(["'", '"']), words).map(
    lambda t: f"{shlex.join(t[0])} {t[1]}{' '.join(t[2])}")
blank = st.text(alphabet=" \t\n\r", max_size=5)
not_numbers = st.one_of(st.booleans(), st.text(alphabet="abcxyz ", max_size=5), st.lists(st.floats(), max_size=2),
                        st.sampled_from([float("nan"), float("inf"), float("-inf")]))
# the period of each check: seconds (budget, timeout, allowance), their bounds
SECONDS = {"budget_seconds": MAX_SECONDS, "timeout_seconds": MAX_SECONDS, "startup_allowance": 86_400,
           "handoff_allowance": 86_400, "cpu.budget_seconds": MAX_SECONDS}


def _set(doc: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        _set(doc.setdefault(head, {}), rest, value)
    else:
        doc[head] = value


# -- paths -------------------------------------------------------------------------------------------------------
@examples
@given(st.sampled_from(["editable", "protected"]), bad_paths)
def test_an_editable_or_protected_path_out_of_the_task_or_not_plain_is_refused(key, path):
    refused(lambda: task_with(lambda d: d.__setitem__(key, [*d.get(key, []), path])),
            f"{key}.{len(TASK.get(key, []))}")


@examples
@given(bad_paths)
def test_a_knob_file_out_of_the_task_is_refused(path):
    def edit(doc):
        doc["editable"] = ["*"]
        doc["knobs"][0]["file"] = path
    refused(lambda: task_with(edit), "knobs.0")


@examples
@given(bad_paths)
def test_a_cpu_set_file_out_of_the_task_is_refused(path):
    refused(lambda: task_with(lambda d: d.__setitem__("cpu", {"set": {path: {"THRESHOLD": 0.25}}})), "cpu.set")


@examples
@given(st.sampled_from(["editable", "protected"]), relative.filter(lambda p: p not in ("train.py", "evaluate.py")))
def test_plain_relative_paths_load(key, path):
    task = task_with(lambda d: d.__setitem__(key, [*d.get(key, []), path, path.rsplit("/", 1)[0] + "/*.py"]))
    assert path in getattr(task, key)


@examples
@given(st.one_of(st.sampled_from(["../valid.bin", "data/../../v", "", "  ", "a\x00b"]),
                 relative.map(lambda p: "../" + p), blank))
def test_a_sealed_path_that_climbs_out_of_the_task_or_is_empty_is_refused(path):
    refused(lambda: task_with(lambda d: d.__setitem__("sealed", ["{stdlib}/idlelib", path])), "sealed.1")


@examples
@given(st.one_of(relative, relative.map(lambda p: "/data/" + p), relative.map(lambda p: "~/.cache/" + p),
                 relative.map(lambda p: "{stdlib}/" + p)))
def test_sealed_paths_in_the_task_absolute_or_in_your_home_load(path):
    # validation data may lie anywhere: an absolute path or one in your home is sealed where it is
    assert task_with(lambda d: d.__setitem__("sealed", [path])).sealed == [path]


def test_the_knob_file_must_exist_and_hold_the_knob_as_a_value_of_its_type():
    def editable_all(doc):
        doc["editable"] = ["*.py"]
    refused(lambda: task_with(lambda d: (editable_all(d), d["knobs"][0].update(file="missing.py"))), "knobs.0.file")
    message = refused(lambda: task_with(lambda d: d["knobs"][0].update(name="NOT_THERE")), "knobs.0")
    assert "found no top-level `NOT_THERE = ...`" in message
    refused(lambda: task_with(lambda d: None, {"train.py": "THRESHOLD = 0.5\nTHRESHOLD = 0.6\n"}), "knobs.0")
    refused(lambda: task_with(lambda d: None, {"train.py": "THRESHOLD = compute()\n"}), "knobs.0")
    message = refused(lambda: task_with(lambda d: None, {"train.py": "THRESHOLD = 'high'\n"}), "knobs.0")
    assert "not a finite number" in message
    message = refused(lambda: task_with(lambda d: d["knobs"][0].update(type="int")), "knobs.0")
    assert "not an integer" in message
    refused(lambda: task_with(lambda d: d.__setitem__("cpu", {"set": {"train.py": {"NOPE": 1}}})),
            "cpu.set.train.py.NOPE")
    # a checkout whose code the agents rewrote is not the spec's fault: the lab loads it without the file checks
    assert task_with(lambda d: None, {"train.py": "print('no knob')\n"}, check_files=False).knobs


# -- commands ----------------------------------------------------------------------------------------------------
@examples
@given(st.sampled_from(["command", "prepare"]), st.one_of(unsplittable, blank, st.just("python \\")))
def test_an_empty_command_or_one_that_cannot_be_split_is_refused(key, command):
    message = refused(lambda: task_with(lambda d: d.__setitem__(key, command)), key)
    assert re.search(r"is empty|cannot be split", message)


@examples
@given(st.sampled_from(["command", "prepare"]), words)
def test_commands_that_split_into_words_load(key, argv):
    assert shlex.split(getattr(task_with(lambda d: d.__setitem__(key, shlex.join(argv))), key)) == argv


# -- numbers -----------------------------------------------------------------------------------------------------
@examples
@given(st.sampled_from(sorted(SECONDS)), st.data())
def test_budgets_timeouts_and_allowances_that_are_not_finite_positive_seconds_are_refused(key, data):
    value = data.draw(st.one_of(not_numbers, st.floats(max_value=0), st.integers(max_value=0),
                                st.floats(min_value=SECONDS[key] * 1.001, allow_infinity=False)))
    refused(lambda: task_with(lambda d: _set(d, key, value)), key)


@examples
@given(st.sampled_from(sorted(SECONDS)), st.data())
def test_finite_positive_seconds_load(key, data):
    # the accuracy task's budget is 1 s and its timeout 4 s: the timeout must exceed the budget
    low, high = {"budget_seconds": (1e-3, 3.99), "timeout_seconds": (1.001, MAX_SECONDS)}.get(key, (1e-3, SECONDS[key]))
    value = data.draw(st.floats(min_value=low, max_value=high))
    task = task_with(lambda d: _set(d, key, value))
    assert (task.cpu.budget_seconds if key.startswith("cpu.") else getattr(task, key)) == value


# -- knobs -------------------------------------------------------------------------------------------------------
finite = st.floats(min_value=-1e6, max_value=1e6)


@st.composite
def bad_knobs(draw) -> dict:
    """An edit of the THRESHOLD knob that makes it meaningless."""
    a, b = draw(finite), draw(finite)
    return draw(st.sampled_from([
        {"low": max(a, b), "high": min(a, b)},  # low >= high
        {"low": draw(st.sampled_from([math.nan, math.inf, -math.inf])), "high": 1.0},
        {"low": 0.0, "high": draw(st.sampled_from([math.nan, math.inf]))},
        {"low": -1e308, "high": 1e308},  # a range wider than a float holds
        {"log": True, "low": -abs(a), "high": abs(a) + 1},  # a log scale from zero or below
        {"type": draw(st.text(max_size=8).filter(lambda t: t not in ("int", "float", "categorical")))},
        {"type": "int", "low": 0.2, "high": 0.8},  # no integer between
        {"type": "categorical", "low": None, "high": None},  # no choices
        {"type": "categorical", "choices": []},
        {"choices": [a, b]},  # choices for a float knob
        {"low": True},
        {"name": draw(st.text(alphabet="ABCDXYZ_", min_size=1, max_size=8).filter(
            lambda n: n not in ("THRESHOLD", "SHIFT", "BONUS", "MODE")))},  # not in train.py
        {"file": "evaluate.py"},  # protected
    ]))


@examples
@given(bad_knobs())
def test_a_meaningless_knob_is_refused(edit):
    def apply(doc):
        knob = doc["knobs"][0]
        knob.update(edit)
        for key in [k for k, v in edit.items() if v is None]:
            knob.pop(key)
    refused(lambda: task_with(apply), "knobs.0")


@examples
@given(st.sampled_from(["THRESHOLD", "SHIFT", "BONUS"]))
def test_a_knob_named_twice_is_refused(name):
    def apply(doc):
        doc["knobs"].append({**doc["knobs"][0], "name": name})
        doc["knobs"].append({**doc["knobs"][0], "name": name})
    refused(lambda: task_with(apply), "knobs.")


@st.composite
def good_knobs(draw) -> tuple[dict, dict[str, str]]:
    """A knob that means something, and the editable file that holds it."""
    kind = draw(st.sampled_from(["float", "log", "int", "categorical"]))
    value = draw(st.one_of(st.integers(-1000, 1000), finite)) if kind != "int" else draw(st.integers(-1000, 1000))
    knob = {"name": "WIDTH", "file": "knobs.py", "type": "float" if kind == "log" else kind}
    if kind == "categorical":
        knob["choices"] = draw(st.lists(st.one_of(st.integers(), st.text(max_size=5), st.booleans()), min_size=1))
    else:
        low = draw(st.floats(1e-6, 1e3)) if kind == "log" else draw(finite)
        high = draw(st.floats(low + 1.0, low + 1e6))
        if kind == "int":
            low, high = math.floor(low), math.ceil(high)
        knob.update(low=low, high=high, log=kind == "log")
    return knob, {"knobs.py": f"WIDTH = {value!r}  # a comment\n"}


@examples
@given(good_knobs())
def test_meaningful_knobs_load(case):
    knob, files = case

    def apply(doc):
        doc["editable"] = ["train.py", "knobs.py"]
        doc["knobs"].append(knob)
    assert task_with(apply, files).knobs[-1].name == "WIDTH"


# -- the metric, modules and variables ---------------------------------------------------------------------------
def _not_a_pattern(text: str) -> bool:
    try:
        return re.compile(text).groups < 1
    except re.error:
        return True


@examples
@given(st.one_of(st.sampled_from(["(", "[a-", "*", "a{2,1}", "^accuracy: \\S+$", "(?P<x"]),
                 st.text(max_size=12).filter(_not_a_pattern)))
def test_a_metric_pattern_that_is_no_regex_or_has_no_group_is_refused(pattern):
    refused(lambda: task_with(lambda d: d["metric"].__setitem__("pattern", pattern)), "metric.pattern")


@examples
@given(st.text(max_size=10).filter(lambda t: t not in ("minimize", "maximize")))
def test_a_direction_other_than_minimize_or_maximize_is_refused(direction):
    refused(lambda: task_with(lambda d: d["metric"].__setitem__("direction", direction)), "metric.direction")


patterns = st.tuples(st.text(max_size=8).map(re.escape), st.sampled_from(["\\S+", "[-+0-9.e]+", ".*", "[^ ]+"]),
                     st.sampled_from(["", "$", "\\s*$", " (?:bits)?"])).map(lambda t: f"^{t[0]}({t[1]}){t[2]}")


@examples
@given(patterns, st.sampled_from(["minimize", "maximize"]))
def test_a_pattern_with_a_group_and_either_direction_load(pattern, direction):
    task = task_with(lambda d: d["metric"].update(pattern=pattern, direction=direction))
    assert (task.metric.pattern, task.metric.direction) == (pattern, direction)


@examples
@given(st.sampled_from(["requires", "pass_env"]),
       st.one_of(st.sampled_from(["", " ", "torch-nightly", "1torch", "a..b", "my module", "x\x00"]),
                 st.text(max_size=8).filter(  # a dotted name is a module path (torch.nn): not generated
                     lambda t: not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", t))))
def test_a_module_or_variable_that_is_not_a_name_is_refused(key, name):
    refused(lambda: task_with(lambda d: d.__setitem__(key, ["numpy", name] if key == "requires" else
                                                      ["ACCURACY_SLEEP", name])), f"{key}.1")


@pytest.mark.parametrize("key", ["interpreter", "data"])
def test_an_empty_interpreter_or_data_path_is_refused(key):
    refused(lambda: task_with(lambda d: d.__setitem__(key, "  " if key == "interpreter" else ["~/.cache/x", ""])),
            key)


def test_a_file_both_editable_and_protected_is_refused():
    refused(lambda: task_with(lambda d: d.__setitem__("protected", ["evaluate.py", "train.py"])), "editable.0")


# -- org.toml: prompt files --------------------------------------------------------------------------------------
@examples
@given(st.one_of(st.sampled_from(["missing.md", "prompts", "prompts/", "../outside.md", "/etc/passwd", "", " ",
                                  "~/x.md"]),
                 segment.map(lambda s: f"nope-{s}.md"), relative.map(lambda p: "../" + p)))
def test_a_prompt_file_that_is_missing_a_directory_or_outside_is_refused(prompt):
    with folder() as tmp:
        (tmp / "prompts").mkdir()
        role = f'backend = "tuner"\nprompt = ["role.md", {json.dumps(prompt)}]'
        (tmp / "org.toml").write_text(VALID_ORG.replace('backend = "tuner"', role))
        (tmp / "role.md").write_text("Be careful.\n")
        refused(lambda: load_org(tmp / "org.toml"), "roles.0.prompt.1", "org.toml")


@examples
@given(relative.map(lambda p: p.removesuffix(".py") + ".md"))
def test_prompt_files_next_to_the_org_file_load(prompt):
    with folder() as tmp:
        (tmp / prompt).parent.mkdir(parents=True, exist_ok=True)
        (tmp / prompt).write_text("Be careful.\n")
        role = f'backend = "tuner"\nprompt = [{json.dumps(prompt)}]'
        (tmp / "org.toml").write_text(VALID_ORG.replace('backend = "tuner"', role))
        assert load_org(tmp / "org.toml").roles[0].prompt == [prompt]


# -- bench specs: the landscape and the task ---------------------------------------------------------------------
# each landscape parameter's type and range: (int or float, lowest, highest, whether the ends are allowed)
RANGES: dict[str, tuple[type, float, float, bool, bool]] = {
    "n_ideas": (int, 2, 100_000, True, True), "interactions": (int, 0, 100_000, True, True),
    "sigma": (float, 0, 1e9, False, True), "base": (float, -1e9, 1e9, True, True),
    "p_win": (float, 0, 1, True, True), "p_harm": (float, 0, 1, True, True),
    "saturation": (float, 0, 1e9, False, True), "seconds": (float, 0, MAX_SECONDS, False, True),
    "crash_p": (float, 0, 1, True, False), "slot_speed_spread": (float, 0, 1, True, False),
    "busy_p": (float, 0, 1, True, True), "busy_spell": (float, 1, 1e9, True, True),
    "busy_cores": (float, 0, 1e9, True, True), "throughput_slope": (float, 0, 1e9, True, True),
    "steps": (float, 0, 1e9, False, True), "fidelity_slope": (float, -1e9, 1e9, True, True),
    "fidelity_deviation": (float, 0, 1e9, True, True), "fidelity_sigma": (float, 0, 1e9, True, True),
    "win_mean": (float, 0, 1e9, False, True), "win_shape": (float, 0.01, 100, True, True),
    "harm_mean": (float, 0, 1e9, False, True), "scale_spread": (float, 0, 5, True, True),
    "insight": (float, 0, 1, True, True),
}
PAIRS = {"win_sigmas": (0, 1e9, True), "harm_sigmas": (0, 1e9, True), "busy_slowdown": (0, 1, False)}


def bench_with(landscape: dict | None = None, org: str = SIM_ORG, **fields):
    with folder() as tmp:
        (tmp / "org.toml").write_text(org)
        (tmp / "bench.toml").write_text(to_toml({**BENCH, "landscape": landscape or {}, **fields}))
        return load_bench(tmp / "bench.toml")[0]


@st.composite
def bad_landscape(draw) -> tuple[str, Any]:
    key = draw(st.sampled_from([*RANGES, *PAIRS]))
    if key in PAIRS:
        low, high, top = PAIRS[key]
        inside = st.floats(low, high if top else high * 0.999)
        value = draw(st.one_of(
            st.tuples(inside, inside).filter(lambda p: p[0] > p[1]).map(list),  # [high, low]
            st.lists(inside, max_size=1), st.lists(inside, min_size=3, max_size=4),  # not a pair
            st.tuples(st.floats(max_value=low, exclude_max=True).filter(lambda v: v < low), inside).map(list),
            st.tuples(inside, st.floats(min_value=high, exclude_min=top, allow_infinity=False)).map(list),
            st.tuples(inside, st.sampled_from([math.nan, math.inf])).map(list),
            st.one_of(st.booleans(), st.text(alphabet="abcxyz ", max_size=5), st.floats())))  # not a list
        return key, value
    kind, low, high, with_low, with_high = RANGES[key]
    # -0.0 is not below 0: each side filtered on the value, not on how it is written
    below = st.floats(max_value=low, exclude_max=with_low, allow_infinity=False).filter(
        lambda v: v < low or (v == low and not with_low))
    above = st.floats(min_value=high, exclude_min=with_high, allow_infinity=False).filter(
        lambda v: v > high or (v == high and not with_high))
    wrong = [below, above, not_numbers, st.lists(st.floats(low, high), min_size=1, max_size=2)]
    if kind is int:
        wrong.append(st.floats(low + 0.01, min(high, 1e6) - 0.01).filter(lambda v: not v.is_integer()))
    return key, draw(st.one_of(wrong))


@examples
@given(bad_landscape())
def test_a_landscape_parameter_of_a_wrong_type_or_out_of_its_range_is_refused(case):
    key, value = case
    refused(lambda: bench_with({key: value}), f"landscape.{key}", "bench.toml")


@examples
@given(st.one_of(st.sampled_from(["seed", "ideas", "n_idea", "", "Sigma"]), st.text(max_size=10)).filter(
    lambda k: k not in RANGES and k not in PAIRS and k not in ("effects", "preset")), st.integers(0, 100))
def test_an_unknown_landscape_parameter_is_refused(key, value):
    refused(lambda: bench_with({key: value}), "landscape", "bench.toml")


@examples
@given(st.one_of(st.text(max_size=12), st.integers(), st.booleans()).filter(
    lambda v: v not in ("uniform", "continuous")))
def test_a_law_of_effects_other_than_uniform_or_continuous_is_refused(value):
    refused(lambda: bench_with({"effects": value}), "landscape.effects", "bench.toml")


def test_a_preset_names_the_landscape_the_other_keys_override():
    built = bench_with({"preset": "calibrated", "sigma": 0.001}).landscape.build(3)
    assert built.effects == "continuous" and built.sigma == 0.001 and built.n_ideas == 2000
    assert built == Landscape.calibrated(seed=3, noise=0.001) != Landscape.calibrated(seed=3)  # that noise's fit
    assert bench_with({"preset": "calibrated", "sigma": 0.0003, "insight": 0.5}).landscape.build(3).insight == 0.5
    assert bench_with({"preset": "realistic"}).landscape.build(3).is_realistic
    assert bench_with({}).landscape.build(3) == Landscape(seed=3)
    refused(lambda: bench_with({"preset": "imagined"}), "landscape.preset", "bench.toml")


@examples
@given(st.floats(0.01, 1), st.floats(0.01, 1))
def test_shares_of_helpful_and_harmful_ideas_above_one_are_refused(p_win, p_harm):
    if p_win + p_harm > 1:
        refused(lambda: bench_with({"p_win": p_win, "p_harm": p_harm}), "landscape", "bench.toml")
    else:
        assert bench_with({"p_win": p_win, "p_harm": p_harm}).landscape["p_win"] == p_win


@st.composite
def good_landscape(draw) -> dict:
    found: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from([*RANGES, *PAIRS]), max_size=5, unique=True)):
        if key in PAIRS:
            low, high, top = PAIRS[key]
            found[key] = sorted(draw(st.tuples(*[st.floats(low, min(high, 10) * (1 if top else 0.999))] * 2)))
            continue
        kind, low, high, with_low, with_high = RANGES[key]
        high = min(high, 500) if kind is int else min(high, 1e6)  # a landscape that builds in a moment
        value = draw(st.integers(int(low), int(high)) if kind is int else
                     st.floats(low, high, exclude_min=not with_low, exclude_max=not with_high))
        found[key] = value
    if draw(st.booleans()):
        found["effects"] = draw(st.sampled_from(["uniform", "continuous"]))
    if found.get("p_win", 0.3) + found.get("p_harm", 0.3) > 1:
        found.pop("p_win", None)
        found["p_harm"] = min(found.get("p_harm", 0.3), 0.7)
    return found


@examples
@given(good_landscape(), st.integers(0, 1000))
def test_a_landscape_in_range_loads_builds_and_runs(landscape, seed):
    spec = bench_with(landscape)
    assert dict(spec.landscape).keys() == landscape.keys()
    built = spec.landscape.build(seed)
    config = frozenset(idea.name for idea in built.ideas[:3])
    for fidelity in (1.0, 0.25):
        outcome = built.run(config, seed=1, slot="s", at=100.0, fidelity=fidelity)
        assert outcome.metric is None or math.isfinite(outcome.metric)


@examples
@given(st.one_of(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10),
                 relative.map(lambda p: "../" + p), st.sampled_from(["", " ", "/etc", "tinyLM"])).filter(
    lambda t: t != "simulated" and t not in builtin_tasks()))
def test_a_bench_naming_an_unknown_task_is_refused(task):
    refused(lambda: bench_with(task=task), "task", "bench.toml")


def test_a_bench_task_is_found_by_name_or_path_and_a_landscape_on_it_is_refused():
    tuner = VALID_ORG
    assert bench_with(task=str(ACCURACY_TASK), org=tuner).task == str(ACCURACY_TASK)
    assert bench_with(task="tinylm", org=tuner).task == "tinylm"
    refused(lambda: bench_with({"n_ideas": 80}, task=str(ACCURACY_TASK), org=tuner), "landscape", "bench.toml")


# -- what ships, and the command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", builtin_tasks())
def test_the_built_in_tasks_load_with_every_check(name):
    assert load_task(find_task(name)).knobs


@pytest.mark.parametrize("spec", sorted((ROOT / "examples" / "bench").glob("*/*.toml")), ids=lambda p: p.parent.name
                         + "/" + p.name)
def test_the_example_bench_specs_and_orgs_load(spec):
    if "orgs" in tomllib.loads(spec.read_text()):
        load_bench(spec)
    else:
        load_org(spec)


@pytest.mark.parametrize(("edit", "key"), [
    ('prepare = "python \'prepare.py"', "prepare"),
    ('editable = ["../train.py"]', "editable.0"),
])
def test_check_and_init_print_one_line_naming_the_key(tmp_path, edit, key):
    task = tmp_path / "task"
    shutil.copytree(ACCURACY_TASK, task)
    field = edit.split(" = ")[0]
    lines = [line for line in (task / "task.toml").read_text().splitlines() if not line.startswith(f"{field} =")]
    (task / "task.toml").write_text("\n".join([edit, *lines]) + "\n")
    (task / "org.toml").write_text(VALID_ORG)
    for argv in (["check", str(task), "--offline"], ["init", str(tmp_path / "lab"), "--task", str(task)]):
        code, output, escaped = run_cli(argv, tmp_path)
        said = [line for line in output.splitlines() if line.strip()]
        assert escaped is None and code == 1 and len(said) == 1, output
        assert "task.toml" in said[0] and key in said[0] and "Traceback" not in output
    assert not (tmp_path / "lab").exists()


def test_bench_prints_one_line_for_a_bad_landscape_parameter(tmp_path):
    (tmp_path / "org.toml").write_text(SIM_ORG)
    (tmp_path / "bench.toml").write_text(to_toml({**BENCH, "landscape": {"n_ideas": -3, "sigma": "wide"}}))
    for argv in (["check", str(tmp_path / "bench.toml"), "--offline"], ["bench", str(tmp_path / "bench.toml")]):
        code, output, escaped = run_cli(argv, tmp_path)
        said = [line for line in output.splitlines() if line.strip()]
        assert escaped is None and code == 1 and len(said) == 1, output
        assert "bench.toml" in said[0] and "landscape." in said[0]
    assert not (tmp_path / "bench-b").exists()
