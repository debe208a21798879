"""The knobs `init --from` infers for an autoresearch repository keep to that repository's own constraints: every
value a tuner can draw passes train.py's asserts, and fractions stay within 0 to 1."""

from __future__ import annotations

import ast
import functools
import itertools
import math
import re
import shutil
from pathlib import Path

import pytest

from researchorg.task.adopt import _constants, infer
from researchorg.task.knobs import format_value
from researchorg.task.spec import Knob

FIXTURE = Path(__file__).parents[1] / "fixtures" / "autoresearch_cpu"

# karpathy/autoresearch's train.py (at 228791f), verbatim: its hyperparameters, and what checks them (the
# attention's asserts, build_model_config, the batch's assert), without torch; the one line added says what its
# rotary embedding needs of a head's dimension (apply_rotary_emb splits it in halves, and fails otherwise).
HYPERPARAMETERS = '''
# Model architecture
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # sliding window pattern: L=full, S=half context

# Optimization
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
UNEMBEDDING_LR = 0.004  # learning rate for lm_head (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
SCALAR_LR = 0.5         # learning rate for per-layer scalars (Adam)
WEIGHT_DECAY = 0.2      # cautious weight decay for Muon
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
FINAL_LR_FRAC = 0.0     # final LR as fraction of initial

# Model size
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128  # per-device batch size (reduce if OOM)
'''

CHECKS = '''
class GPTConfig:  # a dataclass there
    def __init__(self, n_layer=12, n_head=6, n_kv_head=6, n_embd=768):
        self.n_layer, self.n_head, self.n_kv_head, self.n_embd = n_layer, n_head, n_kv_head, n_embd


class CausalSelfAttention:
    def __init__(self, config, layer_idx):
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.n_embd = config.n_embd
        self.head_dim = self.n_embd // self.n_head
        assert self.n_embd % self.n_head == 0
        assert self.n_kv_head <= self.n_head and self.n_head % self.n_kv_head == 0
        assert self.head_dim % 2 == 0  # apply_rotary_emb: d = x.shape[3] // 2


def build_model_config(depth):
    base_dim = depth * ASPECT_RATIO
    model_dim = ((base_dim + HEAD_DIM - 1) // HEAD_DIM) * HEAD_DIM
    num_heads = model_dim // HEAD_DIM
    return GPTConfig(
        n_layer=depth, n_head=num_heads, n_kv_head=num_heads, n_embd=model_dim,
    )

config = build_model_config(DEPTH)
CausalSelfAttention(config, 0)

tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
assert TOTAL_BATCH_SIZE % tokens_per_fwdbwd == 0
grad_accum_steps = TOTAL_BATCH_SIZE // tokens_per_fwdbwd
'''

# the schedules' fractions: get_lr_multiplier divides by WARMDOWN_RATIO and reads the others as fractions of 1
FRACTIONS = '''
assert 0 <= WARMUP_RATIO <= 1 and 0 < WARMDOWN_RATIO <= 1 and 0 <= FINAL_LR_FRAC <= 1
'''

SUMMARY = '''
if __name__ == "__main__":
    print("---")
    print(f"val_bpb:          {1.0:.6f}")
    print(f"num_steps:        {0}")
'''

# nanoGPT's way: the width and the heads as constants, checked inside the attention's class
WIDTHS = '''
N_EMBD = 48
N_HEAD = 8
N_KV_HEAD = 2
DEVICE_BATCH_SIZE = 8


class Attention:
    def __init__(self, n_embd, n_head, n_kv_head):
        assert n_embd % n_head == 0 and n_head % n_kv_head == 0


Attention(N_EMBD, N_HEAD, N_KV_HEAD)
'''

VARIANTS = {
    "autoresearch": HYPERPARAMETERS + CHECKS,
    # the repository's batch at its tightest: TOTAL_BATCH_SIZE is DEVICE_BATCH_SIZE * MAX_SEQ_LEN (fixture: 64),
    # a literal (so a knob too): doubling the device batch, or halving the total, breaks the assert
    "tight batch": HYPERPARAMETERS.replace("TOTAL_BATCH_SIZE = 2**19", "TOTAL_BATCH_SIZE = 16384")
    .replace("DEVICE_BATCH_SIZE = 128", "DEVICE_BATCH_SIZE = 256") + CHECKS,
    "fractions asserted": HYPERPARAMETERS.replace("WARMUP_RATIO = 0.0", "WARMUP_RATIO = 0.3") + CHECKS + FRACTIONS,
    "widths": WIDTHS,
}


def _repository(tmp_path: Path, body: str) -> Path:
    """The fixture's autoresearch layout (its prepare.py: MAX_SEQ_LEN = 64) with `body` as train.py's."""
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE, repo)
    head = "from prepare import MAX_SEQ_LEN, TIME_BUDGET\n"
    (repo / "train.py").write_text(head + body + SUMMARY)
    return repo


