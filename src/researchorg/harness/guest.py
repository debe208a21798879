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
  run's seed (or, for a repository that pins its own, such as autoresearch's
  `torch.manual_seed(42)`, seeding them with the run's seed instead); a thread
  also looks at torch's generators every 10 ms and at the end, whatever path
  reseeded them.

For a repository whose train.py calls a protected evaluation function with its
model (autoresearch's `evaluate_bpb`), that function is replaced by the
hand-off (harness/handoff.py) before the script runs.

The refused operation raises PermissionError in the agent's code, so the run
usually stops there; either way the harness marks it invalid with the reason.
This names honest mistakes and casual cheating in Python code; the sandbox
(harness/sandbox.py, applied here first) is what holds against code written to
escape the watch. Where the kernel enforces the sandbox's file rules, processes
and native code run confined like the rest, so the watch no longer refuses
them (torch.compile starts compiler workers); where it does not, it refuses them.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from researchorg.harness import clock, sandbox
from researchorg.harness.handoff import install

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
        self.confined = bool(spec.get("kernel_files"))
        self.reported = 0

    def note(self, kind: str, detail: str) -> None:
        """Tell the harness of a violation (it makes the run invalid)."""
        if self.reported < 20:
            try:
                os.write(self.fd, (json.dumps({"kind": kind, "detail": detail}) + "\n").encode())
            except OSError:
                pass
        self.reported += 1

    def report(self, kind: str, detail: str) -> None:
        """Tell the harness, and refuse the operation in the training code."""
        self.note(kind, detail)
        raise PermissionError(f"researchorg harness: {kind}: {detail}")

    def is_forbidden(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == root or real.startswith(root + os.sep) for root in self.forbidden)

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
            if not writing and self.is_forbidden(path) and not _importing():
                self.report("read of the validation split", path)
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and isinstance(args[i], str | bytes | os.PathLike) \
                        and not self.may_write(os.fsdecode(args[i])):
                    self.report("write outside the run's files", f"{event} {os.fsdecode(args[i])}")
        elif self.confined:
            return
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


def _seed(seed: int, modules: list[str]) -> None:
    """Seed the global generators with the run's seed before the training code runs."""
    import random
    random.seed(seed)
    if "torch" in modules:
        import torch
        torch.manual_seed(seed)
    if "numpy" in modules:
        import numpy
        numpy.random.seed(seed)


def _guard_seeds(watch: Watch, modules: list[str], replace: bool) -> None:
    """Seeding the global generators with anything but the run's seed is refused, or (`replace`: a repository
    written to pin its own seed, such as autoresearch's `torch.manual_seed(42)`) done with the run's seed."""
    def guarded(module: Any, name: str) -> None:
        original = getattr(module, name)

        def seed(value: Any = None, *args: Any, **kwargs: Any) -> Any:
            if value != watch.seed:
                if replace:
                    return original(watch.seed, *args, **kwargs)
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


class _SeedWatch(threading.Thread):
    """Looks at torch's generators every few milliseconds, and once more at the end: seeded with anything but
    the run's seed (by any path: `default_generator.manual_seed`, `torch.seed()`), the run is invalid. A reseed
    undone within the interval is left to the lab, which compares the weights of runs under different seeds."""

    def __init__(self, watch: Watch):
        super().__init__(daemon=True)
        self.watch, self.told = watch, False

    def run(self) -> None:
        while not self.told:
            self.check()
            time.sleep(0.01)

    def check(self) -> None:
        torch = sys.modules.get("torch")
        if torch is None or self.told:
            return
        seeds = {"torch": torch.initial_seed()}
        if torch.cuda.is_initialized():
            seeds["torch.cuda"] = torch.cuda.initial_seed()
        for name, value in seeds.items():
            if value != self.watch.seed:
                self.told = True
                self.watch.note("changed the seed", f"{name}'s generator was seeded with {value}; the run's seed is "
                                                    f"{self.watch.seed}")
                return


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    if spec.get("policy"):
        sandbox.confine(sandbox.Policy.from_json(spec["policy"]))
    preload = spec.get("preload", [])
    for module in preload:
        importlib.import_module(module)
    os.write(spec["report_fd"], b'{"event": "started"}\n')  # the harness stamps it: how long start-up took
    watch = Watch(spec)
    clock.attach(spec["report_fd"])  # its marks: when training starts, when the hand-off begins and ends
    if "torch" in preload:
        clock.watch_optimizers()
    _seed(watch.seed, preload)
    _guard_seeds(watch, preload, replace=spec.get("seeds") == "replace")
    seeds = _SeedWatch(watch)
    seeds.start()
    atexit.register(seeds.check)
    script = spec["script"]
    sys.path.insert(0, str(Path(script).parent))
    sys.argv = [script, *spec.get("args", [])]
    sys.addaudithook(watch)
    if spec.get("handoff"):  # the protected evaluation function train.py calls: it hands the model over instead
        handoff = spec["handoff"]
        install(importlib.import_module(handoff["module"]), handoff["function"], handoff["seq_len"],
                Path(spec["artifact"]), watch.note)
    runpy.run_path(script, run_name="__main__")


def _exit_now(code: int) -> None:
    """End without tearing the interpreter down (a second or more with torch loaded, out of the run's budget):
    exit handlers run and the standard streams are flushed; files the script left open are not."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as stop:
        code = stop.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        _exit_now(code if isinstance(code, int) else (0 if code is None else 1))
    except BaseException:
        traceback.print_exc()
        _exit_now(1)
    _exit_now(0)
