"""What a handed-over model may contain: a torch.export graph of tensor operators, checked before anything runs.

The evaluation box (harness/evaluate.py) loads the graph a training run left and
checks every node of it, every subgraph included (the bodies of `cond`,
`while_loop`, `map`, grad-mode and autocast regions), against an allowlist:

- ATen and prims operators that compute tensors from tensors: the Core ATen
  opset (`torch.Tag.core`), and operators that decompose into it (a
  CompositeImplicitAutograd kernel, or an entry in torch's decomposition
  table), plus the fused attention kernels and the assertions on sizes and
  dtypes that export inserts;
- `operator.getitem` on an operator's results, and symbolic-size arithmetic;
- the higher-order operators that only structure other checked graphs.

Refused, with the operator named: anything in another namespace (a custom
operator registered by the training code, `torch.library` included), an
operator that reads or writes files or storage (`aten.from_file`), one that
returns uninitialized memory (`empty` and its kin: it could hold what the
evaluation process read before), one that prints, and one that writes its
inputs, its parameters or its buffers (state kept from one call to the next
would let a model behave while it is checked and peek afterwards). A node that
calls a Python function or a module is refused too: an exported program holds
none, so one that does was not made by torch.export.

Loading runs no pickle that could carry code: torch.export.load unpickles
weights where the archive asks for it, so here every torch.load is held to
weights only.
"""

from __future__ import annotations

import functools
import io
import operator
from typing import Any

# Operators of the allowed namespaces that are refused all the same, by name (the overload's packet).
_REFUSED = {
    "from_file": "reads and writes files",
    "_print": "prints",
    "empty": "returns uninitialized memory", "empty_like": "returns uninitialized memory",
    "empty_strided": "returns uninitialized memory", "new_empty": "returns uninitialized memory",
    "new_empty_strided": "returns uninitialized memory", "_empty_affine_quantized": "returns uninitialized memory",
    "_empty_per_channel_affine_quantized": "returns uninitialized memory", "empty_permuted": "returns uninitialized "
                                                                                         "memory",
    "set_": "swaps a tensor's storage", "resize_": "resizes a tensor's storage in place",
    "_resize_output_": "resizes a tensor's storage in place", "record_stream": "touches device streams",
}
# Fused kernels that torch.export keeps as they are on some devices; each computes attention, nothing else.
_FUSED = {"_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
          "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
          "_scaled_dot_product_fused_attention_overrideable"}
# Checks that raise or constrain symbolic sizes, and read sizes: nothing else.
_CHECKS = {"_assert_tensor_metadata", "_assert_async", "_assert_scalar", "_functional_assert_async",
           "_functional_assert_scalar", "sym_constrain_range", "sym_constrain_range_for_size", "sym_size",
           "sym_stride", "sym_numel", "sym_storage_offset"}
# Higher-order operators that only run other graphs (checked in their turn) under a condition or a mode.
_STRUCTURE = {"cond", "while_loop", "map_impl", "scan", "wrap_with_set_grad_enabled", "wrap_with_autocast",
              "invoke_subgraph"}
_SYMBOLIC = {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod,
             operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, operator.neg}


