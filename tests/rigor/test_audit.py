"""`researchorg audit` on real agents' results.tsv files: a result or one line for every file of the corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from researchorg.stats.audit import audit
from researchorg.stats.traces import read_trace

# the shared trace corpus: beside the repository, or where RESEARCHORG_TRACES says
CORPUS = Path(os.environ.get("RESEARCHORG_TRACES") or Path(__file__).resolve().parents[2].parent / "shared" / "traces")
RUN = ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
       "a\t1.0000\t1\tkeep\tbaseline\n"
       "b\t0.9900\t1\tkeep\ta real gain (33 sigmas)\n"
       "c\t0.9899\t1\tkeep\twithin noise\n"
       "d\t0.9950\t1\tdiscard\tworse\n"
       "d\t0.9952\t1\tdiscard\tthe same code again\n")


def test_a_keep_within_noise_is_doubted_and_a_large_one_is_not(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(RUN)
    result = audit(read_trace(path), 0.0003, "given")
    real, noise = result.keeps
    assert real.p_real > 0.99 and abs(real.expected - 0.01) < 0.001
    assert 0.3 < noise.p_real < 0.7 and abs(noise.expected) < noise.claimed  # shrunk toward what ideas gain
    assert result.claimed_total == pytest.approx(0.0101)
    low, high = result.likely_interval
    assert low < result.likely_total < high and result.rerun_first[0] == noise.row


def _audit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "researchorg", "audit", *args], capture_output=True, text=True)


def test_the_command_prints_a_table_or_json_and_estimates_the_noise_from_code_run_twice(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(RUN)
    shown = _audit(str(path))
    assert shown.returncode == 0, shown.stderr
    assert "estimated from code measured more than once" in shown.stdout and "likely true" in shown.stdout
    data = json.loads(_audit(str(path), "--sigma", "0.03%", "--format", "json").stdout)
    assert data[0]["sigma"] == pytest.approx(0.0003) and len(data[0]["keeps"]) == 2
    alone = tmp_path / "alone.tsv"
    alone.write_text(RUN.replace("d\t0.9952\t1\tdiscard\tthe same code again\n", ""))
    broken = tmp_path / "broken.tsv"
    broken.write_bytes(b"commit\tval_bpb\n\xff\n")
    failed = _audit(str(path), str(alone), str(broken), "--format", "json")
    assert failed.returncode == 1 and len(json.loads(failed.stdout)) == 1  # the good file is audited all the same
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 2 and "give it with --sigma" in lines[0] and "not UTF-8" in lines[1]
    assert "Traceback" not in failed.stderr


@pytest.mark.skipif(not (CORPUS / "index.tsv").is_file(), reason="the shared trace corpus is not beside the repo")
def test_every_file_of_the_shared_corpus_gives_a_result_or_one_line():
    done = _audit(str(CORPUS), "--sigma", "0.03%", "--format", "json")
    audited = json.loads(done.stdout)
    problems = done.stderr.strip().splitlines()
    assert len(audited) + len(problems) == 72 and len(audited) >= 70
    assert all(line.startswith("error: ") and "Traceback" not in line for line in problems)
    karpathy = next(a for a in audited if a["name"] == "karpathy__autoresearch__exp-H100-mar8__results")
    assert karpathy["claimed_total"] == pytest.approx(0.0283, abs=1e-4)
    assert 0 < karpathy["likely_total"] < karpathy["claimed_total"]  # shrunk: some keeps rest on noise
