"""gpulm: the data, the BPE tokenizer, the model hand-off and the val_bpb metric.

PROTECTED. Agents never edit this file; the lab checks its hash before every
run. train.py imports what it needs from here (`setup`, `Tokenizer`,
`make_dataloader`, `save_model`, `report`, `time_left`); the metric itself is
computed by harness.py, in a process where no agent code runs, from the model
train.py saved.

Data: parquet shards with a `text` column named `shard_NNNNN.parquet`, the
last one by name the pinned validation shard: autoresearch's layout, read the
way it reads them (row group by row group, each document tokenized after a BOS
token). To train on your own shards (autoresearch's climbmix in
~/.cache/autoresearch/data, say), copy this task's directory, set SHARDS to
theirs (and add it to task.toml's `sealed`, so coding agents do not read the
validation shard either), and `researchorg init --task` the copy. By default
`python prepare.py` writes shards from a corpus every machine with this lab
has offline: the Python sources (.py, tests left out) of the standard
library and of the CORPUS_PACKAGES (PyTorch and the packages torch and
researchorg install with): with torch 2.13.0 on CPython 3.11, 95 MB of
training text in 3 shards (about 26M tokens), written and tokenized in about
13 s on 2 cores (`python prepare.py` prints the figures). The validation shard
holds the standard-library packages task.toml seals (IDLE, lib2to3, tkinter
and a few more, 1.7 MB), as in tinylm: the harness hides them and the
validation shard from the training run (they are not in its sandbox at all),
so no model can have memorized them.

The tokenizer: byte-level BPE of VOCAB_SIZE tokens (GPT-4's split pattern, 4
reserved special tokens, the first the BOS token) trained with rustbpe on the
training shards, encoded with tiktoken. The content hash of the shards and
the tokenizer is recorded with every result (`corpus_hash`), so results on
other data or another tokenizer can be told apart.

val_bpb: the model's mean negative log-likelihood of the first EVAL_TOKENS
validation tokens, in bits per byte of the text they encode (special tokens
count no bytes), so it does not depend on the vocabulary.

The time budget counts training, as autoresearch means it: from the end of the
first optimizer step (the sandbox, imports, data, the model and the first
step, where torch.compile compiles, are start-up) to `save_model`, whose
export is the hand-off. Start-up and hand-off have allowances of their own
(the task's startup_allowance and handoff_allowance); the harness kills a run
past the deadline of its phase. `time_left()` says how much of the budget
remains and `progress()` which fraction is spent.

torch, pyarrow and tiktoken are imported by the functions that need them, so
the harness reads this file before any training code runs without waiting.

On a machine without a GPU, `researchorg init` writes the task's tiny
configuration (task.toml's [cpu] table) into this file and train.py: a small
vocabulary, the standard library alone, a few seconds of budget.
"""

import base64
import hashlib
import json
import os
import sys
import sysconfig
import time
import tomllib
from functools import lru_cache
from pathlib import Path

VOCAB_SIZE = 8192  # BPE vocabulary, special tokens included
EVAL_TOKENS = 262_144  # validation tokens scored per run
EVAL_BATCH = 8  # the saved model takes (EVAL_BATCH, seq_len) inputs
TOKENIZER_CHARS = 200_000_000  # characters of the training shards the tokenizer is trained on (at most)
# beside the standard library: packages torch and researchorg install with them, so every lab has them
CORPUS_PACKAGES = ["torch", "sympy", "networkx", "mpmath", "jinja2", "numpy", "scipy", "matplotlib", "sqlalchemy",
                   "optuna", "pydantic", "rich", "typer", "yaml", "mcp"]
SHARDS = ""  # a directory of your own shards (the last is validation); empty: the offline corpus
CACHE = "~/.cache/researchorg/gpulm"  # where prepare.py writes shards and tokenizers
SHARD_CHARS = 32_000_000  # characters per shard written from the offline corpus

SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
                 r"""\s*[\r\n]|\s+(?!\S)|\s+""")
SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = SPECIAL_TOKENS[0]
# validation: the standard-library packages task.toml seals (out of every run's and agent's sight)
SEALED = tuple(entry.removeprefix("{stdlib}/") for entry in
               tomllib.loads((Path(__file__).resolve().parent / "task.toml").read_text())["sealed"]
               if entry.startswith("{stdlib}/"))

# The lab sets these for every run; defaults allow running train.py by hand.
TIME_BUDGET = float(os.environ.get("RESEARCHORG_BUDGET", "300"))
SEED = int(os.environ.get("RESEARCHORG_SEED", "42"))
THREADS = int(os.environ.get("RESEARCHORG_THREADS", "0"))  # 0: torch's default

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__", "testing"}
_DOC_CHARS = 200_000  # longer files (generated tables) are left out


def time_left() -> float:
    """Seconds of the training budget left: all of it until the first optimizer step has finished (start-up,
    the first step and any compilation are not training); the harness kills a run that trains on past it."""
    from researchorg.harness import clock
    return clock.time_left(TIME_BUDGET)


def progress() -> float:
    """The fraction of the training budget spent, from 0 to 1 (for a schedule over the training time)."""
    from researchorg.harness import clock
    return clock.progress(TIME_BUDGET)


# -- the data -------------------------------------------------------------------------------------------------

def _cache() -> Path:
    return Path(os.path.expanduser(CACHE))


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def sealed_paths() -> list[Path]:
    """What the harness hides from training: the sealed standard-library packages and the validation shard."""
    hidden = [_stdlib() / name for name in SEALED if (_stdlib() / name).is_dir()]
    return hidden + sorted({*shard_files()[-1:], shards_dir() / _corpus()["val"]})


def readable_paths() -> list[Path]:
    """Data outside the checkout that training reads: the shards (but the validation one) and the tokenizer."""
    return [shards_dir(), tokenizer_dir()]


def _packages() -> list[tuple[str, Path]]:
    """(name, directory) of each corpus package installed, found without importing it."""
    import importlib.util
    found = []
    for name in CORPUS_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found.append((name, Path(list(spec.submodule_search_locations)[0])))
    return found


def _corpus_key() -> str:
    """What the offline corpus depends on: the Python, the packages' versions and this file's settings."""
    from importlib.metadata import PackageNotFoundError, version

    def version_of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"
    parts = [sys.version, str(_stdlib()), *(f"{name}={version_of(name)}" for name, _ in _packages()),
             *SEALED, str(SHARD_CHARS), str(_DOC_CHARS)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def shards_dir() -> Path:
    """The directory of the shards runs read: SHARDS, or the offline corpus's."""
    if SHARDS:
        return Path(os.path.expanduser(SHARDS))
    return _cache() / f"pysrc-{_corpus_key()}"


def shard_files() -> list[Path]:
    """The shards, sorted by name; the last is the validation shard."""
    folder = shards_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("shard_") and p.suffix == ".parquet")


