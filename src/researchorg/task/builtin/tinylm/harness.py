"""tinylm's entry point: run train.py under watch and the budget, then compute val_bpb itself.

PROTECTED, like prepare.py. The lab runs `python harness.py`; it

1. reads prepare.py (this process's own copy, before any training code runs),
   then runs train.py as a watched guest (researchorg.harness.guest) in its
   sandbox (harness/sandbox.py: the validation split is not in its view) with
   the run's seed, killed at the budget (its whole process, start to exit) plus
   a slack to exit; writing outside the run's files or to a protected file,
   reseeding and printing a val_bpb line make the run invalid;
2. loads the model train.py saved (a torch.export graph: no code of train.py
   runs here), checks that it does not look ahead, and scores the fixed
   validation bytes;
3. measures the confounds: parameters (from the saved weights), training
   wall time and peak memory (of the guest process, measured from outside),
   steps and tokens (as train.py reports them), FLOPs = 6 x params x tokens;
4. writes its verdict where the lab reads it (RESEARCHORG_RESULT).
"""

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import prepare  # no torch at import: read before the guest starts, so no training code can have changed it

from researchorg.harness.protected import flops_estimate, judge, load_exported, read_artifact, run_guest, verdict
from researchorg.harness.sealed import with_copies

HERE = Path(__file__).resolve().parent
# From here on nothing is imported from the checkout, where training code writes: a `torch.py` or a package
# it left there must not stand in for a library this process loads later.
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != HERE]
BUDGET = prepare.TIME_BUDGET
PROTECTED = ["prepare.py", "harness.py", "task.toml", "program.md"]


def count_parameters(program) -> int:
    seen, total = set(), 0
    for tensor in program.state_dict.values():
        if tensor.data_ptr() not in seen:  # tied weights count once
            seen.add(tensor.data_ptr())
            total += tensor.numel()
    return total


def _claimed(told: dict, key: str) -> float:
    """A figure train.py reports about itself (a claim, recorded as one): a finite number or 0."""
    try:
        value = float(told.get(key, 0.0))
    except (TypeError, ValueError):
        return 0.0
    return value if value == value and abs(value) < 1e30 else 0.0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tinylm-run-") as tmp:
        artifact = Path(tmp)
        run = run_guest(HERE / "train.py", budget=BUDGET, seed=prepare.SEED, artifact_dir=artifact,
                        hidden=[str(p) for p in with_copies(prepare.sealed_paths())],
                        protected=[str(HERE / name) for name in PROTECTED],
                        metric_pattern=re.compile(r"^\s*val_bpb\s*[:=]"),
                        preload=("torch", "torch._dynamo"),  # torch.export needs both: in the budget either way
                        on_start=prepare.warm_evaluator)
        measured = {"training_seconds": round(run.seconds, 2), "peak_mem_mb": round(run.peak_mem_mb, 1),
                    "sandbox": run.sandbox}
        problem = judge(run, BUDGET)
        if problem is not None:
            return verdict(problem[0], reason=problem[1], summary=measured)
        t_eval = time.perf_counter()
        try:
            if read_artifact(artifact, "model.pt2") is None:
                return verdict("crash", reason="train.py saved no model: it must call prepare.save_model(model, "
                                               "seq_len)", summary=measured)
            program, refused = load_exported(artifact / "model.pt2")
            if refused:
                return verdict("invalid", reason=f"the saved model {refused}", summary=measured)
            model = program.module()
            seq_len = int(json.loads(read_artifact(artifact, "meta.json") or b"{}")["seq_len"])
            if not 1 <= seq_len <= 1 << 16:
                raise ValueError(f"seq_len {seq_len} out of range")
            if prepare.looks_ahead(model, seq_len):
                return verdict("invalid", reason="the saved model looks ahead: its predictions change with later "
                                                 "bytes or with other rows of its batch", summary=measured)
            val_bpb = prepare.evaluate_bpb(model, seq_len)
        except Exception as err:  # a model that cannot be loaded or run is the training code's failure
            return verdict("crash", reason=f"the saved model cannot be evaluated: {type(err).__name__}: {err}",
                           summary=measured)
        try:
            told = json.loads(read_artifact(artifact, "train.json") or b"{}")
            told = told if isinstance(told, dict) else {}
        except ValueError:
            told = {}
        params = count_parameters(program)
        tokens, steps = _claimed(told, "tokens"), _claimed(told, "steps")
        summary = {**measured, "num_params": params, "steps": steps, "tokens": tokens,
                   "flops": flops_estimate(params, tokens), "eval_seconds": round(time.perf_counter() - t_eval, 2),
                   "corpus_hash": prepare.corpus_hash(), "budget_seconds": BUDGET}
        print("---")
        print(f"val_bpb:          {val_bpb:.6f}")
        for key, value in summary.items():
            print(f"{key + ':':<18}{value}")
        verdict("ok", metric=val_bpb, summary=summary)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the verdict is written: skip tearing torch down (a second of the slot's time)
