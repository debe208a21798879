"""gpulm, the GPU task, in its tiny CPU configuration: the same prepare.py, train.py and harness, run for real.

`init` on a machine without a GPU writes the task's [cpu] table into the program; prepare.py writes parquet
shards from the offline corpus (the standard library here), trains a BPE tokenizer with rustbpe and tokenizes
the validation shard; runs train a GPT through the protected harness, which scores val_bpb itself.
"""

from __future__ import annotations

import pytest

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.world.slots import visible_gpus
from tests.conftest import NO_NOISE, SCRIPTS

for module in ("torch", "pyarrow", "rustbpe", "tiktoken"):
    pytest.importorskip(module)

VAL_SHARD = ("import glob\n"
             "_shards = sorted(glob.glob(os.path.expanduser('~/.cache/researchorg/gpulm/pysrc-*/shard_*.parquet')))\n"
             "print('read', len(open(_shards[-1], 'rb').read()), 'validation bytes')")


def _insert(before: str, code: str):
    def edit(ctx):
        text = ctx.read("train.py")
        assert before in text
        return {"train.py": text.replace(before, f"import os\n{code}\n{before}", 1)}
    return edit


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
@pytest.mark.slow
@pytest.mark.skipif(bool(visible_gpus()), reason="the tiny configuration is written where no GPU is visible")
def test_gpulm_tiny_trains_through_the_harness_and_hides_the_validation_shard(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))  # prepare.py's shards and tokenizer go to ~/.cache/researchorg/gpulm
    org = tmp_path / "org.toml"
    org.write_text('name = "gpulm-check"\n[[roles]]\nname = "researcher"\nbackend = "scripted"\n' + NO_NOISE)
    program = Program.init(tmp_path / "lab", "gpulm", org_file=org, budget=15)  # --budget wins over the table's 12
    assert "tiny CPU configuration (15 s budget" in program.notices[0], program.notices
    assert program.task.budget_seconds == 15 and program.task.cpu is None
    assert [k.name for k in program.task.knobs][:2] == ["DEPTH", "N_EMBD"]
    assert "VOCAB_SIZE = 512" in (program.root / "prepare.py").read_text()
    shards = sorted(home.glob(".cache/researchorg/gpulm/pysrc-*/shard_*.parquet"))
    assert len(shards) >= 2  # training shards, then the validation shard
    SCRIPTS["researcher"] = [("baseline", lambda ctx: {}),
                             ("reads the validation shard", _insert("device = setup()", VAL_SHARD))]
    Runtime(program, slots=detect_slots(1, 2)).run(Limits(max_experiments=2))
    found = {e.description: e for e in program.ledger.experiments()}
    baseline = found["baseline"]
    assert baseline.status == "keep", baseline.reason
    assert 1.0 < baseline.metric < 9.0  # bits per byte of a barely trained model of Python source
    assert baseline.summary["num_params"] > 0 and baseline.summary["steps"] >= 1  # it trained (how much: load)
    # the budget counts training only: start-up (imports, data, the first step) is recorded beside it
    assert baseline.summary["startup_seconds"] > 0 and "handoff_seconds" in baseline.summary
    assert baseline.summary["training_seconds"] <= 15 + 1 + 0.05 * 15
    assert baseline.summary["flops"] == 6 * baseline.summary["num_params"] * baseline.summary["tokens"]
    assert len(baseline.summary["corpus_hash"]) == 16 and baseline.summary["budget_seconds"] == 15
    assert "peak_vram_mb" not in baseline.summary  # a CPU run claims no GPU memory
    peeked = found["reads the validation shard"]
    assert peeked.status in ("invalid", "crash") and peeked.metric is None
    assert "shard_" in peeked.reason, peeked.reason