def _sources(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return found


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if 0 < len(text) <= _DOC_CHARS else None


def write_offline_shards() -> Path:
    """Write the offline corpus as shards (once per corpus key): training documents, then the validation
    shard (the sealed standard-library packages) last."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder = shards_dir()
    if (folder / "complete").is_file():
        return folder
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    stdlib = _stdlib()
    train, val = [], []
    for path in _sources(stdlib):
        (val if path.relative_to(stdlib).parts[0] in SEALED else train).append(path)
    for _, root in _packages():
        train += _sources(root)
    shards: list[list[str]] = [[]]
    chars = 0
    for path in train:
        text = _read(path)
        if text is None:
            continue
        if chars >= SHARD_CHARS:
            shards.append([])
            chars = 0
        shards[-1].append(text)
        chars += len(text)
    shards.append([t for t in map(_read, val) if t is not None])
    for index, docs in enumerate(shards):
        table = pa.table({"text": pa.array(docs, type=pa.string())})
        pq.write_table(table, staging / f"shard_{index:05d}.parquet", row_group_size=1024)
    (staging / "complete").write_text("")
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder


def _documents(path: Path, batch: int = 256):
    """The documents of one shard, `batch` at a time, row group by row group."""
    import pyarrow.parquet as pq
    shard = pq.ParquetFile(path)
    for group in range(shard.num_row_groups):
        texts = shard.read_row_group(group, columns=["text"]).column("text").to_pylist()
        for first in range(0, len(texts), batch):
            yield texts[first:first + batch]


def _shards_fingerprint() -> str:
    """Names, sizes and times of the shards (their content hash is in corpus.json): what the tokenizer was
    trained on. Only prepare.py and the harness see every shard; a training run sees no validation shard."""
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in shard_files()]
    return hashlib.sha256("\n".join([str(shards_dir().resolve()), *parts]).encode()).hexdigest()[:12]


def tokenizer_dir() -> Path:
    """The tokenizer of these shards and settings (named by where the shards are, so a training run, which
    cannot list the validation shard, finds it too)."""
    where = hashlib.sha256(str(shards_dir().resolve()).encode()).hexdigest()[:12]
    return _cache() / f"tokenizer-{VOCAB_SIZE}-{TOKENIZER_CHARS}-{where}"


@lru_cache(maxsize=1)
def _corpus() -> dict:
    """corpus.json: the training shards' names, the validation shard's, the split pattern and the hash."""
    return json.loads((tokenizer_dir() / "corpus.json").read_text())


def train_tokenizer() -> Path:
    """Train the BPE tokenizer on the training shards (once per shards and vocabulary) and record the corpus
    hash beside it."""
    import rustbpe
    folder = tokenizer_dir()
    fingerprint = _shards_fingerprint()
    if (folder / "corpus.json").is_file() and json.loads((folder / "corpus.json").read_text()).get(
            "fingerprint") == fingerprint:
        return folder
    shards = shard_files()
    if len(shards) < 2:
        raise SystemExit(f"gpulm: {shards_dir()} needs at least 2 shards (training, then the validation shard "
                         f"last); found {len(shards)}")

    def texts():
        budget = TOKENIZER_CHARS
        for path in shards[:-1]:
            for docs in _documents(path):
                for doc in docs:
                    yield doc
                    budget -= len(doc)
                    if budget <= 0:
                        return
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(texts(), VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = sorted(((bytes(token), rank) for token, rank in trainer.get_mergeable_ranks()), key=lambda r: r[1])
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "ranks.tiktoken").write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks))
    digest = hashlib.sha256()
    for path in shards:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    digest.update((staging / "ranks.tiktoken").read_bytes())
    (staging / "corpus.json").write_text(json.dumps({
        "shards": str(shards_dir()), "train": [p.name for p in shards[:-1]], "val": shards[-1].name,
        "fingerprint": fingerprint, "pattern": trainer.get_pattern(), "corpus_hash": digest.hexdigest()[:16]}))
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder


def corpus_hash() -> str:
    """The content hash of the shards and the tokenizer, recorded with every result."""
    return _corpus()["corpus_hash"]


# -- the tokenizer ----------------------------------------------------------------------------------------------

class Tokenizer:
    """The trained BPE tokenizer (tiktoken). `Tokenizer.load()` in train.py."""

    def __init__(self, encoding):
        self.enc = encoding
        self.bos_token_id = encoding.encode_single_token(BOS_TOKEN)

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls) -> "Tokenizer":
        import tiktoken
        folder = tokenizer_dir()
        ranks = {}
        for line in (folder / "ranks.tiktoken").read_text().splitlines():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        meta = _corpus()
        special = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
        return cls(tiktoken.Encoding(name="gpulm", pat_str=meta["pattern"], mergeable_ranks=ranks,
                                     special_tokens=special))

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def encode_documents(self, docs: list[str]) -> list[list[int]]:
        """Each document's tokens, after a BOS token."""
        return [[self.bos_token_id, *ids] for ids in self.enc.encode_ordinary_batch(docs, num_threads=THREADS or 8)]

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def token_bytes(self):
        """The number of bytes of text each token stands for (0 for the special tokens), as a tensor."""
        import torch
        special = set(self.enc.special_tokens_set)
        return torch.tensor([0 if self.enc.decode([i]) in special else len(self.enc.decode_single_token_bytes(i))
                             for i in range(self.enc.n_vocab)], dtype=torch.int32)


def _token_stream(paths: list[Path], tokenizer: Tokenizer, loop: bool):
    """Tokens of the shards' documents, each after BOS, end to end, as lists."""
    while True:
        for path in paths:
            for docs in _documents(path):
                yield from tokenizer.encode_documents(docs)
        if not loop:
            return


def make_dataloader(tokenizer: Tokenizer, batch_size: int, seq_len: int, device: str = "cpu"):
    """(inputs, targets) int64 batches of (batch_size, seq_len) from the training shards, forever: their
    documents tokenized as read, packed end to end, each row a window of seq_len + 1 tokens. The order of
    the training shards is shuffled by the run's seed."""
    import random

    import torch
    shards = [shards_dir() / name for name in _corpus()["train"]]
    random.Random(SEED).shuffle(shards)
    stream = _token_stream(shards, tokenizer, loop=True)
    need = batch_size * (seq_len + 1)
    pending: list[int] = []
    pinned = device.startswith("cuda")
    while True:
        while len(pending) < need:
            pending.extend(next(stream))
        chunk = torch.tensor(pending[:need], dtype=torch.long).view(batch_size, seq_len + 1)
        del pending[:need]
        if pinned:
            chunk = chunk.pin_memory().to(device, non_blocking=True)
        yield chunk[:, :-1], chunk[:, 1:]


# -- the run ----------------------------------------------------------------------------------------------------

def setup() -> str:
    """Fix the seed and the thread count the lab chose for this run; return the device to train on."""
    import torch

    from researchorg.harness import clock
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    clock.watch_optimizers()  # the budget counts from the first optimizer step (run by hand too)
    torch.set_float32_matmul_precision("high")
    return "cuda" if torch.cuda.is_available() else "cpu"


def artifact_dir() -> Path:
    """Where train.py saves its model: the harness's directory for this run, or ./artifact by hand."""
    path = Path(os.environ.get("RESEARCHORG_ARTIFACT", "artifact"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_model(model, seq_len: int) -> None:
    """Hand the trained model to the harness: exported (torch.export) as a graph of tensor operations, so
    that evaluating it runs no code of train.py. Its input is (EVAL_BATCH, seq_len) token ids on the model's
    device; its output the logits (EVAL_BATCH, seq_len, VOCAB_SIZE). Pass the model itself, not what
    torch.compile returned."""
    import torch
    model = getattr(model, "_orig_mod", model)
    model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(EVAL_BATCH, seq_len, dtype=torch.long, device=device)
    from researchorg.harness import clock
    clock.handing_over()  # training has ended: the export is not in the budget
    with torch.no_grad():
        exported = torch.export.export(model, (example,))
    torch.export.save(exported, artifact_dir() / "model.pt2")
    (artifact_dir() / "meta.json").write_text(json.dumps({"seq_len": seq_len}))
    clock.handed_over(["model.pt2", "meta.json"])  # the harness takes them now: what comes later is not the model


def report(**figures: float) -> None:
    """What train.py says about its own run (steps, tokens): recorded as confounds, never as the metric. On a
    GPU the peak memory torch allocated is added."""
    import torch
    if torch.cuda.is_available():
        figures.setdefault("peak_vram_mb", torch.cuda.max_memory_allocated() / 2**20)
    (artifact_dir() / "train.json").write_text(json.dumps(figures))


# -- the metric (harness.py only) --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def val_tokens():
    """The first EVAL_TOKENS + 1 tokens of the validation shard (its documents, each after BOS, end to end)."""
    import torch
    tokens: list[int] = []
    for ids in _token_stream([shards_dir() / _corpus()["val"]], Tokenizer.load(), loop=False):
        tokens.extend(ids)
        if len(tokens) > EVAL_TOKENS:
            return torch.tensor(tokens[:EVAL_TOKENS + 1], dtype=torch.long)
    raise ValueError(f"the validation shard has {len(tokens)} tokens; EVAL_TOKENS needs {EVAL_TOKENS + 1}")


def warm_evaluator() -> str:
    """Load what the evaluation needs (torch.export's loader, the tokenizer, the validation tokens) and return
    the corpus hash: the harness calls it while the guest trains."""
    import torch._dynamo  # noqa: F401  (torch.export.load imports it on first use)
    import torch._export.serde.serialize  # noqa: F401
    if _corpus()["fingerprint"] != _shards_fingerprint():
        raise SystemExit(f"gpulm: the shards in {shards_dir()} changed since the tokenizer was trained on them: "
                         "run `researchorg prepare` on the program")
    val_tokens()
    return corpus_hash()


def looks_ahead(model, seq_len: int) -> bool:
    """Whether the model peeks at later tokens or other rows (researchorg.harness.lm.looks_ahead), on the first
    EVAL_BATCH x seq_len validation tokens."""
    from researchorg.harness.lm import device_of
    from researchorg.harness.lm import looks_ahead as peeks
    tokens = val_tokens()
    if len(tokens) < EVAL_BATCH * seq_len:
        raise ValueError(f"seq_len {seq_len} needs {EVAL_BATCH * seq_len} validation tokens; EVAL_TOKENS is "
                         f"{EVAL_TOKENS}")
    inputs = tokens[: EVAL_BATCH * seq_len].view(EVAL_BATCH, seq_len).to(device_of(model))
    return peeks(model, inputs, VOCAB_SIZE)


def evaluate_bpb(model, seq_len: int) -> float:
    """Bits per byte of `model` on the first EVAL_TOKENS validation tokens (called by harness.py only).

    The tokens are cut into windows of seq_len + 1 and scored in batches of EVAL_BATCH (the last one padded
    with repeats, not scored); every token after the first of each window is scored, and the nats are
    divided by the bytes the scored tokens stand for.
    """
    import math

    import torch
    import torch.nn.functional as F

    from researchorg.harness.lm import device_of
    device = device_of(model)
    tokens = val_tokens().to(device)
    token_bytes = Tokenizer.load().token_bytes().to(device)
    n_windows = EVAL_TOKENS // seq_len
    if n_windows < 1:
        raise ValueError(f"seq_len {seq_len} is longer than EVAL_TOKENS ({EVAL_TOKENS})")
    total_nats, total_bytes = 0.0, 0
    with torch.no_grad():
        for first in range(0, n_windows, EVAL_BATCH):
            idx = torch.arange(first, min(first + EVAL_BATCH, n_windows), device=device)
            rows = (idx * seq_len).unsqueeze(1) + torch.arange(seq_len + 1, device=device)
            chunk = tokens[rows]
            inputs = torch.cat([chunk[:, :-1], chunk[:1, :-1].expand(EVAL_BATCH - len(idx), -1)])
            logits = model(inputs)[: len(idx)].float()
            targets = chunk[:, 1:].reshape(-1)
            nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="none")
            nbytes = token_bytes[targets]
            total_nats += (nats * (nbytes > 0)).sum().item()
            total_bytes += int(nbytes.sum().item())
    return total_nats / (math.log(2) * total_bytes)


if __name__ == "__main__":
    t0 = time.perf_counter()
    if not SHARDS:
        write_offline_shards()
    shards = shard_files()
    if len(shards) < 2:
        raise SystemExit(f"gpulm: {shards_dir()} needs at least 2 shards (training, then the validation shard "
                         f"last); found {len(shards)}")
    train_tokenizer()
    tokens = val_tokens()
    print(f"shards:           {len(shards)} in {shards_dir()} (validation: {shards[-1].name})")
    print(f"shard_mb:         {sum(p.stat().st_size for p in shards) / 1e6:.1f}")
    print(f"vocab_size:       {Tokenizer.load().vocab_size}")
    print(f"eval_tokens:      {len(tokens) - 1}")
    print(f"corpus_hash:      {corpus_hash()}")
    print(f"prepare_seconds:  {time.perf_counter() - t0:.1f}")
