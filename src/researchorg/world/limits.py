"""What one run may use of the machine, enforced from outside it: processes, disk written, output.

The kernel's rlimits do not bound processes for root (RLIMIT_NPROC exempts
it) nor the disk a run fills with many files, and a log is whatever the run
prints. So the runner watches each run from outside:

- **processes**: a cgroup of the run's own where the machine lets us make one
  (the pids controller, v1 or v2): the kernel refuses a fork past a ceiling of
  four tasks per allowed process, threads included; and in any case a count
  of the run's processes, read from /proc, that ends the run past the limit;
- **disk**: the bytes the run added to its writable folders (its checkout and
  its scratch directory), measured about once a second, end the run past the
  limit; no single file may exceed it either (RLIMIT_FSIZE in the sandbox);
- **output**: the log keeps the first and the last half of `LOG_KEEP` bytes,
  with a line saying how much was cut between them, and a run that prints more
  than the output limit is ended.

A run ended for a limit is a `crash`, its reason naming the limit. Tasks set
their own limits in task.toml's `[limits]`.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import BinaryIO

from researchorg.harness import sandbox
from researchorg.task.spec import RunLimits

LOG_KEEP = 16 << 20  # bytes of output a log keeps: the first and the last half
DISK_EVERY = 1.0  # seconds between two measures of the disk a run wrote
PROCESS_EVERY = 0.25  # seconds between two counts of its processes
THREADS_PER_PROCESS = 4  # the cgroup's ceiling counts threads: this many per allowed process
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


class RunWatch:
    """The limits of one run: join its cgroup (`enter`, in the child before it execs), then `check` as it runs."""

    def __init__(self, limits: RunLimits, writable: list[Path], name: str):
        self.limits = limits
        self.writable = [p for p in writable if p.exists()]
        self.base = sum(_disk_used(p) for p in self.writable)
        self.cgroup = _make_cgroup(name, limits.processes * THREADS_PER_PROCESS)
        self.root: int | None = None
        self._next_disk = self._next_count = 0.0

    def enter(self) -> None:
        """Put this process (the run's, before it execs) in the run's cgroup."""
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def check(self) -> str | None:
        """Why the run must end now (a limit it passed), or None."""
        now = time.monotonic()
        if self.cgroup is not None and _events_max(self.cgroup):
            return f"it tried to start more than {self.limits.processes * THREADS_PER_PROCESS} processes and " \
                   f"threads at once (the limit {self.limits.processes} processes): ended"
        if self.root is not None and now >= self._next_count:
            self._next_count = now + PROCESS_EVERY
            count = 1 + len(sandbox.descendants(self.root))
            if count > self.limits.processes:
                return f"it started more than {self.limits.processes} processes at once ({count}): ended"
        if now >= self._next_disk:
            self._next_disk = now + DISK_EVERY
            return self.check_disk()
        return None

    def check_disk(self) -> str | None:
        added = sum(_disk_used(p) for p in self.writable) - self.base
        if added > self.limits.disk_bytes:
            return f"it wrote more than {_size(self.limits.disk_bytes)} to disk ({_size(added)}): ended"
        return None

    def close(self) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.rmdir()  # empty once the run's group is killed
            except OSError:
                pass


class CappedLog:
    """A run's log: the first half of LOG_KEEP bytes as they come, the last half when the run ends."""

    def __init__(self, file: BinaryIO, output_limit: int):
        self.file, self.output_limit = file, output_limit
        self.written = 0
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_bytes = 0

    def write(self, chunk: bytes) -> str | None:
        """Keep `chunk`; why the run must end (it printed past the output limit), or None."""
        head = max(0, LOG_KEEP // 2 - self.written)
        if head:
            self.file.write(chunk[:head])
            self.file.flush()
        if len(chunk) > head:
            self.tail.append(chunk[head:])
            self.tail_bytes += len(chunk) - head
            while self.tail_bytes - len(self.tail[0]) >= LOG_KEEP // 2:
                self.tail_bytes -= len(self.tail.popleft())
        self.written += len(chunk)
        if self.written > self.output_limit:
            return f"it printed more than {_size(self.output_limit)}: ended"
        return None

    def close(self) -> None:
        """Write the kept tail after a line that says what was cut."""
        if not self.tail:
            return
        tail = b"".join(self.tail)[-(LOG_KEEP // 2):]
        cut = self.written - LOG_KEEP // 2 - len(tail)
        if cut > 0:
            self.file.write(f"\n[... {_size(cut)} of output cut here: the log keeps the first and the last "
                            f"{_size(LOG_KEEP // 2)} ...]\n".encode())
        self.file.write(tail)
        self.file.flush()


def _disk_used(root: Path) -> int:
    """Bytes of disk the files below `root` take (allocated blocks: a file made with fallocate counts whole),
    links not followed."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n:.1f} GiB"


def _make_cgroup(name: str, ceiling: int) -> Path | None:
    """A pids cgroup for one run, limited to `ceiling` tasks, where this machine lets us make one."""
    for root in _CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists():
            continue
        if root.name != "pids" and "pids" not in _read(root / "cgroup.controllers").split():
            continue
        group = root / "researchorg" / name
        try:
            group.mkdir(parents=True, exist_ok=True)
            if root.name != "pids":  # v2: the controller must be on for the children of our folder
                (root / "researchorg" / "cgroup.subtree_control").write_text("+pids")
            (group / "pids.max").write_text(str(ceiling))
        except OSError:
            continue
        return group
    return None


def _events_max(group: Path) -> int:
    for line in _read(group / "pids.events").splitlines():
        if line.startswith("max "):
            return int(line.split()[1])
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
