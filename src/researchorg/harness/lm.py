"""The protected harness of a language-model task (tinylm, gpulm): run train.py as a watched guest, then score
the model it handed over in the evaluation box (harness/evaluate.py), a process and a sandbox of its own.

A task's harness.py imports its own prepare.py (protected, read before the guest starts) and calls `main`.
The prepare module provides what differs between tasks:

- `TIME_BUDGET`, `SEED`: the run's budget and seed (the lab sets both);
- `sealed_paths()`: the validation data, out of the guest's sight;
- `readable_paths()` (optional): data outside the checkout the guest may read, e.g. training shards;
- `warm_evaluator()`: loads what scoring needs (in the box, while the guest trains); returns the corpus hash;
- `looks_ahead(model, seq_len)`, `memorization(model, seq_len)` (optional: figures, and why the model
  memorized a public copy of the validation data) and `evaluate_bpb(model, seq_len)`: the checks and the
  metric;
- `VOCAB_SIZE`: the model's output width.

The box imports a copy of the task's protected files taken before the guest starts, so nothing the guest
wrote can stand in for them. The guest hands over a torch.export graph (`model.pt2`: the box runs its tensor
operators only, checked first, never code of train.py), `meta.json` with its sequence length and, through
`report`, what it says of itself (steps, tokens, peak GPU memory): claims, recorded as confounds, never as the
metric.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from researchorg.harness.protected import (
    Evaluator,
    GuestRun,
    flops_estimate,
    judge,
    print_summary,
    read_artifact,
    run_guest,
    verdict,
)
from researchorg.harness.sealed import with_copies
from researchorg.harness.timeline import Allowances

_CLAIMS = ("steps", "tokens", "peak_vram_mb")  # what train.py may say of its own run
PROTECTED = ["prepare.py", "harness.py", "task.toml", "program.md"]  # read-only to the guest
PRELOAD = ("torch", "torch._dynamo")  # what the guest imports before its budget counts: torch.export needs both


def main(prepare: ModuleType, harness_file: str) -> None:
    """A task's harness: from here on nothing is imported from the checkout, where training code writes (a
    `torch.py` or a package it left there must not stand in for a library this process loads later); score
    train.py, then end at once."""
    here = Path(harness_file).resolve().parent
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != here]
    score(prepare, here, protected=PROTECTED, preload=PRELOAD)
    finish()


def score(prepare: ModuleType, here: Path, *, protected: list[str], preload: tuple[str, ...] = ()) -> None:
    """Run `here/train.py` under watch and the budget, score its model in the evaluation box and write the
    verdict."""
    allowances = Allowances.from_environment(prepare.TIME_BUDGET)
    readable = getattr(prepare, "readable_paths", list)()
    sealed = [Path(p) for p in prepare.sealed_paths()]
    with tempfile.TemporaryDirectory(prefix=f"{here.name}-run-") as tmp, \
            tempfile.TemporaryDirectory(prefix=f"{here.name}-eval-") as own, \
            tempfile.TemporaryDirectory(prefix=f"{here.name}-model-") as handed:
        artifact, snapshot = Path(tmp), Path(own)
        for name in protected:  # the evaluation imports these copies, taken before any training code runs
            if (here / name).is_file():
                shutil.copy2(here / name, snapshot / name)
        beside = len(os.sched_getaffinity(0)) >= 2  # it loads beside the guest where the slot has a core to spare
        box = Evaluator(snapshot, [*sealed, *readable]) if beside else None
        try:
            run = run_guest(here / "train.py", allowances=allowances, seed=prepare.SEED, artifact_dir=artifact,
                            handed_dir=Path(handed),
                            hidden=[str(p) for p in with_copies(sealed)], read=readable,
                            protected=[str(here / name) for name in protected],
                            metric_pattern=re.compile(r"^\s*val_bpb\s*[:=]"), preload=preload,
                            spare=(box.proc.pid,) if box else ())
            box = box or Evaluator(snapshot, [*sealed, *readable])
            _judge_and_score(run, allowances.budget, artifact, Path(handed), box)
        finally:
            if box is not None:
                box.close()


def _judge_and_score(run: GuestRun, budget: float, artifact: Path, handed: Path, box: Evaluator) -> None:
    measured: dict[str, Any] = {**run.phases, "peak_mem_mb": round(run.peak_mem_mb, 1), "sandbox": run.sandbox}
    problem = judge(run)
    if problem is not None:
        return verdict(problem[0], reason=problem[1], summary=measured)
    model = read_artifact(handed, "model.pt2") if run.handed_over else None
    if model is None:
        return verdict("crash", reason="train.py handed no model over: it must call prepare.save_model(model, "
                                       "seq_len)", summary=measured)
    try:
        seq_len = int(json.loads(read_artifact(handed, "meta.json", 1 << 16) or b"{}")["seq_len"])
    except (ValueError, KeyError, TypeError):
        return verdict("crash", reason="train.py's meta.json names no seq_len: save the model with "
                                       "prepare.save_model(model, seq_len)", summary=measured)
    if not 1 <= seq_len <= 1 << 16:
        return verdict("crash", reason=f"seq_len {seq_len} out of range", summary=measured)
    judged = box.score(model, {"seq_len": seq_len})
    if judged["status"] != "ok":
        return verdict(judged["status"], reason=judged.get("reason", ""),
                       summary={**measured, **(judged.get("summary") or {})})
    told = _claims(read_artifact(artifact, "train.json", 1 << 16))
    params = judged["summary"]["num_params"]
    summary = {**measured, **judged["summary"], **told, "flops": flops_estimate(params, told.get("tokens", 0.0)),
               "budget_seconds": budget}
    print_summary("val_bpb", judged["metric"], summary)
    verdict("ok", metric=judged["metric"], summary=summary)


def finish() -> None:
    """End the harness process at once: the verdict is written, and tearing torch down costs the slot a
    second."""
    sys.stdout.flush()
    os._exit(0)


def _claims(raw: bytes | None) -> dict[str, float]:
    """What train.py reported of itself: each known figure a finite number or 0."""
    try:
        told = json.loads(raw or b"{}")
    except ValueError:
        told = {}
    told = told if isinstance(told, dict) else {}
    claims = {}
    for key in _CLAIMS:
        try:
            value = float(told.get(key, 0.0))
        except (TypeError, ValueError):
            value = 0.0
        claims[key] = value if value == value and abs(value) < 1e30 else 0.0
    if not claims["peak_vram_mb"]:
        del claims["peak_vram_mb"]  # a CPU run
    return claims


def device_of(model: Any) -> Any:
    """The device an exported model's weights are on (where its inputs must go)."""
    import torch
    for tensor in model.state_dict().values():
        return tensor.device
    return torch.device("cpu")


def looks_ahead(model: Any, inputs: Any, vocab_size: int, checks: int = 4) -> bool:
    """Whether the model's prediction at a position depends on later tokens, or on other rows of its batch (a
    model that peeks is not a language model). Each check changes every token from a cut on, a cut of its own
    in every row at a position no one can know beforehand, and compares the logits before the cuts: 4 checks
    of 32 rows test 128 random positions, and a change in any row that moves another row's logits is caught
    too. `inputs` is a (batch, seq_len) tensor of token ids on the model's device."""
    import torch
    rng = random.SystemRandom()
    rows, seq_len = inputs.shape
    if seq_len < 2:
        return False
    with torch.no_grad():
        base = model(inputs).float()
        for _ in range(checks):
            cuts = [rng.randrange(1, seq_len) for _ in range(rows)]
            changed = inputs.clone()
            for row, cut in enumerate(cuts):
                changed[row, cut:] = (changed[row, cut:] + rng.randrange(1, vocab_size)) % vocab_size
            out = model(changed).float()
            for row, cut in enumerate(cuts):
                if not torch.allclose(base[row, :cut], out[row, :cut], atol=1e-4, rtol=1e-4):
                    return True
    return False
