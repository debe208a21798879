"""tinylm: data, the model hand-off and the val_bpb metric.

PROTECTED. Agents never edit this file; the lab checks its hash before every
run. train.py imports what it needs from here: `setup`, `train_batches`,
`save_model` and `report`. The metric itself is computed by harness.py, in a
process where no agent code runs, from the model train.py saved.

Corpus: the CPython standard library's .py sources of the interpreter that runs
this file (test directories, site-packages and the generated codec tables in
encodings/ left out), about 10.7 MB on CPython 3.11. Every machine with Python
has it, so nothing is downloaded. Validation comes from the SEALED packages
(curses, IDLE, lib2to3, tkinter and a few more that no training code imports):
the harness hides them from the training run (harness/sandbox.py: they are not
in its filesystem at all). But the same files lie in other Python
installations, which a run could find and memorize. So the scored text is a
PRIVATE copy of them: each file's own names, and the words of its comments and
strings, swapped among themselves by a permutation drawn from the lab's secret
key (harness/sealed.py `private_copy`; the key lives outside every sandbox).
It reads like Python with its vocabulary shuffled, and no file anywhere holds
it. The public text is scored too, on its first MEMORY_BYTES: a model far
better on it than on the private copy of the same bytes memorized a copy, and
the run is invalid. The bytes differ between Python patch releases and keys, so
the corpus hash is printed with every result and recorded: runs on different
corpora are never compared.

Tokens are raw bytes (vocabulary 256), so val_bpb is the mean negative
log-likelihood of the fixed validation bytes, in bits. It is measured on the
first EVAL_BYTES bytes of the validation split, whatever the model's context.

The time budget counts training, as autoresearch means it: from the end of the
first optimizer step (the sandbox, imports, data, the model and the first
step, where torch.compile compiles, are start-up) to `save_model`, whose
export is the hand-off. Start-up and hand-off have allowances of their own
(the task's startup_allowance and handoff_allowance); the harness kills a run
past the deadline of its phase. `time_left()` says how much of the budget
remains and `progress()` which fraction is spent.

torch is imported by the functions that need it, so the harness reads this
file before any training code runs without waiting for torch.

Run directly (`python prepare.py`) to check the corpus and print its hash.
"""

import hashlib
import json
import os
import sysconfig
import tomllib
from functools import lru_cache
from pathlib import Path

VOCAB_SIZE = 256
EVAL_BYTES = 65_536  # fixed number of validation bytes scored per run (of the private copy)
MEMORY_BYTES = 16_384  # bytes of the public text and of its private copy compared for memorization
MEMORIZED = 0.8  # a model whose bpb on the public text is below this fraction of its bpb on the copy memorized it
# validation: the standard-library packages task.toml seals (out of every run's and agent's sight)
SEALED = tuple(entry.removeprefix("{stdlib}/") for entry in
               tomllib.loads((Path(__file__).resolve().parent / "task.toml").read_text())["sealed"])

# The lab sets these for every run; defaults allow running train.py by hand.
TIME_BUDGET = float(os.environ.get("RESEARCHORG_BUDGET", "30"))
SEED = int(os.environ.get("RESEARCHORG_SEED", "42"))
THREADS = int(os.environ.get("RESEARCHORG_THREADS", "0"))  # 0: torch's default

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__"}


def time_left() -> float:
    """Seconds of the training budget left: all of it until the first optimizer step has finished (start-up,
    the first step and any compilation are not training); the harness kills a run that trains on past it."""
    from researchorg.harness import clock
    return clock.time_left(TIME_BUDGET)


def progress() -> float:
    """The fraction of the training budget spent, from 0 to 1 (for a schedule over the training time)."""
    from researchorg.harness import clock
    return clock.progress(TIME_BUDGET)


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


@lru_cache(maxsize=3)
def load_split(split: str):
    """The bytes of one split as a uint8 tensor: "train", the only one training sees; "val", the private copy
    of the sealed files that is scored; "val-public", the same files as they are, for the memorization check.
    The validation splits hold what scoring needs (EVAL_BYTES and a window more), files in order."""
    import torch
    if split == "train":
        data = bytearray()
        for path in split_files("train"):
            data.extend(path.read_bytes() + b"\n\n")
        return torch.frombuffer(data, dtype=torch.uint8)
    return torch.frombuffer(_validation()[split == "val-public"], dtype=torch.uint8)


@lru_cache(maxsize=1)
def _validation() -> tuple[bytearray, bytearray]:
    """(private copy, public text) of the sealed files, in order, until EVAL_BYTES and a window more of the copy:
    a file that does not parse, and so has no private copy, is left out of both."""
    from researchorg.harness.sealed import SEAL_KEY_ENV, private_copy
    key = os.environ.get(SEAL_KEY_ENV, "public: run through the lab for a private copy").encode()
    private, public = bytearray(), bytearray()
    for path in split_files("val"):
        text = path.read_bytes()
        copy = private_copy(text.decode("utf-8", errors="replace"), key, path.relative_to(_stdlib()).as_posix())
        if copy is None:
            continue
        private.extend(copy.encode() + b"\n\n")
        public.extend(text + b"\n\n")
        if len(private) > EVAL_BYTES + 4096:
            break
    return private, public


