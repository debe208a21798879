"""tinylm harness: data, the fixed validation bytes and the val_bpb metric.

PROTECTED. Agents never edit this file; the lab checks its hash before every
run. train.py imports what it needs from here.

Corpus: the CPython standard library's .py sources of the interpreter that runs
this file (test directories, site-packages and the generated codec tables in
encodings/ left out), about 10.7 MB on CPython 3.11. Every machine with Python
has it, so nothing is downloaded. One file in 20, chosen by a hash of its
relative path, is validation. The bytes differ between Python patch releases,
so the corpus hash is printed with every result and recorded: runs on
different corpora are never compared.

Tokens are raw bytes (vocabulary 256), so val_bpb is the mean negative
log-likelihood of the fixed validation bytes, in bits. It is measured on the
first EVAL_BYTES bytes of the validation split, whatever the model's context.

Run directly (`python prepare.py`) to check the corpus and print its hash.
"""

import hashlib
import os
import resource
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256
EVAL_BYTES = 131_072  # fixed number of validation bytes scored per run
VAL_ONE_IN = 20  # one source file in 20 goes to validation

# The lab sets these for every run; defaults allow running train.py by hand.
TIME_BUDGET = float(os.environ.get("RESEARCHORG_BUDGET", "30"))
SEED = int(os.environ.get("RESEARCHORG_SEED", "42"))
THREADS = int(os.environ.get("RESEARCHORG_THREADS", "0"))  # 0: torch's default

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__"}


def _source_files() -> tuple[list[Path], Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return [p.relative_to(root) for p in found], root


def _is_validation(relpath: Path) -> bool:
    digest = hashlib.sha1(relpath.as_posix().encode()).digest()
    return int.from_bytes(digest[:4], "little") % VAL_ONE_IN == 0


@lru_cache(maxsize=1)
def load_corpus() -> tuple[torch.Tensor, torch.Tensor, str]:
    """Return (train bytes, validation bytes, corpus hash) as uint8 tensors."""
    relpaths, root = _source_files()
    train, val = bytearray(), bytearray()
    for rel in relpaths:
        data = (root / rel).read_bytes() + b"\n\n"
        (val if _is_validation(rel) else train).extend(data)
    corpus_hash = hashlib.sha256(bytes(train) + b"\0" + bytes(val)).hexdigest()[:16]
    as_tensor = lambda b: torch.frombuffer(bytearray(b), dtype=torch.uint8)  # noqa: E731
    return as_tensor(train), as_tensor(val), corpus_hash


def setup() -> None:
    """Fix the seed and the thread count the lab chose for this run."""
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)


def train_batches(batch_size: int, seq_len: int):
    """Yield (inputs, targets) int64 batches of random windows of the train split, forever."""
    train, _, _ = load_corpus()
    gen = torch.Generator().manual_seed(SEED)
    offsets = torch.arange(seq_len + 1)
    while True:
        starts = torch.randint(0, len(train) - seq_len - 1, (batch_size, 1), generator=gen)
        window = train[starts + offsets].long()
        yield window[:, :-1], window[:, 1:]


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, seq_len: int, batch_size: int = 32) -> float:
    """Bits per byte of `model` on the fixed validation bytes.

    `model(inputs)` must return logits of shape (batch, seq_len, 256). The
    EVAL_BYTES bytes are cut into windows of seq_len + 1; every byte after the
    first of each window is scored.
    """
    _, val, _ = load_corpus()
    n_windows = EVAL_BYTES // seq_len
    windows = val[: n_windows * seq_len + 1].long()
    was_training = model.training
    model.eval()
    total_nats, total_bytes = 0.0, 0
    for first in range(0, n_windows, batch_size):
        idx = torch.arange(first, min(first + batch_size, n_windows))
        rows = (idx * seq_len).unsqueeze(1) + torch.arange(seq_len + 1)
        chunk = windows[rows]
        logits = model(chunk[:, :-1]).float()
        loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), chunk[:, 1:].reshape(-1), reduction="sum")
        total_nats += loss.item()
        total_bytes += chunk[:, 1:].numel()
    model.train(was_training)
    return total_nats / total_bytes / torch.log(torch.tensor(2.0)).item()


def corpus_hash() -> str:
    return load_corpus()[2]


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CUDA: peak allocated), in MB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    train, val, digest = load_corpus()
    print(f"train_bytes:      {len(train)}")
    print(f"val_bytes:        {len(val)}")
    print(f"eval_bytes:       {EVAL_BYTES}")
    print(f"corpus_hash:      {digest}")
