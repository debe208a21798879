"""The evaluation box: score a handed-over model in a process and a sandbox of its own.

    python -I -m researchorg.harness.evaluate     (a request on stdin, the verdict on stdout)

A protected harness (harness/lm.py) starts this while the guest trains. It
confines itself first (harness/sandbox.py `evaluation_policy`: the system and
Python read-only, the task's protected files as the harness copied them before
any training code ran, the validation data and nothing else; no write
anywhere, no network), then imports the task's prepare module from that copy
and loads what scoring needs. It then reads the model's bytes from its stdin,
checks the graph (harness/graph.py: tensor operators only, every subgraph
included), and scores it with the task's own functions: `looks_ahead`,
`memorization` where the task has it (a model far better on the public text
of the validation files than on the private copy that is scored), and
`evaluate_bpb`. Python starts isolated
(`-I`: no PYTHONPATH, no user site, not the working directory), from a
read-only installation, so there is no path where anything could be planted
for it to import.

The only thing it writes is one JSON line, on a descriptor the harness reads:
`{"status": "ok", "metric": ..., "summary": {...}}`, or `"invalid"` /
`"crash"` with a reason. An error raised while the graph runs is reported by
its type and first line, cut short and with every number masked: a message
cannot carry out what the model read.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from researchorg.harness import sandbox

REQUEST_MAX = 1 << 20  # bytes of the request line
MODEL_MAX = 8 << 30  # bytes of a model archive


def scrub(err: BaseException) -> str:
    """An error as the ledger may see it: its type and first line, every number masked, at most 200 chars."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {re.sub(r'[0-9]+', '#', first)}"[:200].rstrip(": ")


class Invalid(Exception):
    """The model breaks a rule of the evaluation (it looks ahead, it memorized a copy): the run is invalid."""

    def __init__(self, reason: str, summary: dict[str, Any] | None = None):
        super().__init__(reason)
        self.summary = summary or {}


