"""The protected harness of a repository that names its evaluation function: `python -m
researchorg.harness.adopted CONFIG.json` (the runner starts it for a task with a `[harness]` table).

The repository's train.py runs as the watched guest, in the repository's own
interpreter, in its sandbox (the validation data out of its sight). The
protected function it calls with its model (task.toml `entry`: autoresearch's
`prepare:evaluate_bpb`), or the hook `hand_off`, hands the model over instead
(harness/handoff.py) and training ends. The evaluation box then imports the
protected file, as copied before train.py ran, and calls the function on the
handed-over graph as `call` says; the lab computes the loss from the graph's
logits. Whatever train.py prints is a claim: a metric line whose value is not
the NaN the hand-off returned is a forgery, and the run is invalid.

The budget counts training, from the first optimizer step to the hand-off, as
autoresearch's train.py counts it itself (TIME_BUDGET after its first steps);
start-up and the hand-off have allowances of their own (harness/timeline.py).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from researchorg.harness.lm import finish
from researchorg.harness.protected import Evaluator, GuestRun, judge, print_summary, read_artifact, run_guest, verdict
from researchorg.harness.sealed import with_copies
from researchorg.harness.timeline import Allowances

HARNESS_PACKAGE = Path(__file__).resolve().parent


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="adopted-run-") as tmp, \
            tempfile.TemporaryDirectory(prefix="adopted-eval-") as own, \
            tempfile.TemporaryDirectory(prefix="adopted-model-") as handed:
        artifact, snapshot = Path(tmp), Path(own) / "files"
        for name in config["protected"]:  # the box imports these copies, taken before any training code runs
            if (here / name).is_file():
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(here / name, snapshot / name)
        snapshot.mkdir(exist_ok=True)
        shim = _shim(Path(own) / "shim")
        sealed = [Path(p) for p in config["sealed"]]
        data, roots = [Path(p) for p in config["data"]], [Path(p) for p in config["read"]]
        box = Evaluator(snapshot, [*sealed, *data, *roots], python=config["python"], pythonpath=[shim],
                        request={"kind": "hook", "entry": config["entry"], "call": config["call"],
                                 "sealed": [str(p) for p in sealed]})
        module, _, function = config["entry"].partition(":")
        try:
            run = run_guest(here / config["script"], allowances=Allowances.from_environment(config["budget"]),
                            seed=config["seed"], artifact_dir=artifact, handed_dir=Path(handed),
                            hidden=[str(p) for p in with_copies(sealed)],
                            read=[*data, *roots, shim], protected=[str(here / p) for p in config["protected"]],
                            metric_pattern=re.compile(rf"^\s*{re.escape(config['metric'])}\s*[:=]"),
                            preload=tuple(config["preload"]), seeds="replace", python=config["python"],
                            pythonpath=[shim], args=config["args"], spare=(box.proc.pid,),
                            handoff={"module": module, "function": function, "seq_len": config["seq_len"]})
            _judge_and_score(run, config, Path(handed), box)
        finally:
            box.close()
    finish()


def _shim(folder: Path) -> Path:
    """A folder that holds researchorg.harness alone (it imports nothing else of researchorg), for the
    repository's interpreter to find it without the lab's other packages."""
    package = folder / "researchorg"
    shutil.copytree(HARNESS_PACKAGE, package / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")
    return folder


def _judge_and_score(run: GuestRun, config: dict[str, Any], handed: Path, box: Evaluator) -> None:
    measured: dict[str, Any] = {**run.phases, "peak_mem_mb": round(run.peak_mem_mb, 1), "sandbox": run.sandbox}
    forged = [line for line in run.metric_lines if not _is_nan(line)]
    run.metric_lines = forged  # printing the NaN the hand-off returned is honest; any other value is not
    problem = judge(run)
    if problem is not None:
        return verdict(problem[0], reason=problem[1], summary=measured)
    model = read_artifact(handed, "model.pt2") if run.handed_over else None
    if model is None:
        return verdict("crash", reason=f"train.py handed no model over: it must call {config['entry']} (the "
                                       "protected evaluation) with its model", summary=measured)
    try:
        head = json.loads(read_artifact(handed, "handoff.json", 1 << 16) or b"{}")
        meta = {"seq_len": int(head["seq_len"]), "batch": head.get("batch"),
                "arguments": dict(head.get("arguments") or {})}
    except (ValueError, KeyError, TypeError):
        return verdict("crash", reason="the hand-off left no readable handoff.json", summary=measured)
    judged = box.score(model, meta)
    if judged["status"] != "ok":
        return verdict(judged["status"], reason=judged.get("reason", ""),
                       summary={**measured, **(judged.get("summary") or {})})
    claims = {k: v for k, v in _claims(run.output_tail).items() if k != config["metric"]}
    summary = {**claims, **measured, **judged["summary"], "budget_seconds": config["budget"]}
    print_summary(config["metric"], judged["metric"], summary)
    verdict("ok", metric=judged["metric"], summary=summary)


def _claims(tail: list[str]) -> dict[str, float]:
    """What train.py printed of its own run in its summary block (`key: number` lines after its last `---`):
    claims, recorded as confounds, never as the metric."""
    if "---" not in [line.strip() for line in tail]:
        return {}
    block = tail[len(tail) - [line.strip() for line in tail][::-1].index("---"):]
    found = {}
    for line in block:
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S+)\s*$", line)
        if match:
            try:
                value = float(match.group(2))
            except ValueError:
                continue
            if math.isfinite(value):
                found[match.group(1)] = value
    return found


def _is_nan(line: str) -> bool:
    value = re.split(r"[:=]", line, maxsplit=1)[-1].strip().split()
    try:
        return bool(value) and math.isnan(float(value[0]))
    except ValueError:
        return False


if __name__ == "__main__":
    main()
