"""tinylm: data, the model hand-off and the val_bpb metric.

PROTECTED. Agents never edit this file; the lab checks its hash before every
run. train.py imports what it needs from here: `setup`, `train_batches`,
`save_model` and `report`. The metric itself is computed by harness.py, in a
process where no agent code runs, from the model train.py saved.

Corpus: the CPython standard library's .py sources of the interpreter that runs
this file (test directories, site-packages and the generated codec tables in
encodings/ left out), about 10.7 MB on CPython 3.11. Every machine with Python
has it, so nothing is downloaded. Validation is the SEALED packages (IDLE,
lib2to3, tkinter and a few more that no training code imports, about 1.7 MB):
the harness hides them from the training run (harness/sandbox.py: they are not
in its filesystem at all), so a model cannot have memorized them, whatever
train.py reads. The bytes differ between Python patch releases, so the corpus
hash is printed with every result and recorded: runs on different corpora are
never compared.

Tokens are raw bytes (vocabulary 256), so val_bpb is the mean negative
log-likelihood of the fixed validation bytes, in bits. It is measured on the
first EVAL_BYTES bytes of the validation split, whatever the model's context.

The time budget is the training process's wall clock, from its start to its
exit (interpreter, imports, data, training and the hand-off): the harness kills
it at the deadline. `time_left()` says how much of it remains.

torch is imported by the functions that need it, so the harness reads this
file before any training code runs without waiting for torch.

Run directly (`python prepare.py`) to check the corpus and print its hash.
"""

import hashlib
import json
import os
import sysconfig
import time
import tomllib
from functools import lru_cache
from pathlib import Path

VOCAB_SIZE = 256
EVAL_BYTES = 65_536  # fixed number of validation bytes scored per run
# validation: the standard-library packages task.toml seals (out of every run's and agent's sight)
SEALED = tuple(entry.removeprefix("{stdlib}/") for entry in
               tomllib.loads((Path(__file__).resolve().parent / "task.toml").read_text())["sealed"])
HANDOFF_SECONDS = 1.0  # what save_model needs of the budget (torch.export), for train.py to keep in hand

# The lab sets these for every run; defaults allow running train.py by hand.
TIME_BUDGET = float(os.environ.get("RESEARCHORG_BUDGET", "30"))
DEADLINE = float(os.environ.get("RESEARCHORG_DEADLINE", time.monotonic() + TIME_BUDGET))
SEED = int(os.environ.get("RESEARCHORG_SEED", "42"))
THREADS = int(os.environ.get("RESEARCHORG_THREADS", "0"))  # 0: torch's default

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__"}


def time_left() -> float:
    """Seconds of the budget left: the harness kills the run shortly after the deadline."""
    return DEADLINE - time.monotonic()


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _source_files() -> tuple[list[Path], Path]:
    root = _stdlib()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return [p.relative_to(root) for p in found], root


def sealed_paths() -> list[Path]:
    """The directories of the validation split, which the harness hides from training."""
    return [_stdlib() / name for name in SEALED if (_stdlib() / name).is_dir()]


def _is_validation(relpath: Path) -> bool:
    return relpath.parts[0] in SEALED


def split_files(split: str) -> list[Path]:
    """The source files of the "train" or "val" split (absolute paths)."""
    relpaths, root = _source_files()
    return [root / rel for rel in relpaths if _is_validation(rel) == (split == "val")]


@lru_cache(maxsize=2)
def load_split(split: str):
    """The bytes of one split as a uint8 tensor. Only "train" exists for training: "val" is sealed from it."""
    import torch
    data = bytearray()
    for path in split_files(split):
        data.extend(path.read_bytes() + b"\n\n")
    return torch.frombuffer(data, dtype=torch.uint8)


def warm_evaluator() -> str:
    """Load what the evaluation needs (torch, torch.export's loader, both splits) and return the corpus hash:
    the harness calls it while the guest starts, so that none of it waits until training is over."""
    import torch._dynamo  # noqa: F401  (torch.export.load imports it on first use: a second and more)
    import torch._export.serde.serialize  # noqa: F401
    return corpus_hash()


