"""GPU slots from what `nvidia-smi -L` lists (a stand-in on PATH that prints what the real one prints on a
machine with an H100, an H200 and an A100 split into MIG instances), and a CPU build of torch on a GPU machine."""

from __future__ import annotations

import os
import stat

import pytest

from researchorg import Program, detect_slots
from tests.conftest import cli, copy_task

LISTING = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA H200 (UUID: GPU-22222222-aaaa-bbbb-cccc-000000000000)
GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-33333333-aaaa-bbbb-cccc-000000000000)
  MIG 3g.40gb     Device  0: (UUID: MIG-44444444-aaaa-bbbb-cccc-000000000000)
  MIG 3g.40gb     Device  1: (UUID: MIG-55555555-aaaa-bbbb-cccc-000000000000)
"""


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{LISTING}EOF\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return bin_dir


def test_one_slot_per_gpu_and_per_mig_instance_each_its_own_hardware_class(gpus, monkeypatch):
    slots = detect_slots()
    assert [(s.name, s.gpu) for s in slots] == [
        ("gpu0", "0"), ("gpu1", "1"), ("mig2", "MIG-44444444-aaaa-bbbb-cccc-000000000000"),
        ("mig3", "MIG-55555555-aaaa-bbbb-cccc-000000000000")]
    assert [s.hardware() for s in slots] == ["cuda:NVIDIA H100 80GB HBM3", "cuda:NVIDIA H200"] + \
        ["cuda:NVIDIA A100-SXM4-80GB MIG 3g.40gb"] * 2  # an H100 is never compared with an H200
    assert len({s.gpu for s in slots}) == len(slots)  # two runs never share a GPU or an instance
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,MIG-55555555-aaaa-bbbb-cccc-000000000000")
    assert [s.gpu for s in detect_slots()] == ["1", "MIG-55555555-aaaa-bbbb-cccc-000000000000"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert [s.name for s in detect_slots()] == ["cpu0"]


def test_a_cpu_build_of_torch_on_a_gpu_machine_is_one_clear_error_before_any_run(tmp_path, gpus):
    pytest.importorskip("torch")
    task = copy_task(tmp_path)
    (task / "task.toml").write_text((task / "task.toml").read_text().replace("[metric]", 'requires = ["torch"]\n'
                                                                             "\n[metric]", 1))
    lab = tmp_path / "lab"
    cli("init", str(lab), "--task", str(task))
    done = cli("run", str(lab), "--max-experiments", "1", check=False)
    assert done.returncode == 1
    assert "this machine has 4 GPU slot(s) but" in done.stderr and "a CPU build of torch" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and Program(lab).ledger.experiments() == []
