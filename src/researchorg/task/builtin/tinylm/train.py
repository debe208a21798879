"""tinylm: a byte-level GPT trained for a fixed wall-clock budget on the CPU.

EDITABLE. This is the file agents change: model, optimizer, hyperparameters
and training loop are all fair game. It trains for the time budget, which
counts from the end of its first optimizer step (`time_left()`; imports, data
and the model's construction are start-up, with an allowance of their own),
and hands the model over with `save_model` (not in the budget either); the protected
harness.py then computes val_bpb from the saved model, in a process where this
code never runs. It runs in a sandbox that holds only its checkout, its
artifact directory and the system (the validation split is not there); it may
not write outside its run directory or reseed: the harness watches and marks
such runs invalid.

The constants below are the task's declared knobs (see task.toml): offline
agents such as the tuner change them and nothing else.
"""

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import progress, report, save_model, setup, time_left, train_batches

# Hyperparameters ------------------------------------------------------------
N_LAYER = 4
N_EMBD = 128
HEAD_DIM = 32
SEQ_LEN = 128
BATCH_SIZE = 8
LR = 1.5e-3
WEIGHT_DECAY = 0.1
WARMUP_FRAC = 0.05  # fraction of the time budget spent warming up the learning rate
DTYPE = "float32"  # "bfloat16" trains under autocast


# Model ------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, n_embd: int, head_dim: int):
        super().__init__()
        self.n_head = max(1, n_embd // head_dim)
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, n_layer: int, n_embd: int, head_dim: int, seq_len: int):
        super().__init__()
        self.tok = nn.Embedding(256, n_embd)
        self.pos = nn.Embedding(seq_len, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, head_dim) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, 256, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def lr_at(spent: float) -> float:
    """Linear warmup, then cosine decay to 10%, over the fraction of the training budget spent."""
    if spent < WARMUP_FRAC:
        return LR * max(spent, 0.01) / WARMUP_FRAC  # the first step (before the clock starts) takes a small one
    decay = (spent - WARMUP_FRAC) / (1 - WARMUP_FRAC)
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(decay, 1.0))))


# Training ---------------------------------------------------------------------
setup()
model = GPT(N_LAYER, N_EMBD, HEAD_DIM, SEQ_LEN)
num_params = sum(p.numel() for p in model.parameters())
optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY)
autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=DTYPE == "bfloat16")
batches = train_batches(BATCH_SIZE, SEQ_LEN)

step = 0
t_train = time.perf_counter()
while True:  # the budget counts from the end of the first step to the hand-off: time_left()
    for group in optimizer.param_groups:
        group["lr"] = lr_at(progress())
    inputs, targets = next(batches)
    with autocast:
        logits = model(inputs)
    loss = F.cross_entropy(logits.float().view(-1, 256), targets.reshape(-1))
    if not math.isfinite(loss.item()):
        raise SystemExit(f"FAIL: loss is {loss.item()} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    step += 1
    if step % 100 == 0:
        print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - t_train:5.1f}s", flush=True)
    if time_left() <= 0:
        break

# Hand-off: the protected harness evaluates the saved model (val_bpb) and measures the run itself.
save_model(model, SEQ_LEN)
report(steps=step, tokens=step * BATCH_SIZE * SEQ_LEN)
print(f"trained {step} steps in {time.perf_counter() - t_train:.1f} s ({num_params / 1e6:.3f}M parameters)")