def corpus_hash() -> str:
    train, val = load_split("train"), load_split("val")
    return hashlib.sha256(bytes(train.numpy()) + b"\0" + bytes(val.numpy())).hexdigest()[:16]


def setup() -> None:
    """Fix the seed and the thread count the lab chose for this run."""
    import torch
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)


def train_batches(batch_size: int, seq_len: int):
    """Yield (inputs, targets) int64 batches of random windows of the train split, forever."""
    import torch
    train = load_split("train")
    gen = torch.Generator().manual_seed(SEED)
    offsets = torch.arange(seq_len + 1)
    while True:
        starts = torch.randint(0, len(train) - seq_len - 1, (batch_size, 1), generator=gen)
        window = train[starts + offsets].long()
        yield window[:, :-1], window[:, 1:]


EVAL_BATCH = 32  # the saved model takes (EVAL_BATCH, seq_len) inputs


def artifact_dir() -> Path:
    """Where train.py saves its model: the harness's directory for this run, or ./artifact by hand."""
    path = Path(os.environ.get("RESEARCHORG_ARTIFACT", "artifact"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_model(model, seq_len: int) -> None:
    """Hand the trained model to the harness: exported (torch.export) as a graph of tensor operations, so
    that evaluating it runs no code of train.py. Its input is (EVAL_BATCH, seq_len) bytes; its output the
    logits (EVAL_BATCH, seq_len, 256)."""
    import torch
    model.eval()
    example = torch.zeros(EVAL_BATCH, seq_len, dtype=torch.long)
    with torch.no_grad():
        exported = torch.export.export(model, (example,))
    torch.export.save(exported, artifact_dir() / "model.pt2")
    (artifact_dir() / "meta.json").write_text(json.dumps({"seq_len": seq_len}))


def report(**figures: float) -> None:
    """What train.py says about its own run (steps, tokens): recorded as confounds, never as the metric."""
    (artifact_dir() / "train.json").write_text(json.dumps(figures))


def evaluate_bpb(model, seq_len: int) -> float:
    """Bits per byte of `model` on the fixed validation bytes (called by harness.py only).

    The EVAL_BYTES bytes are cut into windows of seq_len + 1 and scored in
    batches of EVAL_BATCH (the last one padded with repeats, not scored);
    every byte after the first of each window is scored.
    """
    import torch
    import torch.nn.functional as F
    val = load_split("val")
    n_windows = EVAL_BYTES // seq_len
    windows = val[: n_windows * seq_len + 1].long()
    total_nats, total_bytes = 0.0, 0
    with torch.no_grad():
        for first in range(0, n_windows, EVAL_BATCH):
            idx = torch.arange(first, min(first + EVAL_BATCH, n_windows))
            rows = (idx * seq_len).unsqueeze(1) + torch.arange(seq_len + 1)
            chunk = windows[rows]
            inputs = torch.cat([chunk[:, :-1], chunk[:1, :-1].expand(EVAL_BATCH - len(idx), -1)])
            logits = model(inputs)[: len(idx)].float()
            loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), chunk[:, 1:].reshape(-1), reduction="sum")
            total_nats += loss.item()
            total_bytes += chunk[:, 1:].numel()
    return total_nats / total_bytes / torch.log(torch.tensor(2.0)).item()


def looks_ahead(model, seq_len: int) -> bool:
    """Whether the model peeks at later bytes or other rows (researchorg.harness.lm.looks_ahead), on the first
    EVAL_BATCH x seq_len validation bytes."""
    from researchorg.harness.lm import looks_ahead as peeks
    inputs = load_split("val")[: EVAL_BATCH * seq_len].long().view(EVAL_BATCH, seq_len)
    return peeks(model, inputs, VOCAB_SIZE)


if __name__ == "__main__":
    print(f"train_bytes:      {len(load_split('train'))}")
    print(f"val_bytes:        {len(load_split('val'))}")
    print(f"eval_bytes:       {EVAL_BYTES}")
    print(f"corpus_hash:      {corpus_hash()}")
