"""Tools of an org's own: a Python function the org file names (`[[tools]] python = "tools/flops.py:count"`), or
the tools of an MCP server a command starts (`mcp = ["python", "tools/papers.py"]`).

A function runs in a subprocess of its own, one per call, so a tool that
raises, hangs, crashes the interpreter or prints to stdout is one readable
error for the agent (and a `tool_failed` event in the ledger), never a crashed
org. Its code is the program's (as `init` copied it into the program's
directory, which no agent can write: an agent cannot change what its tool runs), in the agent's worktree
as its working directory, and in the sandbox a coding CLI of that agent gets
(harness/sandbox.py): the worktree writable but for its protected files, the
system and Python read-only, the task's sealed paths hidden, the program's
ledger and the other worktrees out of sight, the network open, no variable
that may hold a secret but those the tool's `pass_env` names. So a tool
written without suspicion (one that reads the path it is given) cannot be
turned by an agent against the lab. The agent chooses only its arguments,
which pydantic validates against the function's annotations before the call. Its
schema (the parameters the model sees) comes from those annotations and its
description from the docstring (or the spec's `description`). The result is
the function's return value: a string as it is, anything else as JSON.

The subprocess is `_tool_process.py` (it imports nothing of researchorg).

An MCP server is started for each listing and each call (through the `mcp` SDK's client, on stdio), from the
program's copy of the files its command names; a call's server runs in the agent's worktree and the same
sandbox. Each of its tools is offered as `NAME_TOOL` with the server's own schema, and the same time limit
stops a call (and the server) that hangs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from researchorg.config import ToolSpec
from researchorg.harness import sandbox
from researchorg.task.spec import TaskSpec

MAX_RESULT_CHARS = 60_000
_PROCESS = Path(__file__).with_name("_tool_process.py")  # what runs in the tool's subprocess
_DESCRIBED: dict[tuple[str, str, str], dict[str, Any]] = {}  # (code hash, file, function) -> its schema
_LISTED: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # (name, command, root, files' hash) -> its tools


class CustomToolError(Exception):
    """A custom tool that cannot be described or whose call failed; the message is one line."""


def schema(spec: ToolSpec, root: Path) -> dict[str, Any]:
    """The function as the model sees it (name, description, JSON-schema parameters), from its file under `root`
    (the program's, or the org file's folder at `check`)."""
    file = (root / spec.file).resolve()
    try:
        source = file.read_bytes()
    except OSError as err:
        raise CustomToolError(f"tool {spec.name}: cannot read {spec.file}: {err.strerror or err}") from None
    key = (hashlib.sha256(source).hexdigest(), str(file), spec.function)
    if key not in _DESCRIBED:
        _DESCRIBED[key] = json.loads(_run(spec, file, "describe", {}, file.parent, timeout=min(spec.timeout, 60)))
    described = _DESCRIBED[key]
    return {"name": spec.name, "description": spec.description or described["description"] or spec.name,
            "parameters": described["parameters"]}


def call(spec: ToolSpec, arguments: dict[str, Any], worktree: Path, task: TaskSpec) -> str:
    """Run the function once on `arguments` in an agent's `worktree` of `task` (its file: the program's copy),
    confined; its result as text. A CustomToolError says why it failed."""
    text = _run(spec, (task.root / spec.file).resolve(), "call", arguments, worktree, timeout=spec.timeout, task=task)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "\n... (truncated)"


def mcp_schemas(spec: ToolSpec, root: Path, cwd: Path) -> list[dict[str, Any]]:
    """The tools of `spec`'s MCP server as the model sees them, each named NAME_TOOL (`root`: where the files
    its command names are; listed unconfined, as `check` lists them: no agent's input is involved)."""
    root = root.resolve()
    files = spec.files(root)
    key = (spec.name, json.dumps(spec.mcp), str(root),
           hashlib.sha256(b"".join((root / f).read_bytes() for f in files)).hexdigest())
    if key not in _LISTED:
        listed = _mcp(spec, root, cwd, lambda client: client.list_tools(), min(spec.timeout, 60))
        _LISTED[key] = [{"name": f"{spec.name}_{t.name}", "description": t.description or t.name,
                         "parameters": t.input_schema} for t in listed.tools]
    return _LISTED[key]


def mcp_call(spec: ToolSpec, root: Path, tool: str, arguments: dict[str, Any], worktree: Path,
             task: TaskSpec) -> str:
    """Call `tool` of `spec`'s MCP server once, started in an agent's `worktree` of `task`, confined; its text.
    A CustomToolError says why it failed."""
    result = _mcp(spec, root, worktree, lambda client: client.call_tool(tool, arguments), spec.timeout, task)
    text = "\n".join(block.text for block in result.content if getattr(block, "text", None) is not None)
    if result.is_error:
        raise CustomToolError(f"tool {spec.name}_{tool}: {(text.strip().splitlines() or ['failed'])[0][:500]}")
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "\n... (truncated)"