class TaskScoring:
    """A built-in language-model task's own scoring: its prepare module's `warm_evaluator`, `looks_ahead`,
    `memorization` (optional) and `evaluate_bpb`, called with the model and its sequence length."""

    def __init__(self, request: dict[str, Any]):
        import prepare  # the copy the harness took before the guest started
        self.prepare = prepare

    def warm(self) -> str:
        return self.prepare.warm_evaluator()

    def score(self, model: Any, head: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        seq_len = int(head.get("seq_len", 0))
        if self.prepare.looks_ahead(model, seq_len):
            raise Invalid(LOOKS_AHEAD)
        memory, memorized = self.prepare.memorization(model, seq_len) \
            if hasattr(self.prepare, "memorization") else ({}, None)
        if memorized is not None:
            raise Invalid(memorized, memory)
        return float(self.prepare.evaluate_bpb(model, seq_len)), memory


class HookScoring:
    """A repository's own evaluation function (task.toml's [harness]), called as `call` says, with `model` a
    language model whose loss the lab computes from the graph's logits (harness/adopted.py)."""

    def __init__(self, request: dict[str, Any]):
        import importlib
        module_name, _, self.function = request["entry"].partition(":")
        self.module = importlib.import_module(module_name)  # from the copy the harness took
        self.call = compile(request["call"], "task.toml [harness] call", "eval")
        self.sealed = [Path(p) for p in request.get("sealed", [])]

    def warm(self) -> str:
        import hashlib
        digest = hashlib.sha256()
        for path in sorted(self.sealed):
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    digest.update(file.read_bytes())
        return digest.hexdigest()[:16]

    def score(self, model: Any, head: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        import torch

        from researchorg.harness.lm import looks_ahead
        scored = LossOf(model)
        seq_len, arguments = int(head["seq_len"]), dict(head.get("arguments") or {})
        rows = int(head.get("batch") or 2)  # the batch it was exported for, or any
        device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
        probe = torch.zeros(rows, seq_len, dtype=torch.long, device=device)
        vocab = int(scored(probe).shape[-1])
        inputs = torch.randint(0, vocab, (rows, seq_len), device=device)
        if looks_ahead(scored, inputs, vocab):
            raise Invalid(LOOKS_AHEAD)
        namespace = {**vars(self.module), **arguments, "model": scored}
        return float(eval(self.call, namespace)), {}


class LossOf:
    """What a repository's evaluation function gets as its model: called as `model(idx)` it gives the graph's
    logits; as `model(idx, targets, reduction=...)` the cross-entropy the lab computes from them (targets of
    -1 ignored), so the graph cannot choose its own loss."""

    def __init__(self, graph_module: Any):
        self.graph_module = graph_module

    def __call__(self, idx: Any, targets: Any = None, reduction: str = "mean") -> Any:
        import torch.nn.functional as F
        logits = self.graph_module(idx)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1,
                               reduction="none").view(targets.shape)
        if reduction == "none":
            return loss
        return loss.sum() / (targets != -1).sum().clamp_min(1) if reduction == "mean" else loss.sum()

    def eval(self) -> LossOf:
        return self

    def train(self, mode: bool = True) -> LossOf:
        return self

    def parameters(self) -> Any:
        return iter(self.graph_module.parameters())


LOOKS_AHEAD = "the saved model looks ahead: its predictions change with later tokens or with other rows of its batch"
_SCORINGS = {"lm": TaskScoring, "hook": HookScoring}


def main() -> None:
    verdict_fd = os.dup(1)  # the verdict's own descriptor: whatever else prints goes to stderr
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.readline(REQUEST_MAX))
    sandbox.confine(sandbox.Policy.from_json(request["policy"]))
    sys.path.insert(0, request["prepare_dir"])
    from researchorg.harness import graph
    try:
        scoring = _SCORINGS[request.get("kind", "lm")](request)
        corpus = scoring.warm()
    except BaseException as err:  # the task's own data is missing or stale: no model was read yet
        _answer(verdict_fd, {"status": "crash", "reason": f"the evaluation could not start: {err}"})
        return
    head = json.loads(sys.stdin.buffer.readline(REQUEST_MAX) or b"{}")
    size = int(head.get("model_bytes", 0))
    if not 0 < size <= MODEL_MAX:
        _answer(verdict_fd, {"status": "crash", "reason": "the harness sent no model"})
        return
    data = _read_exactly(sys.stdin.buffer, size)
    started = time.perf_counter()
    try:
        program = graph.load(data)
        problem = graph.refused(program)
    except Exception as err:
        _answer(verdict_fd, {"status": "crash", "reason": f"the saved model cannot be loaded: {scrub(err)}"})
        return
    if problem is not None:
        _answer(verdict_fd, {"status": "invalid", "reason": f"the saved model {problem}"})
        return
    try:
        metric, figures = scoring.score(graph.functional(program).module(), head)
    except Invalid as rule:
        _answer(verdict_fd, {"status": "invalid", "reason": str(rule), "summary": rule.summary})
        return
    except Exception as err:  # a model that cannot run is the training code's failure
        _answer(verdict_fd, {"status": "crash", "reason": f"the saved model cannot be evaluated: {scrub(err)}"})
        return
    if not math.isfinite(metric):
        _answer(verdict_fd, {"status": "crash", "reason": "the saved model's score is not a finite number"})
        return
    summary = {**figures, "num_params": graph.count_parameters(program), "corpus_hash": corpus,
               "weights_sketch": graph.weights_sketch(program),
               "eval_seconds": round(time.perf_counter() - started, 2)}
    _answer(verdict_fd, {"status": "ok", "metric": metric, "summary": summary})


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _answer(fd: int, verdict: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(verdict) + "\n").encode())


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:  # the harness reports a box that answered nothing; the traceback is for its stderr
        import traceback
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: torch's takes a second
