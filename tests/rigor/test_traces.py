"""Reading real agents' results.tsv files: the corpus's variants, and one line for a file that cannot be read."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from researchorg.stats.traces import CRASH, DISCARD, KEEP, OTHER, TraceError, describe, read_corpus, read_trace

# the shared trace corpus: beside the repository, or where RESEARCHORG_TRACES says
CORPUS = Path(os.environ.get("RESEARCHORG_TRACES") or Path(__file__).resolve().parents[2].parent / "shared" / "traces")


def _write(tmp_path: Path, text: str | bytes, name: str = "results.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_autoresearch_format_and_the_figures_of_a_run(tmp_path):
    path = _write(tmp_path, "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                            "a1\t1.000000\t44.0\tkeep\tbaseline\n"
                            "b2\t0.990000\t44.0\tkeep\thalve the batch\n"
                            "c3\t0.995000\t44.0\tdiscard\twider\n"
                            "d4\t0.000000\t0.0\tcrash\tdepth 40 (OOM)\n"
                            "e5\t0.980000\t44.0\tkeep\tlower lr\n")
    trace = read_trace(path)
    assert trace.metric == "val_bpb" and not trace.higher
    assert [r.status for r in trace.experiments()] == [KEEP, DISCARD, CRASH, KEEP]
    assert trace.experiments()[2].value is None  # a crash's 0 on a lower-is-better metric is not a value
    assert trace.gains() == pytest.approx([0.01, 0.01 / 0.99])
    assert trace.total() == pytest.approx(0.02)
    figures = describe([trace])
    assert figures["keep_rate_1-20"] == 0.5 and figures["crash_rate"] == 0.25
    assert figures["total_median"] == pytest.approx(0.02) and math.isnan(figures["keep_rate_21-50"])


def test_the_variants_of_the_public_forks(tmp_path):
    # statuses in other words, the metric under another name and higher-is-better, nan and empty values,
    # comma-separated, and a first row without a value
    path = _write(tmp_path, "iteration,accuracy,decision,idea\n"
                            "0,,crash,broken start\n"
                            "1,0.80,accepted,baseline\n"
                            "2,nan,oom,bigger\n"
                            "3,0.82,Kept,more epochs\n"
                            "4,0.81,revert,less dropout\n"
                            "5,0.9,skipped,?\n", "log.csv")
    trace = read_trace(path)
    assert trace.higher and trace.metric == "accuracy" and trace.rows[0].value == 0.80
    assert [r.status for r in trace.experiments()] == [CRASH, KEEP, DISCARD, OTHER]
    assert trace.total() == pytest.approx(0.025)
    prefix = _write(tmp_path, "commit\tval_loss\tdescription\n"
                              "x\t2.0\t[keep] baseline\n"
                              "y\t1.9\tKEEP: warmup\n"
                              "z\t2.1\tdiscard - no warmup\n", "prefix.tsv")
    assert [r.status for r in read_trace(prefix).experiments()] == [KEEP, DISCARD]


@pytest.mark.parametrize("content, cause", [
    (b"commit\tval_bpb\tstatus\n\xff\xfe\t1.0\tkeep\n", "not UTF-8 text"),
    ("commit\tval_bpb\tstatus\n", "no data rows"),
    ("commit\tstatus\tdescription\na\tkeep\tbaseline\n", "no column of numbers for the metric"),
    ("commit\tval_bpb\tstatus\na\t\tcrash\nb\tnan\tdiscard\n", "no baseline"),
])
def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, content, cause):
    path = _write(tmp_path, content)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and cause in message and "\n" not in message
    with pytest.raises(TraceError, match="no column 'loss'"):
        read_trace(_write(tmp_path, "commit\tval_bpb\tstatus\na\t1.0\tkeep\n", "named.tsv"), metric="loss")


def test_a_folder_reads_every_file_it_can_and_says_which_it_cannot(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "index.tsv").write_text("run_id\trepo\tmetric\tdirection\tstatus_column\toriginal_task\n"
                                        "good\to/good\tval_bpb\tlower\tstatus\tyes\n"
                                        "bad\to/bad\tval_bpb\tlower\tstatus\tno\n"
                                        "gone\to/gone\tval_bpb\tlower\tstatus\tno\n")
    (tmp_path / "runs" / "good.tsv").write_text("commit\tval_bpb\tstatus\na\t1.0\tkeep\nb\t0.9\tkeep\n")
    (tmp_path / "runs" / "bad.tsv").write_bytes(b"\xff\xfe")
    corpus = read_corpus(tmp_path)
    assert [t.name for t in corpus.traces] == ["good"] and corpus.traces[0].original_task
    assert len(corpus.problems) == 2 and all("\n" not in line for line in corpus.problems)
    assert "bad.tsv: not UTF-8" in corpus.problems[0] and "gone.tsv: cannot read" in corpus.problems[1]


@pytest.mark.skipif(not (CORPUS / "index.tsv").is_file(), reason="the shared trace corpus is not beside the repo")
def test_every_file_of_the_shared_corpus_is_read():
    corpus = read_corpus(CORPUS)
    assert corpus.problems == [] and len(corpus.traces) == 72
    assert sum(len(t.experiments()) for t in corpus.traces) == 6488
    original = describe([t for t in corpus.traces if t.original_task])
    assert 0.30 < original["keep_rate_1-20"] < 0.33 and original["improving_keeps"] == 1.0
    assert 0.01 < original["total_median"] < 0.02  # the corpus's stats.md: 1.56%