def load(data: bytes) -> Any:
    """The torch.export program in `data`, loaded with every pickle held to weights only."""
    import torch
    real_load = torch.load

    def weights_only(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    torch.load = weights_only
    try:
        return torch.export.load(io.BytesIO(data))
    finally:
        torch.load = real_load


def refused(program: Any) -> str | None:
    """Why the program may not run (the first operator refused, named), or None. A program whose in-place
    operators write only its own intermediate tensors is checked as torch functionalizes it."""
    problem = _first_refused(program.graph_module, in_place=True)
    if problem is not None or _first_refused(program.graph_module, in_place=False) is None:
        return problem
    functional = program.run_decompositions({})  # in-place ops made functional: what they write shows up
    kinds = {spec.kind.name for spec in functional.graph_signature.output_specs}
    if kinds & {"BUFFER_MUTATION", "PARAMETER_MUTATION", "USER_INPUT_MUTATION"}:
        return "changes its own state when called (it writes its buffers, parameters or inputs): a model may " \
               "not keep state from one call to the next"
    return _first_refused(functional.graph_module, in_place=False)


def functional(program: Any) -> Any:
    """The program as it runs: functionalized where it has in-place operators (`refused` said they write
    only its intermediates)."""
    if _first_refused(program.graph_module, in_place=False) is None:
        return program
    return program.run_decompositions({})


def _first_refused(root: Any, in_place: bool) -> str | None:
    """The first node of `root` or of a subgraph of it that is refused; in-place operators pass if `in_place`."""
    import torch
    for module in root.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op in ("call_module", "call_method"):
                return f"calls {node.op.removeprefix('call_')} {node.target!s}: not a graph torch.export made"
            if node.op == "call_function":
                problem = _operator_problem(node.target, in_place)
                if problem is not None:
                    return problem
    return None


def _operator_problem(target: Any, in_place: bool) -> str | None:
    import torch
    if target in _SYMBOLIC:
        return None
    if isinstance(target, torch._ops.HigherOrderOperator):
        if target.name() in _STRUCTURE:
            return None
        return f"uses the operator {target.name()}, which the evaluation does not run"
    if not isinstance(target, torch._ops.OpOverload):
        name = getattr(target, "__qualname__", None) or repr(target)
        return f"calls the Python function {str(name)[:80]}, which the evaluation does not run"
    name = f"{target.namespace}.{target._opname}.{target._overloadname}"
    if target.namespace not in ("aten", "prims"):
        return f"uses the operator {name}: only ATen's tensor operators run in the evaluation"
    if target._opname in _REFUSED:
        return f"uses the operator {name}, which {_REFUSED[target._opname]}"
    if target._schema.is_mutable:
        if in_place:
            return None
        return f"uses the operator {name}, which writes a tensor in place"
    if _pure(target):
        return None
    return f"uses the operator {name}, which is not one of the tensor operators the evaluation runs"


def _pure(op: Any) -> bool:
    """A tensor operator of the allowlist: Core ATen, one that decomposes into it, or a fused attention."""
    import torch
    if torch.Tag.core in op.tags or op._opname in _FUSED or op._opname in _CHECKS:
        return True
    if torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd"):
        return True
    return op in _decompositions()


@functools.cache
def _decompositions() -> Any:
    from torch._decomp import core_aten_decompositions
    return core_aten_decompositions()


def count_parameters(program: Any) -> int:
    """Parameters of an exported program, tied weights counted once."""
    seen, total = set(), 0
    for tensor in program.state_dict.values():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel()
    return total


SKETCH_SIZE = 256  # weights sampled into a model's sketch


def weights_sketch(program: Any) -> str:
    """A fingerprint of a model's weights: SKETCH_SIZE entries of its matrices (at positions fixed by their
    shapes, the same for every run of the same code), each less its matrix's mean, as base64 of int8. Two runs
    of the same code under different seeds start from unrelated random weights, so their sketches are
    unrelated (cosine near 0); code that picks its own seed hands over near-identical ones. Empty for a model
    without matrices."""
    import base64

    import torch
    seen, tensors = set(), []
    for _, tensor in sorted(program.state_dict.items()):
        if tensor.dim() >= 2 and tensor.is_floating_point() and tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            tensors.append(tensor.detach().float().reshape(-1))
    total = sum(t.numel() for t in tensors)
    if not total:
        return ""
    picks = torch.randint(0, total, (SKETCH_SIZE,), generator=torch.Generator().manual_seed(0)).sort().values
    values, start = [], 0
    for tensor in tensors:
        inside = picks[(picks >= start) & (picks < start + tensor.numel())] - start
        values.append(tensor.cpu()[inside] - tensor.mean().cpu())
        start += tensor.numel()
    sample = torch.cat(values)
    scale = sample.abs().max().clamp_min(1e-12)
    quantized = (sample / scale * 127).round().to(torch.int8)
    return base64.b64encode(quantized.numpy().tobytes()).decode()


def sketch_similarity(a: str, b: str) -> float | None:
    """The cosine of two weights sketches (1: the same weights), or None where they cannot be compared."""
    import base64
    import math
    try:
        x, y = base64.b64decode(a, validate=True), base64.b64decode(b, validate=True)
    except ValueError:
        return None
    if not x or len(x) != len(y):
        return None
    xs = [v - 256 if v > 127 else v for v in x]
    ys = [v - 256 if v > 127 else v for v in y]
    norm = math.sqrt(sum(v * v for v in xs) * sum(v * v for v in ys))
    return sum(p * q for p, q in zip(xs, ys, strict=True)) / norm if norm else None
