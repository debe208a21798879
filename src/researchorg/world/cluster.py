"""Experiments on a Ray cluster: the organization stays on the head, each compute slot is a Ray actor on a node.

`researchorg run DIR --ray auto|ADDRESS` (or `[compute] ray = ...` in org.toml,
or in a bench spec) connects to a running cluster. The agents, the ledger and
git stay in this process; only experiments go to the nodes.

**An actor per slot, not a task per experiment.** A slot is what the
scheduler hands out and the ledger records, with a hardware class read off
its node once. An actor holds the slot's resources (`num_gpus=1` on a GPU,
else the slot's CPU threads as `num_cpus`) for as long as the org runs, so Ray
places and pins it once and the next experiment starts at once, in a warm
process, not after Ray has placed a new task and started a worker for it. It
keeps its checkout and knows its node's prepared data between runs. It is a
threaded actor, so it answers while its run trains: the log streams back and a
cancel reaches the run. And a dead node is a dead actor: the call fails, and
the experiment is known lost, not left waiting. Placement uses Ray's built-in
resources only (a plain `ray start --head` cluster works).

- **Code.** The commit travels as a tar of `git archive` through Ray's object
  store (nodes share no disk). The node unpacks it into the slot's checkout,
  hash-checks the protected files and runs the task's command with the same
  runner, sandbox and time limits as a local slot (runner.py).
- **Data.** The task's prepare step runs once per node and task (the hash of
  its protected files, task.toml included), under a file lock, before the
  node's first run.
- **Logs.** The head reads the node's log as it grows, every LOG_SECONDS, into
  `.researchorg/logs/<id>.log`; the verdict and summary come back as the
  result.
- **Death.** A timeout, a Ctrl-C or a cancel kills the run's process group on
  the node (runner.kill_group). If the actor itself dies (its head killed with
  `kill -9`, the actor killed, the node removed), the slot's reaper
  (reaper.py) kills what it had running. A head that starts again sweeps each
  node for its program's runs still registered there and kills them before it
  settles them as interrupted.
- **Hardware.** A GPU slot's class is the node's GPU name (nvidia-smi), a CPU
  slot's the node's CPU model and the slot's threads, as on a local slot.
- **Nodes come and go.** A watcher polls the cluster every FOLLOW_SECONDS: a
  node that joins adds slots, one that leaves removes them. A run on a slot
  that vanished ends `lost`: the engine records it interrupted and runs the
  same code again elsewhere.

A GPU node gives one slot per GPU (its CPUs shared among them); a CPU node one
slot per `threads` CPUs (default: one slot of all its CPUs). Slots are not
pinned to cores on a node (Ray does not pin CPUs either).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from researchorg.errors import ConfigError, LabError
from researchorg.task.spec import load_task
from researchorg.world.guard import check_protected
from researchorg.world.protocol import LOST, RunResult
from researchorg.world.runner import group_members, kill_group, run_command, run_prepare, verdict_path
from researchorg.world.slots import Slot, visible_gpus

LOG_SECONDS = 0.5  # how often a running experiment's log is copied back to the head
FOLLOW_SECONDS = 2.0  # how often the cluster's nodes are looked at
START_SECONDS = 60.0  # how long new slot actors may take to start


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'researchorg[ray]' (on the head and every node)") from None
    return ray


def node_root() -> Path:
    """Where slots keep their checkouts, logs and scratch on a node."""
    return Path(os.path.expanduser("~/.cache/researchorg/ray"))


# on the node -------------------------------------------------------------------------------------------------
class SlotActor:
    """One slot on one node (a threaded Ray actor): runs one experiment at a time, and answers for its log and a
    cancel while it runs."""

    def __init__(self, name: str, threads: int):
        ray = _ray()
        gpus = [str(g) for g in ray.get_gpu_ids()]
        gpu = gpus[0] if gpus else None
        names = dict(visible_gpus()) if gpu is not None else {}  # nvidia-smi's names of the GPUs Ray gave us
        self.slot = Slot(name, threads=threads, gpu=gpu, gpu_name=names.get(gpu, ""))
        self.host = socket.gethostname()
        self.root = node_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self._cancels: dict[tuple[str, int], threading.Event] = {}
        self._lock = threading.Lock()
        # the reaper outlives this process by a moment: when it dies, its runs die with it
        self._reaper = subprocess.Popen([sys.executable, "-m", "researchorg.world.reaper"], stdin=subprocess.PIPE,
                                        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._reaper.wait()  # its first process exits at once; the detached reaper reads the pipe

    def describe(self) -> dict[str, Any]:
        return {"hardware": self.slot.hardware(), "host": self.host, "gpu": self.slot.gpu, "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self, job: dict[str, Any], archive: bytes) -> RunResult:
        base, number = self.root / job["program"], int(job["experiment"])
        checkout = base / "slots" / self.slot.name
        _unpack(archive, checkout)
        invalid = check_protected(checkout, job["protected"])
        if invalid:
            return RunResult("invalid", reason=invalid)
        try:
            task = load_task(checkout, check_files=False)  # its code is the agents'
            self._prepare(task, archive, job["task_hash"])
            task = task.at_fidelity(float(job.get("fidelity", 1.0)))
        except (LabError, ConfigError) as err:
            return RunResult("crash", reason=f"on node {self.host}: {err}")
        cancel = self._cancel_of(job["program"], number)
        marker = base / "running" / str(number)
        marker.parent.mkdir(parents=True, exist_ok=True)

        groups: list[int] = []

        def started(pid: int) -> None:  # the run's process group: on the marker, and with the reaper
            groups.append(pid)
            marker.write_text(str(pid))
            self._tell_reaper(f"+{pid}")

        try:
            result = run_command(task, checkout, self._log(job["program"], number), seed=int(job["seed"]),
                                 slot=self.slot, on_start=started, cancel=cancel, scratch=base / "tmp" / str(number),
                                 passed={k: v for k, v in job.get("env", {}).items() if k in task.pass_env},
                                 seal_key=job.get("seal_key"))
        finally:
            for pid in groups:
                self._tell_reaper(f"-{pid}")
            marker.unlink(missing_ok=True)
            with self._lock:
                self._cancels.pop((job["program"], number), None)
        result.summary["node"] = self.host
        return result

    def read_log(self, program: str, number: int, offset: int, limit: int = 1 << 20) -> bytes:
        try:
            with open(self._log(program, number), "rb") as log:
                log.seek(offset)
                return log.read(limit)
        except OSError:
            return b""

    def cancel(self, program: str, number: int) -> None:
        self._cancel_of(program, number).set()

    def forget(self, program: str, number: int) -> None:
        """The head has the run's log: the node's copy and its verdict go (a node's disk does not fill with them)."""
        log = self._log(program, number)
        for path in (log, verdict_path(log)):
            path.unlink(missing_ok=True)

    def _cancel_of(self, program: str, number: int) -> threading.Event:
        with self._lock:
            return self._cancels.setdefault((program, number), threading.Event())

    def _log(self, program: str, number: int) -> Path:
        return self.root / program / "logs" / f"{number:05d}.log"

    def _prepare(self, task: Any, archive: bytes, task_hash: str) -> None:
        """The task's prepare step, once per node and task: the first slot runs it, the others wait for it."""
        done = self.root / "prepared" / task_hash
        if done.is_file():
            return
        done.parent.mkdir(parents=True, exist_ok=True)
        with open(done.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if done.is_file():
                return
            place = self.root / "prepare" / task_hash
            _unpack(archive, place)
            run_prepare(load_task(place, check_files=False), place)
            done.write_text(json.dumps({"task": task.name, "at": time.time()}))

    def _tell_reaper(self, line: str) -> None:
        try:
            self._reaper.stdin.write(f"{line}\n".encode())
            self._reaper.stdin.flush()
        except (OSError, ValueError):
            pass


def sweep(program: str) -> list[int]:
    """Kill the runs of `program` still registered on this node (their head died and its actors' reapers did
    not get them all); the process groups it killed."""
    killed = []
    for marker in (node_root() / program / "running").glob("*"):
        try:
            pgid = int(marker.read_text())
        except (OSError, ValueError):
            pgid = 0
        if pgid and group_members(pgid):
            kill_group(pgid)
            killed.append(pgid)
        marker.unlink(missing_ok=True)
    return killed


def _unpack(archive: bytes, where: Path) -> None:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")


# on the head -------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class RaySlot:
    """The head's handle of a slot actor. `gpu` stays None here: the GPU is the node's, pinned by Ray."""

    name: str
    node: str
    host: str
    actor: Any
    hw: str
    threads: int = 0
    cores: tuple[int, ...] = ()
    gpu: str | None = None
    gpu_name: str = ""
    alive: bool = True

    def hardware(self) -> str:
        return self.hw

    def run(self, job: dict[str, Any], archive: bytes, log_path: Path, cancel: threading.Event) -> RunResult:
        """Run the job on the node, copying its log back while it trains; a slot whose actor died ends `lost`."""
        ray = _ray()
        started = time.monotonic()
        key, number = job["program"], int(job["experiment"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pending = self.actor.run.remote(job, ray.put(archive))
        cancelled = False
        offset = 0
        with open(log_path, "wb") as log:
            def copy() -> int:
                try:
                    chunk = ray.get(self.actor.read_log.remote(key, number, offset), timeout=30)
                except Exception:  # the actor is gone: the run's own call says how
                    return 0
                log.write(chunk)
                log.flush()
                return len(chunk)

            while True:
                ready, _ = ray.wait([pending], timeout=LOG_SECONDS)
                if cancel.is_set() and not cancelled:
                    self.actor.cancel.remote(key, number)
                    cancelled = True
                if ready:
                    break
                offset += copy()
            try:
                result = ray.get(pending)
            except Exception as err:  # the actor died (its node left, or it was killed)
                self.alive = False
                return RunResult(LOST, reason=f"slot {self.name} on {self.host} left the cluster during the run "
                                              f"({type(err).__name__}); its code runs again on another slot",
                                 wall_seconds=time.monotonic() - started)
            while (got := copy()) > 0:
                offset += got
        try:
            ray.get(self.actor.forget.remote(key, number), timeout=30)
        except Exception:  # the actor is gone since: its node's copy is all that is left of it there
            pass
        return result


class RayCluster:
    """The head's view of a Ray cluster: its slots, kept in step with its nodes."""

    def __init__(self, address: str = "auto", threads: int | None = None):
        ray = _ray()
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1 (got {threads})")
        self.address, self.threads = address, threads
        self._connected = not ray.is_initialized()  # we connect, so we disconnect at close()
        if self._connected:
            _check_reachable(address)
            try:
                ray.init(address=None if address in ("", "auto") and os.environ.get("RAY_ADDRESS") else address,
                         logging_level=logging.ERROR, log_to_driver=False)
            except Exception as err:  # ConnectionError, a bad address, a version mismatch
                raise LabError(f"cannot reach the Ray cluster at {address!r}: {err}".splitlines()[0]
                               + " (start one with `ray start --head`)") from None
        self._actor_class = ray.remote(SlotActor)
        self._nodes: dict[str, list[RaySlot]] = {}
        self._retry_at: dict[str, float] = {}  # nodes whose slots did not start: when to try again
        self._lock = threading.Lock()
        self.refresh()
        if not self.slots():
            raise LabError(f"the Ray cluster at {address!r} has no node with a CPU or GPU to run experiments on")

    def slots(self) -> list[RaySlot]:
        with self._lock:
            return [s for slots in self._nodes.values() for s in slots if s.alive]

    def refresh(self) -> tuple[list[RaySlot], list[RaySlot]]:
        """Look at the cluster's nodes now: slots for nodes that joined, and again for slots whose actor died on a
        node that lives; none for nodes that left. Return (slots that joined, slots that left)."""
        ray = _ray()
        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        joined, left = [], []
        with self._lock:
            for node, slots in list(self._nodes.items()):
                gone = [s for s in slots if node not in alive or not s.alive]
                for s in gone:
                    s.alive = False
                    left.append(s)
                    try:
                        ray.kill(s.actor)
                    except Exception:
                        pass
                self._nodes[node] = [s for s in slots if s not in gone]
            have = {node: {s.name for s in slots} for node, slots in self._nodes.items()}
        now = time.monotonic()
        wanted = [(node, step) for node, info in alive.items() if self._retry_at.get(node, 0.0) <= now
                  for step in self._plan(node, info) if step[0] not in have.get(node, set())]
        for slot in self._start(wanted, alive):
            with self._lock:
                self._nodes.setdefault(slot.node, []).append(slot)
            joined.append(slot)
        return joined, left

    def _plan(self, node: str, info: dict[str, Any]) -> list[tuple[str, int, int, int]]:
        """A node's slots: (name, threads, CPUs held, GPUs held) each."""
        resources = info.get("Resources", {})
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if gpus:
            threads = self.threads or max(1, cpus // gpus)
            return [(f"ray-{node[:6]}-gpu{i}", threads, min(threads, cpus // gpus), 1) for i in range(gpus)]
        threads = self.threads or cpus
        return [(f"ray-{node[:6]}-cpu{i}", threads, threads, 0) for i in range(cpus // threads)] if threads else []

    def _start(self, wanted: list[tuple[str, tuple[str, int, int, int]]], alive: dict[str, Any]) -> list[RaySlot]:
        """Start the slot actors, on all their nodes at once; a node where some did not start in START_SECONDS
        (it left, or its resources are held by others) is tried again a minute later."""
        if not wanted:
            return []
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        actors = [self._actor_class.options(
            num_cpus=cpus, num_gpus=gpus, max_concurrency=4, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(name, threads)
            for node, (name, threads, cpus, gpus) in wanted]
        answers = [a.describe.remote() for a in actors]
        ready, _ = ray.wait(answers, num_returns=len(answers), timeout=START_SECONDS)
        started = []
        for (node, (name, threads, _, _)), actor, answer in zip(wanted, actors, answers, strict=True):
            try:
                about = ray.get(answer, timeout=0) if answer in ready else None
            except Exception:
                about = None
            if about is None:
                ray.kill(actor)
                self._retry_at[node] = time.monotonic() + 60
                continue
            host = alive[node].get("NodeManagerHostname") or alive[node].get("NodeManagerAddress") or node[:8]
            started.append(RaySlot(name, node, about["host"] or host, actor, about["hardware"], threads=threads))
        return started

    def follow(self, on_join: Callable[[RaySlot], None], on_leave: Callable[[RaySlot], None]) -> Callable[[], None]:
        """Watch the cluster in a thread, calling on_join / on_leave per slot; return the function that stops it."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(FOLLOW_SECONDS):
                try:
                    joined, left = self.refresh()
                except Exception:  # the cluster did not answer this time
                    continue
                for slot in left:
                    on_leave(slot)
                for slot in joined:
                    on_join(slot)

        thread = threading.Thread(target=watch, name="researchorg-ray-follow", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            thread.join()
        return stopper

    def close(self) -> None:
        """Kill this head's slot actors (their reapers end their runs) and leave the cluster."""
        ray = _ray()
        with self._lock:
            slots = [s for slots in self._nodes.values() for s in slots]
            self._nodes = {}
        for s in slots:
            try:
                ray.kill(s.actor)
            except Exception:
                pass
        if self._connected:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """A clear error at once for an address nothing answers at (ray.init would retry for minutes)."""
    if address in ("", "auto"):
        return
    if address.startswith("ray://"):
        raise ConfigError(f"--ray {address}: Ray Client addresses are not supported; run researchorg on a machine "
                          "of the cluster and give the head's HOST:PORT (or auto)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: give auto or the head's HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise LabError(f"cannot reach the Ray cluster at {address}: {err.strerror or err} "
                       "(is `ray start --head` running there?)") from None


_sweeper: Any = None


def sweep_cluster(program: str) -> list[int]:
    """Kill what `program`'s runs left on every node of the cluster this process is connected to (a head that
    died left them); the process groups killed. Nothing where no cluster is connected."""
    global _sweeper
    try:
        import ray
    except ImportError:
        return []
    if not ray.is_initialized():
        return []
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    _sweeper = _sweeper or ray.remote(sweep)
    refs = [_sweeper.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(program) for n in ray.nodes() if n.get("Alive")]
    try:
        return [pgid for killed in ray.get(refs, timeout=60) for pgid in killed]
    except Exception:  # a node that does not answer: its reapers have done what they could
        return []


def task_hash(protected_hashes: dict[str, str]) -> str:
    """A task's identity on a node: its protected files (the prepare step and task.toml among them)."""
    return hashlib.sha256(json.dumps(protected_hashes, sort_keys=True).encode()).hexdigest()[:16]
