"""gpulm: a GPT pretrained for a fixed wall-clock budget on one GPU (autoresearch's setting).

EDITABLE. This is the file agents change: architecture, optimizer, schedule,
batch size and the training loop are all fair game. It trains for the time
budget, which counts from the end of its first optimizer step (`time_left()`:
imports, data, the model and torch.compile's compilation in that first step are
start-up, with an allowance of their own, as autoresearch leaves them out), and
hands the model over with `save_model` (not in the budget either); the
protected harness.py then computes val_bpb from the saved
model in a process where this code never runs. It runs in a sandbox that
holds its checkout, its artifact directory, the training shards and the
tokenizer (the validation shard is not there); it may not write outside its
run directory or reseed: the harness marks such runs invalid.

On a GPU it trains in bfloat16 under autocast and compiles the model; on a CPU
(the tiny configuration `researchorg init` writes there) it runs the same code
in float32, uncompiled. The constants below are the task's declared knobs (see
task.toml): offline agents such as the tuner change them and nothing else.
"""

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import Tokenizer, make_dataloader, progress, report, save_model, setup, time_left

# Hyperparameters ------------------------------------------------------------
DEPTH = 8  # transformer blocks
N_EMBD = 512  # model width
HEAD_DIM = 128
SEQ_LEN = 1024
DEVICE_BATCH = 32  # sequences per forward pass
TOTAL_BATCH = 262_144  # tokens per optimizer step (gradient accumulation makes up the rest)
LR = 3e-3  # peak AdamW learning rate of the matrices
EMBED_LR = 6e-3  # of the embedding and the output head
WEIGHT_DECAY = 0.1
WARMUP_FRAC = 0.03  # fraction of the training time spent warming up
WARMDOWN_FRAC = 0.4  # fraction at the end spent decaying the learning rate linearly to 0
SOFTCAP = 15.0  # logits are soft-capped at +-SOFTCAP
COMPILE = True  # torch.compile on a GPU (never on a CPU)
DTYPE = "bfloat16"  # autocast dtype on a GPU; "float32" turns autocast off


# Model ------------------------------------------------------------------------
def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, D)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, n_embd: int, head_dim: int):
        super().__init__()
        self.n_head = max(1, n_embd // head_dim)
        self.head_dim = n_embd // self.n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.out = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(rms_norm(x)).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = rotate(rms_norm(q), cos, sin), rotate(rms_norm(k), cos, sin)  # QK-norm, then RoPE
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.relu(self.fc(rms_norm(x))).square())  # ReLU^2 MLP


class GPT(nn.Module):
    def __init__(self, vocab_size: int, depth: int, n_embd: int, head_dim: int, seq_len: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, head_dim) for _ in range(depth))
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        dim = self.blocks[0].head_dim
        freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
        self.register_buffer("cos", angles.cos()[None, None], persistent=False)
        self.register_buffer("sin", angles.sin()[None, None], persistent=False)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.head.weight, std=0.001)
        for block in self.blocks:
            for linear in (block.qkv, block.fc):
                nn.init.uniform_(linear.weight, -(3 / n_embd) ** 0.5, (3 / n_embd) ** 0.5)
            nn.init.zeros_(block.proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.out.weight)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        T = idx.shape[1]
        cos, sin = self.cos[:, :, :T], self.sin[:, :, :T]
        x = rms_norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(rms_norm(x)).float()
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        if targets is None:
            return logits  # what save_model exports: (batch, seq_len, vocab) logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def lr_scale(spent: float) -> float:
    """Linear warmup, flat, then linear warmdown to 0, over the fraction of the training budget spent."""
    if spent < WARMUP_FRAC:
        return max(spent, 0.01) / WARMUP_FRAC  # the first step (before the clock starts) takes a small one
    if spent > 1 - WARMDOWN_FRAC:
        return max(0.0, (1 - spent) / WARMDOWN_FRAC)
    return 1.0


# Training ---------------------------------------------------------------------
device = setup()
tokenizer = Tokenizer.load()
model = GPT(tokenizer.vocab_size, DEPTH, N_EMBD, HEAD_DIM, SEQ_LEN).to(device)
num_params = sum(p.numel() for p in model.parameters())
matrices = [p for name, p in model.named_parameters() if p.dim() == 2 and name.startswith("blocks.")]
embeddings = [model.wte.weight, model.head.weight]
optimizer = torch.optim.AdamW([{"params": matrices, "lr": LR, "weight_decay": WEIGHT_DECAY},
                               {"params": embeddings, "lr": EMBED_LR, "weight_decay": 0.0}],
                              betas=(0.9, 0.95), eps=1e-10, fused=device == "cuda")
for group in optimizer.param_groups:
    group["peak_lr"] = group["lr"]
train_model = torch.compile(model) if COMPILE and device == "cuda" else model
autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda" and DTYPE == "bfloat16")
accumulate = max(1, TOTAL_BATCH // (DEVICE_BATCH * SEQ_LEN))
batches = make_dataloader(tokenizer, DEVICE_BATCH, SEQ_LEN, device)

step = 0
t_train = time.perf_counter()
while True:  # the budget counts from the end of the first step (compilation included) to the hand-off
    scale = lr_scale(progress())
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * scale
    for _ in range(accumulate):
        inputs, targets = next(batches)
        with autocast:
            loss = train_model(inputs, targets)
        (loss / accumulate).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    step += 1
    if not math.isfinite(loss_value := loss.item()):
        raise SystemExit(f"FAIL: loss is {loss_value} at step {step}")
    if step % 20 == 0:
        print(f"step {step:5d}  loss {loss_value:.4f}  lr x{scale:.2f}  {time.perf_counter() - t_train:6.1f}s",
              flush=True)
    if time_left() <= 0:
        break

# Hand-off: the protected harness evaluates the saved model (val_bpb) and measures the run itself.
save_model(model, SEQ_LEN)
tokens = step * accumulate * DEVICE_BATCH * SEQ_LEN
report(steps=step, tokens=tokens)
print(f"trained {step} steps, {tokens / 1e6:.1f}M tokens in {time.perf_counter() - t_train:.1f} s "
      f"({num_params / 1e6:.1f}M parameters)")
