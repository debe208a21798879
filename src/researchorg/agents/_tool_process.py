"""The process of one custom tool call (agents/custom_tools.py starts it by its path, not as a module of the
package, so it imports nothing of researchorg and starts in the time Python and pydantic take):

    python _tool_process.py describe|call FILE FUNCTION ANSWER_FILE    (call: the JSON arguments on stdin)

It loads FUNCTION from FILE, then writes to ANSWER_FILE, as JSON, {"ok": ...} (its schema, or its result) or
{"error": one line} (and exits 1); the tool's own stdout goes nowhere the lab reads.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any


def _describe(function: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    if inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function) or \
            inspect.isasyncgenfunction(function):
        raise _Refused(f"{function.__name__} must be a plain function (not async, not a generator)")
    unnamed = [p.name for p in inspect.signature(function).parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if unnamed:
        raise _Refused(f"{function.__name__}: every parameter must be one a model can name (not /, *{unnamed[0]} "
                       "or **kwargs)")
    parameters = TypeAdapter(function).json_schema()
    for prop in parameters.get("properties", {}).values():
        prop.pop("title", None)
    parameters.pop("title", None)
    return {"description": inspect.cleandoc(function.__doc__ or "").split("\n\n")[0].replace("\n", " "),
            "parameters": parameters}


def _call(function: Any, arguments: dict[str, Any]) -> str:
    from pydantic import TypeAdapter, ValidationError

    try:
        result = TypeAdapter(function).validate_python(arguments)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
        raise _Refused(f"wrong arguments: {problems}") from None
    if inspect.isawaitable(result) or inspect.isgenerator(result):
        raise _Refused("the function returned a coroutine or a generator, not a value")
    return result if isinstance(result, str) else json.dumps(result, default=str)


class _Refused(Exception):
    pass


def _main(action: str, file: str, name: str, answer_path: str) -> int:
    """Load `name` from `file`, then describe it or call it on the JSON arguments read from stdin, writing the
    answer to `answer_path` as JSON: {"ok": text} or {"error": why} (exit 1)."""
    path = Path(answer_path)

    def answer(**what: str) -> None:
        path.write_text(json.dumps(what))

    try:
        where = Path(file)
        sys.path.insert(0, str(where.parent))
        module_spec = importlib.util.spec_from_file_location(f"researchorg_tool_{where.stem}", where)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        function = getattr(module, name, None)
        if not callable(function):
            raise _Refused(f"{where.name} has no function {name}")
        if action == "describe":
            answer(ok=json.dumps(_describe(function)))
        else:
            answer(ok=_call(function, json.loads(sys.stdin.read() or "{}")))
        return 0
    except _Refused as err:
        answer(error=str(err))
    except BaseException as err:  # the tool's own failure, whatever it is, is the answer
        said = [line for line in str(err).splitlines() if line.strip()]
        answer(error=f"{type(err).__name__}: {said[0] if said else ''}".rstrip(": ")[:500])
    return 1


if __name__ == "__main__":
    del sys.path[0]  # this file's folder: a tool's `import tools` must not find the lab's own modules
    sys.exit(_main(*sys.argv[1:5]))
