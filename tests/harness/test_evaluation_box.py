"""The evaluation box: a process and a sandbox of its own, whatever runs inside it, and a graph allowlist.

The box's walls are tried from inside by a task's prepare module that does
what an escaped graph would (its `warm_evaluator` runs in the box); the
allowlist by graphs that hold the operators an attacker would hide in them.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from researchorg.harness import sandbox
from researchorg.harness.evaluate import scrub
from researchorg.harness.protected import Evaluator

torch = pytest.importorskip("torch")

PROBE = '''
import json, os, socket

def _try(action):
    try:
        action()
        return "done"
    except OSError as err:
        return type(err).__name__

def warm_evaluator():
    outside = {outside!r}
    found = {{
        "read the validation data": _try(lambda: open({val!r}).read()),
        "read a secret": _try(lambda: open(os.path.join(outside, "secret")).read()),
        "write beside the program": _try(lambda: open(os.path.join(outside, "written"), "w").write("x")),
        "write in site-packages": _try(lambda: open(os.path.join(os.path.dirname(os.__file__), "x.pth"), "w")),
        "write its own copy of prepare.py": _try(lambda: open(__file__, "a").write("#")),
        "connect to the machine": _try(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
    }}
    try:
        found["see the machine's processes"] = str(len([p for p in os.listdir("/proc") if p.isdigit()]) > 20)
    except OSError as err:
        found["see the machine's processes"] = type(err).__name__
    raise SystemExit(json.dumps(found))
'''


@pytest.fixture
def mode(request, monkeypatch):
    """The sandbox with every layer this machine has ("auto"), or with Landlock alone (no bubblewrap)."""
    monkeypatch.setenv("RESEARCHORG_SANDBOX", request.param)
    for probe in (sandbox.bwrap, sandbox.landlock_abi, sandbox._seccomp):
        probe.cache_clear()
    yield request.param
    monkeypatch.undo()
    for probe in (sandbox.bwrap, sandbox.landlock_abi, sandbox._seccomp):
        probe.cache_clear()


@pytest.mark.parametrize("mode", ["auto", "landlock"], indirect=True)
def test_the_box_reads_its_data_and_nothing_else_writes_nothing_and_has_no_network(tmp_path, mode):
    if sandbox.landlock_abi() < 4:
        pytest.skip("this kernel has no Landlock ABI 4: the box's network rule needs it")
    (tmp_path / "secret").write_text("the user's secret")
    val = tmp_path / "val.txt"
    val.write_text("validation bytes")
    server = socket.create_server(("127.0.0.1", 0))
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "prepare.py").write_text(PROBE.format(outside=str(tmp_path), val=str(val),
                                                      port=server.getsockname()[1]))
    box = Evaluator(snapshot, [val])
    try:
        verdict = box.score(b"not a model", {"seq_len": 8})
    finally:
        box.close()
    assert verdict["status"] == "crash", verdict
    found = json.loads(verdict["reason"].removeprefix("the evaluation could not start: "))
    assert found.pop("read the validation data") == "done"
    assert found.pop("see the machine's processes") in ("False", "PermissionError")
    assert all(outcome != "done" for outcome in found.values()), found
    assert not (tmp_path / "written").exists()
    assert "#" not in (snapshot / "prepare.py").read_text()[-2:]
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()  # nobody connected


def _exported(module: torch.nn.Module) -> bytes:
    import io
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (torch.zeros(2, 4),)), buffer)
    return buffer.getvalue()


def test_every_subgraph_is_checked_and_the_operator_named(tmp_path):
    from researchorg.harness import graph

    lib = torch.library.Library("aten", "IMPL")  # what an attacker registers so that export traces from_file
    lib.impl("from_file", lambda filename, shared=None, size=0, **kw: torch.empty(size, dtype=kw.get("dtype"),
                                                                                   device="meta"), "Meta")

    class Branch(torch.nn.Module):
        def forward(self, x):
            def read(y):
                return y + torch.from_file(str(tmp_path / "v"), size=4, dtype=torch.uint8).float().sum()
            return torch.cond(x.sum() >= 0, read, lambda y: y.clone(), (x,))

    class Stateful(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls.add_(1)
            return x * self.calls

    class InPlace(torch.nn.Module):
        def forward(self, x):
            y = x * 2
            return torch.relu_(y.mul_(3))

    try:
        assert "aten.from_file" in graph.refused(graph.load(_exported(Branch())))
        assert "changes its own state" in graph.refused(graph.load(_exported(Stateful())))
        assert graph.refused(graph.load(_exported(InPlace()))) is None  # it writes only its own intermediates
    finally:
        lib._destroy()


def test_an_error_reaches_the_ledger_without_what_the_model_read():
    err = RuntimeError("shape '[1099511627776]' is invalid for input of size 53210\n(the rest of it)")
    assert scrub(err) == "RuntimeError: shape '[#]' is invalid for input of size #"
    assert len(scrub(RuntimeError("x" * 1000))) == 200


def test_a_verdict_without_a_model_and_a_box_that_dies_are_crashes_with_their_reason(tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "prepare.py").write_text("import os\ndef warm_evaluator():\n    os._exit(3)\n")
    box = Evaluator(snapshot, [])
    try:
        verdict = box.score(b"model", {"seq_len": 8})
    finally:
        box.close()
    assert verdict["status"] == "crash" and "without a verdict" in verdict["reason"]
    assert Path(box.scratch.name).exists() is False