def warm_evaluator() -> str:
    """Load what the evaluation needs (torch, torch.export's loader, the splits) and return the corpus hash:
    the harness's evaluation box calls it while the guest starts, so that none of it waits until training is
    over."""
    import torch._dynamo  # noqa: F401  (torch.export.load imports it on first use: a second and more)
    import torch._export.serde.serialize  # noqa: F401
    return corpus_hash()


def corpus_hash() -> str:
    """What the scores depend on: the training bytes and the validation bytes (private copy and public text)."""
    digest = hashlib.sha256()
    for split in ("train", "val", "val-public"):
        digest.update(bytes(load_split(split).numpy()) + b"\0")
    return digest.hexdigest()[:16]


def setup() -> None:
    """Fix the seed and the thread count the lab chose for this run."""
    import torch

    from researchorg.harness import clock
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    clock.watch_optimizers()  # the budget counts from the first optimizer step (run by hand too)


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
    from researchorg.harness import clock
    clock.handing_over()  # training has ended: the export is not in the budget
    with torch.no_grad():
        exported = torch.export.export(model, (example,))
    torch.export.save(exported, artifact_dir() / "model.pt2")
    (artifact_dir() / "meta.json").write_text(json.dumps({"seq_len": seq_len}))
    clock.handed_over(["model.pt2", "meta.json"])  # the harness takes them now: what comes later is not the model


def report(**figures: float) -> None:
    """What train.py says about its own run (steps, tokens): recorded as confounds, never as the metric."""
    (artifact_dir() / "train.json").write_text(json.dumps(figures))


def evaluate_bpb(model, seq_len: int) -> float:
    """Bits per byte of `model` on the first EVAL_BYTES of the private copy (the harness's evaluation box only).

    The bytes are cut into windows of seq_len + 1 and scored in batches of
    EVAL_BATCH (the last one padded with repeats, not scored); every byte after
    the first of each window is scored.
    """
    import math
    nats = _window_nats(model, seq_len, "val", EVAL_BYTES)
    return sum(nats) / (len(nats) * seq_len * math.log(2))


def memorization(model, seq_len: int) -> tuple[dict, str | None]:
    """The model's bpb on the first MEMORY_BYTES of the public text and of its private copy, and why it
    memorized a copy of the validation files (None if it did not): far better on the text that lies on disks
    than on the same text with its words swapped, it learned the text, not the language."""
    import math
    windows = max(1, MEMORY_BYTES // seq_len)
    public = _window_nats(model, seq_len, "val-public", MEMORY_BYTES)
    private = _window_nats(model, seq_len, "val", EVAL_BYTES)[:windows]  # the metric's own pass, cached
    public, private = (sum(n) / (len(n) * seq_len * math.log(2)) for n in (public, private))
    figures = {"public_bpb": round(public, 4), "private_bpb": round(private, 4)}
    if public < MEMORIZED * private:
        return figures, (f"the saved model memorized a copy of the validation files: {public:.3f} bpb on their "
                         f"public text, {private:.3f} on the private copy the lab scores (honest models score them "
                         f"within a few percent)")
    return figures, None


_SCORED: dict = {}


def _window_nats(model, seq_len: int, split: str, nbytes: int) -> list[float]:
    """The nats of each window of seq_len + 1 bytes over the first `nbytes` of a validation split (each pass
    kept for the model it scored: the memorization check and the metric share the private copy's)."""
    import torch
    import torch.nn.functional as F
    key = (id(model), seq_len, split, nbytes)
    if key in _SCORED:
        return _SCORED[key]
    val = load_split(split)
    n_windows = max(1, nbytes // seq_len)
    windows = val[: n_windows * seq_len + 1].long()
    nats: list[float] = []
    with torch.no_grad():
        for first in range(0, n_windows, EVAL_BATCH):
            idx = torch.arange(first, min(first + EVAL_BATCH, n_windows))
            rows = (idx * seq_len).unsqueeze(1) + torch.arange(seq_len + 1)
            chunk = windows[rows]
            inputs = torch.cat([chunk[:, :-1], chunk[:1, :-1].expand(EVAL_BATCH - len(idx), -1)])
            logits = model(inputs)[: len(idx)].float()
            loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), chunk[:, 1:].reshape(-1), reduction="none")
            nats += loss.view(len(idx), seq_len).sum(dim=1).tolist()
    _SCORED[key] = nats
    return nats


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
