"""The hand-off: where training code gives its model to the protected evaluation, and training ends.

A repository whose editable train.py gets its metric by calling a function of
a protected file (autoresearch: `val_bpb = evaluate_bpb(model, tokenizer,
batch_size)` of prepare.py) needs no change to be judged by a protected
harness (harness/adopted.py). In the watched guest (harness/guest.py), before
train.py runs, that function is replaced by the hand-off: the call exports the
model as a graph of tensor operators (torch.export, called as `model(idx)` for
its logits), records the call's plain arguments (numbers, strings), and
returns NaN. The repository's own function then scores the graph in the
evaluation box, on data train.py cannot read. A second hand-off is a violation:
training ended at the first.

Any other repository calls the hook itself, `hand_off(model, **arguments)`
from this module, and names its protected evaluation function in task.toml
(docs/tasks.md). Outside the lab, `hand_off` scores nothing and returns NaN.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from researchorg.harness import clock

HANDED = float("nan")  # what a hand-off returns to train.py: it prints it as its claim, "nan"


def hand_off(model: Any, **arguments: Any) -> float:
    """Give `model` to the lab's protected evaluation (the lab replaces this function in its harness)."""
    print("researchorg: hand_off outside the lab's harness: nothing was scored")
    return HANDED


def install(module: Any, function: str, seq_len: int | str, artifact: Path,
            violation: Callable[[str, str], None]) -> None:
    """Replace `module.function` (and this module's `hand_off`) by the hand-off, which saves the model and
    the call's plain arguments in `artifact`."""
    import sys
    entry = getattr(module, function)
    signature = inspect.signature(entry)
    length = getattr(module, seq_len) if isinstance(seq_len, str) else seq_len
    done: list[bool] = []

    def give(model: Any, plain: dict[str, Any]) -> float:
        if done:
            violation("handed over a model twice", "training ended at the first hand-off")
            raise RuntimeError("researchorg: the model was already handed over: training has ended")
        done.append(True)
        clock.handing_over()  # training has ended: the export is not in the budget
        batch = _export(model, int(plain.get("batch_size", 8)), int(length), artifact)
        (artifact / "handoff.json").write_text(json.dumps({"seq_len": int(length), "batch": batch,
                                                           "arguments": plain}))
        clock.handed_over(["model.pt2", "handoff.json"])
        return HANDED

    def replaced(*args: Any, **kwargs: Any) -> float:
        bound = signature.bind(*args, **kwargs)
        first = next(iter(signature.parameters))
        return give(bound.arguments[first], _plain({k: v for k, v in bound.arguments.items() if k != first}))

    def hooked(model: Any, **arguments: Any) -> float:
        return give(model, _plain(arguments))

    setattr(module, function, replaced)
    sys.modules[__name__].hand_off = hooked


def _plain(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments the evaluation may take from train.py: finite numbers, strings, booleans."""
    return {k: v for k, v in arguments.items() if isinstance(v, bool | int | str)
            or (isinstance(v, float) and math.isfinite(v))}


def _export(model: Any, batch: int, seq_len: int, artifact: Path) -> int | None:
    """Save `model` exported for (any batch, seq_len) token ids, else for (batch, seq_len): the batch size it
    takes, or None for any."""
    import torch
    model = getattr(model, "_orig_mod", model)  # what torch.compile wrapped
    model.eval()
    device = next(iter(model.parameters())).device
    example = torch.zeros(max(2, batch), seq_len, dtype=torch.long, device=device)
    fixed: int | None = None
    try:
        with torch.no_grad():
            try:  # any batch size: the evaluation may score in other batches than training used
                exported = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            except Exception:
                fixed = batch
                exported = torch.export.export(model, (example[:batch],))
    except Exception as err:
        raise RuntimeError(f"researchorg: the model cannot be exported as a graph of tensor operators for the "
                           f"protected evaluation ({type(err).__name__}: {str(err).splitlines()[0][:200]}). A "
                           "model with custom kernels cannot be: use the printed metric instead") from None
    torch.export.save(exported, artifact / "model.pt2")
    return fixed
