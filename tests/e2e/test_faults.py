"""Faults of the machine: a disk that fills up during a run, a read-only program directory.

Each is one clear error line (no traceback), and what was recorded stays
readable. The program lives on a small tmpfs, or behind a read-only bind mount,
in a mount namespace of the test's own (`unshare`), so nothing of the machine
is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ACCURACY_TASK


def _in_mount_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    probe = subprocess.run(["unshare", *user, "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    (tmp_path / "script.sh").write_text(f"set -u\nR='{sys.executable} -m researchorg'\n{script}")
    return subprocess.run(["unshare", *user, "--mount", "--propagation", "private", "bash",
                           str(tmp_path / "script.sh")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_disk_that_fills_during_a_run_is_one_error_and_loses_nothing(tmp_path):
    task = tmp_path / "task"
    shutil.copytree(ACCURACY_TASK, task)
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = _in_mount_namespace(f"""
mount -t tmpfs -o size=8m tmpfs {disk}
$R init {disk}/prog --task {task} >/dev/null
(for i in $(seq 1200); do  # the disk fills once two runs are recorded (not after a fixed time: load varies)
   [ -f {disk}/prog/results.tsv ] && [ "$(wc -l < {disk}/prog/results.tsv)" -ge 3 ] && break; sleep 0.1; done
 dd if=/dev/zero of={disk}/fill bs=64k 2>/dev/null) &
$R run {disk}/prog --max-experiments 60 > {tmp_path}/full.out 2>&1
echo "full=$?"
wait
$R results {disk}/prog > {tmp_path}/results.out 2>&1
echo "results=$?"
rm {disk}/fill
$R run {disk}/prog --max-experiments $(( $(wc -l < {tmp_path}/results.out) + 1 )) > {tmp_path}/resumed.out 2>&1
echo "resumed=$?"
$R results {disk}/prog > {tmp_path}/after.out 2>&1
""", tmp_path)
    full = (tmp_path / "full.out").read_text()
    assert "full=1" in proc.stdout and "results=0" in proc.stdout and "resumed=0" in proc.stdout, proc.stdout + \
        proc.stderr + full
    assert "Traceback" not in full and full.strip().splitlines()[-1].startswith("error: ")
    assert any(word in full.lower() for word in ("disk is full", "diskspace", "no space left")), full
    before = (tmp_path / "results.out").read_text().strip().splitlines()
    after = (tmp_path / "after.out").read_text().strip().splitlines()
    assert len(before) >= 3 and after[:len(before)] == before  # what was recorded stays, as it was
    assert len(after) > len(before)  # and the run resumes once it can write


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_read_only_program_directory_is_one_error_and_stays_readable(tmp_path):
    task = tmp_path / "task"
    shutil.copytree(ACCURACY_TASK, task)
    prog = tmp_path / "prog"
    proc = _in_mount_namespace(f"""
$R init {prog} --task {task} >/dev/null
$R run {prog} --max-experiments 3 >/dev/null 2>&1 || exit 11
mount --bind {prog} {prog} && mount -o remount,bind,ro {prog}
$R run {prog} --max-experiments 2 > {tmp_path}/ro.out 2>&1
echo "ro=$?"
$R status {prog} > {tmp_path}/status.out 2>&1
echo "status=$?"
$R results {prog} > {tmp_path}/results.out 2>&1
echo "results=$?"
""", tmp_path)
    assert "ro=1" in proc.stdout and "status=0" in proc.stdout and "results=0" in proc.stdout, proc.stdout + \
        proc.stderr
    ro = (tmp_path / "ro.out").read_text()
    assert ro.strip().splitlines() == [f"error: cannot run: {prog}/.researchorg is read-only; what is recorded "
                                       "stays readable (status, results)"]
    assert len((tmp_path / "results.out").read_text().strip().splitlines()) == 4
    assert "3 (" in (tmp_path / "status.out").read_text()
