"""Compute slots: where experiments run. One per visible GPU or MIG instance (pinned with CUDA_VISIBLE_DEVICES),
or on a CPU machine the requested number of CPU slots, each with its own cores (affinity) and thread count.

A slot's hardware class (GPU name, or CPU model and threads) is recorded with every run: results are
compared only within one class.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from researchorg.errors import ConfigError


@dataclass
class Slot:
    """Where an experiment runs: a name, its CPU threads and cores, or one GPU."""

    name: str = "cpu0"
    threads: int = 0  # 0: leave the command's default
    cores: tuple[int, ...] = ()  # CPU affinity of the run; empty: any core
    gpu: str | None = None  # the CUDA_VISIBLE_DEVICES value of a GPU slot
    gpu_name: str = ""

    def hardware(self) -> str:
        """The hardware class: results are compared only within one."""
        if self.gpu is not None:
            return f"cuda:{self.gpu_name or 'gpu'}"
        return f"cpu:{_cpu_model()}:{self.threads or os.cpu_count()}t"


def detect_slots(count: int | None = None, threads: int | None = None) -> list[Slot]:
    """One slot per visible GPU; else `count` CPU slots (default 1) sharing the cores evenly."""
    for name, value in (("slots", count), ("threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value})")
    gpus = visible_gpus()
    if gpus and threads is None:
        chosen = gpus[:count] if count else gpus
        return [Slot(f"mig{i}" if gpu.startswith("MIG-") else f"gpu{gpu}", gpu=gpu, gpu_name=name)
                for i, (gpu, name) in enumerate(chosen)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    count = count or 1
    per_slot = threads or max(1, len(cores) // count)
    if count * per_slot > len(cores):
        raise ConfigError(f"{count} slots x {per_slot} threads need {count * per_slot} cores; "
                          f"this machine has {len(cores)}")
    return [Slot(f"cpu{i}", threads=per_slot, cores=tuple(cores[i * per_slot:(i + 1) * per_slot]))
            for i in range(count)]


def visible_gpus() -> list[tuple[str, str]]:
    """(CUDA_VISIBLE_DEVICES value, name) of each GPU `nvidia-smi -L` lists, honouring CUDA_VISIBLE_DEVICES. A
    GPU split into MIG instances gives one entry per instance (its UUID, and the GPU's name with the instance's
    profile, a hardware class of its own): two runs never share a GPU or an instance."""
    if shutil.which("nvidia-smi") is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: list[tuple[str, str, str, list[tuple[str, str]]]] = []  # index, name, UUID, its MIG instances
    for line in out.splitlines():
        gpu = re.match(r"^GPU (\d+): (.+?) \(UUID: (GPU-[^)]+)\)", line)
        mig = re.match(r"^\s+MIG (\S+)\s+Device\s+\d+: \(UUID: (MIG-[^)]+)\)", line)
        if gpu:
            found.append((*gpu.groups(), []))
        elif mig and found:
            found[-1][3].append((mig.group(2), mig.group(1)))
    gpus = []
    for index, name, uuid, migs in found:
        gpus += [(mig, f"{name} MIG {profile}", uuid) for mig, profile in migs] or [(index, name, uuid)]
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed:
        wanted = {v.strip() for v in allowed.split(",")}
        gpus = [g for g in gpus if g[0] in wanted or g[2] in wanted]
    return [(index, name) for index, name, _ in gpus]


@functools.cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()