def _draws(knobs: list[Knob], values: dict[str, object]) -> list[dict[str, object]]:
    """What a tuner can draw: every combination of the ints' and the choices' values (the floats as they are),
    and every corner of the floats' ranges (the rest as they are)."""
    def points(knob: Knob) -> list[object]:
        if knob.type == "categorical":
            return list(knob.choices)
        if knob.type == "int":
            return list(range(int(knob.low), int(knob.high) + 1))
        return [knob.low, knob.high]

    whole = [k for k in knobs if k.type != "float"]
    floats = [k for k in knobs if k.type == "float"]
    draws = []
    for group in (whole, floats):
        size = math.prod(len(points(k)) for k in group)
        assert size <= 100_000, f"{size} draws of {[k.name for k in group]}: more than a test tries"
        for combo in itertools.product(*(points(k) for k in group)):
            draws.append({**values, **dict(zip((k.name for k in group), combo, strict=True))})
    return draws


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_value_a_tuner_can_draw_passes_the_repository_asserts(tmp_path, variant):
    repo = _repository(tmp_path, VARIANTS[variant])
    adopted = infer(repo)
    knobs = [Knob(**k) for k in adopted.fields["knobs"]]
    text = (repo / "train.py").read_text()
    values = {k.name: ast.literal_eval(re.search(rf"(?m)^{k.name} = (\S+)", text).group(1)) for k in knobs}
    seed = {name: value for name, value in _constants(ast.parse((repo / "prepare.py").read_text())).items()
            if name in ("MAX_SEQ_LEN", "TIME_BUDGET")}
    code = text.replace("from prepare import MAX_SEQ_LEN, TIME_BUDGET\n", "")
    for knob in knobs:  # each knob's line reads the draw, as the tuner writes it (format_value)
        code = re.sub(rf"(?m)^{knob.name} = [^#\n]*", f"{knob.name} = DRAW[{knob.name!r}] ", code)
    module = compile(code, "train.py", "exec")
    draws = _draws(knobs, values)
    assert len(draws) > 50
    by_name = {k.name: k for k in knobs}
    as_written = functools.cache(lambda name, value: ast.literal_eval(format_value(by_name[name], value)))
    for draw in draws:
        written = {k.name: as_written(k.name, draw[k.name]) for k in knobs}
        exec(module, {**seed, "DRAW": written, "__name__": "check"})  # an assert fails: so does the test

    if variant == "autoresearch":
        assert by_name["HEAD_DIM"].choices == [64, 128, 256]  # even, and the width is rounded to it
        assert by_name["DEVICE_BATCH_SIZE"].choices == [64, 128, 256]  # each divides 2**19 / 64
        assert by_name["ASPECT_RATIO"].type == "int" and by_name["ASPECT_RATIO"].high == 128  # not a fraction
        assert by_name["DEPTH"].type == "int"
    if variant == "tight batch":
        assert 256 in by_name["DEVICE_BATCH_SIZE"].choices and len(by_name["DEVICE_BATCH_SIZE"].choices) >= 2
        assert 16384 in by_name["TOTAL_BATCH_SIZE"].choices
    if variant == "widths":
        assert {"N_EMBD", "N_HEAD", "N_KV_HEAD"} <= set(by_name)  # narrowed, not dropped
        assert all(len(by_name[n].choices) >= 2 for n in ("N_EMBD", "N_HEAD", "N_KV_HEAD"))


def test_fractions_stay_within_0_and_1_and_a_ratio_above_1_is_no_fraction(tmp_path):
    body = HYPERPARAMETERS + "DROPOUT = 0.1\nLABEL_SMOOTHING_PROB = 0.9\nWARMUP_FRAC = 1.0\nMLP_RATIO = 4.0\n"
    knobs = {k["name"]: k for k in infer(_repository(tmp_path, body)).fields["knobs"]}
    fractions = ["WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC", "DROPOUT", "LABEL_SMOOTHING_PROB", "WARMUP_FRAC"]
    for name in fractions:
        knob = knobs[name]
        assert knob["type"] == "float" and 0 <= knob["low"] < knob["high"] <= 1, knob
    assert knobs["WARMUP_RATIO"]["low"] == 0 and not knobs["WARMUP_RATIO"].get("log")  # 0, as it is, is a value
    assert knobs["WARMDOWN_RATIO"]["low"] > 0  # get_lr_multiplier divides by it
    assert knobs["MLP_RATIO"]["high"] == 16 and knobs["ASPECT_RATIO"] == {
        "name": "ASPECT_RATIO", "file": "train.py", "type": "int", "low": 32, "high": 128}


def test_the_fixture_sizes_are_choices_of_doublings(tmp_path):
    knobs = {k["name"]: k for k in infer(FIXTURE).fields["knobs"]}
    assert knobs["N_EMBD"]["choices"] == [32, 64, 128] and knobs["DEVICE_BATCH_SIZE"]["choices"] == [4, 8, 16]
    assert knobs["DEPTH"]["type"] == "int" and knobs["LEARNING_RATE"]["log"] is True


def test_a_repository_cannot_make_the_inference_build_huge_numbers(tmp_path):
    body = "A = 2**4000\nB = A**A\nC = 9**9**9**9\nassert C % DEVICE_BATCH_SIZE == 0\nDEVICE_BATCH_SIZE = 8\n"
    knobs = {k["name"]: k for k in infer(_repository(tmp_path, body)).fields["knobs"]}
    assert knobs["DEVICE_BATCH_SIZE"]["choices"] == [4, 8, 16]  # the assert cannot be told: not the repo's check
