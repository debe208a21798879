"""The guest side of a protected harness: run the agent's training script under watch.

    python -m researchorg.harness.guest SPEC.json

A protected harness (harness/protected.py) starts this in a child process. Before
the agent's script runs, it imports the heavy libraries the spec names (so that
their own start-up is not judged), fixes the seed, and installs a Python audit
hook (PEP 578: it cannot be removed) that refuses, and reports to the harness
through an inherited pipe:

- opening any file the spec forbids to read (the validation split);
- opening for writing, creating, renaming or deleting anything outside the
  writable roots (the run's checkout and artifact directory, where its TMPDIR is), or
  any protected file inside them (the evaluator, the data preparation);
- starting processes (they would run unwatched) and loading native libraries
  with ctypes (which would bypass the hook);
- seeding the global generators (torch, random, numpy) with anything but the
  run's seed.

The refused operation raises PermissionError in the agent's code, so the run
usually stops there; either way the harness marks it invalid with the reason.
This watches honest mistakes and casual cheating in Python code; it is not a
sandbox against native code written to escape it.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "pty.spawn")
_NATIVE_EVENTS = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle")
_PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.truncate": (0,),
                "os.symlink": (1,), "os.link": (1,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
                "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,)}


class Watch:
    def __init__(self, spec: dict[str, Any]):
        self.fd = spec["report_fd"]
        self.seed = spec["seed"]
        self.forbidden = {os.path.realpath(p) for p in spec["forbidden_reads"]}
        self.protected = {os.path.realpath(p) for p in spec["protected"]}
        self.writable = [os.path.realpath(p) for p in spec["writable"]]
        self.reported = 0

    def report(self, kind: str, detail: str) -> None:
        if self.reported < 20:
            try:
                os.write(self.fd, (json.dumps({"kind": kind, "detail": detail}) + "\n").encode())
            except OSError:
                pass
        self.reported += 1
        raise PermissionError(f"researchorg harness: {kind}: {detail}")

    def may_write(self, path: str) -> bool:
        real = os.path.realpath(path)
        if real in self.protected:
            return False
        return real == os.devnull or any(real == root or real.startswith(root + os.sep) for root in self.writable)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, str | bytes | os.PathLike) or isinstance(path, int):
                return
            path = os.fsdecode(path)
            writing = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            if writing and not self.may_write(path):
                self.report("write outside the run's files" if os.path.realpath(path) not in self.protected
                            else "write to a protected file", path)
            if not writing and os.path.realpath(path) in self.forbidden and not _importing():
                self.report("read of the validation split", path)
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and isinstance(args[i], str | bytes | os.PathLike) \
                        and not self.may_write(os.fsdecode(args[i])):
                    self.report("write outside the run's files", f"{event} {os.fsdecode(args[i])}")
        elif event in _PROCESS_EVENTS:
            self.report("started a process", f"{event} {str(args)[:200]}")
        elif event in _NATIVE_EVENTS:
            self.report("loaded native code", f"{event} {str(args)[:200]}")


def _importing() -> bool:
    """Whether the open comes from Python's import system (compiling a module is not reading data)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _guard_seeds(watch: Watch, modules: list[str]) -> None:
    """Seeding the global generators with anything but the run's seed is refused."""
    def guarded(module: Any, name: str) -> None:
        original = getattr(module, name)

        def seed(value: Any = None, *args: Any, **kwargs: Any) -> Any:
            if value != watch.seed:
                watch.report("changed the seed", f"{module.__name__}.{name}({value!r}); the run's seed is {watch.seed}")
            return original(value, *args, **kwargs)
        setattr(module, name, seed)

    import random
    guarded(random, "seed")
    if "torch" in modules:
        import torch
        guarded(torch, "manual_seed")
        guarded(torch.random, "manual_seed")
    if "numpy" in modules:
        import numpy
        guarded(numpy.random, "seed")


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    for module in spec.get("preload", []):
        importlib.import_module(module)
    watch = Watch(spec)
    _guard_seeds(watch, spec.get("preload", []))
    script = spec["script"]
    sys.path.insert(0, str(Path(script).parent))
    sys.argv = [script]
    sys.addaudithook(watch)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
