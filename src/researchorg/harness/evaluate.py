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
from typing import Any

from researchorg.harness import sandbox

REQUEST_MAX = 1 << 20  # bytes of the request line
MODEL_MAX = 8 << 30  # bytes of a model archive


def scrub(err: BaseException) -> str:
    """An error as the ledger may see it: its type and first line, every number masked, at most 200 chars."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {re.sub(r'[0-9]+', '#', first)}"[:200].rstrip(": ")


def main() -> None:
    verdict_fd = os.dup(1)  # the verdict's own descriptor: whatever else prints goes to stderr
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.readline(REQUEST_MAX))
    sandbox.confine(sandbox.Policy.from_json(request["policy"]))
    sys.path.insert(0, request["prepare_dir"])
    import prepare  # the copy the harness took before the guest started

    from researchorg.harness import graph
    try:
        corpus = prepare.warm_evaluator()
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
    seq_len = int(head.get("seq_len", 0))
    try:
        model = graph.functional(program).module()
        if prepare.looks_ahead(model, seq_len):
            _answer(verdict_fd, {"status": "invalid", "reason": "the saved model looks ahead: its predictions "
                                 "change with later tokens or with other rows of its batch"})
            return
        memory, memorized = prepare.memorization(model, seq_len) if hasattr(prepare, "memorization") else ({}, None)
        if memorized is not None:
            _answer(verdict_fd, {"status": "invalid", "reason": memorized, "summary": memory})
            return
        metric = float(prepare.evaluate_bpb(model, seq_len))
    except Exception as err:  # a model that cannot run is the training code's failure
        _answer(verdict_fd, {"status": "crash", "reason": f"the saved model cannot be evaluated: {scrub(err)}"})
        return
    if not math.isfinite(metric):
        _answer(verdict_fd, {"status": "crash", "reason": "the saved model's score is not a finite number"})
        return
    summary = {**memory, "num_params": graph.count_parameters(program), "corpus_hash": corpus,
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