def _mcp(spec: ToolSpec, root: Path, cwd: Path, action: Any, timeout: float, task: TaskSpec | None = None) -> Any:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    root = root.resolve()
    files = set(spec.files(root))
    argv = [str(root / a) if a in files else a for a in spec.mcp or []]
    if argv[0] == "python":
        argv[0] = sys.executable
    env = _environment(spec)
    if task is not None:
        argv = sandbox.confined(argv, _policy(cwd, task, read=[_readable(root / f, root) for f in files]), cwd)
    server = StdioServerParameters(command=argv[0], args=argv[1:], cwd=cwd, env=env)
    logging.getLogger("mcp.client").setLevel(logging.CRITICAL)  # a server's bad line is the error we raise
    with tempfile.TemporaryFile("w+", prefix="researchorg-mcp-tool-") as errlog:  # the server's stderr, kept out
        # of the lab's terminal

        async def session() -> Any:
            with anyio.fail_after(timeout):
                async with Client(stdio_client(server, errlog=errlog)) as client:
                    return await action(client)

        try:
            return anyio.run(session)
        except TimeoutError:
            raise CustomToolError(f"tool {spec.name}: no answer within {timeout:g} s (stopped)") from None
        except Exception as err:  # the server would not start, or broke the protocol
            found: BaseException = err
            while isinstance(found, BaseExceptionGroup) and found.exceptions:
                found = found.exceptions[0]
            errlog.seek(0)
            said = [line for line in errlog.read().splitlines() if line.strip()]
            why = said[-1].strip() if said else f"{type(found).__name__}: {str(found) or 'failed'}".splitlines()[0]
            raise CustomToolError(f"tool {spec.name}: {' '.join(spec.mcp or [])}: {why[:500]}") from None


def _environment(spec: ToolSpec) -> dict[str, str]:
    """What a tool's process gets of the lab's environment: all but what may hold a secret, and its `pass_env`."""
    return {k: v for k, v in os.environ.items() if not sandbox.is_secret(k) or k in spec.pass_env}


def _readable(file: Path, root: Path) -> Path:
    """What a confined tool may read of the program for `file`: its folder (its helpers), or the file alone when
    it lies at the program's top (whose folder holds the ledger)."""
    return file if file.parent.resolve() == root.resolve() else file.parent


def _policy(worktree: Path, task: TaskSpec, read: list[Path] = (), write: list[Path] = ()) -> sandbox.Policy:
    """The sandbox of a tool call: a coding CLI's in the same worktree (its own home aside)."""
    return sandbox.policy_for(worktree, list(write), network=True, read=[_PROCESS.parent, *read],
                              hidden=task.sealed_paths(),
                              readonly=[worktree / p for p in task.protected_files() if (worktree / p).exists()])


def _run(spec: ToolSpec, file: Path, action: str, arguments: dict[str, Any], cwd: Path, timeout: float,
         task: TaskSpec | None = None) -> str:
    """Run `_tool_process.py` on the tool's `file` (the program's copy) in `cwd`: confined for an agent's call
    (`task`), its own process group killed once it answers or runs out of time (a child it left, too)."""
    with tempfile.TemporaryDirectory(prefix="researchorg-tool-") as tmp:
        answer_path, errors_path = Path(tmp) / "answer.json", Path(tmp) / "stderr"
        argv = [sys.executable, str(_PROCESS), action, str(file), spec.function, str(answer_path)]
        if task is not None:  # an agent's call: confined (a listing at `check` or start is the org's own)
            argv = sandbox.confined(argv, _policy(cwd, task, read=[_readable(file, task.root)], write=[Path(tmp)]),
                                    cwd)
        with open(errors_path, "w+") as errors:
            try:
                proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=errors, text=True, start_new_session=True, env=_environment(spec))
            except OSError as err:
                raise CustomToolError(f"tool {spec.name}: could not start: {err}") from None
            try:
                proc.communicate(json.dumps(arguments), timeout=timeout)
            except subprocess.TimeoutExpired:
                raise CustomToolError(f"tool {spec.name}: no answer within {timeout:g} s (stopped)") from None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the tool and whatever it started and left behind
                proc.wait()
            errors.seek(0)
            said = [line for line in errors.read()[-4000:].splitlines() if line.strip()]
        try:
            answer = json.loads(answer_path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError):
            answer = {}
    if "ok" in answer and proc.returncode == 0:
        return str(answer["ok"])
    why = answer.get("error") or f"exit status {proc.returncode}" + (f": {said[-1].strip()}" if said else "")
    raise CustomToolError(f"tool {spec.name}: {why[:500]}")
