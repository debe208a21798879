"""Confounds: what else changed beside the metric (parameters, tokens, FLOPs, steps, time, start-up, memory).

A lower loss from a model twice the size, or from training past the budget,
is not the same finding as a lower loss at equal cost. Every run's summary
carries these figures (tinylm's protected harness measures them; other tasks
print them), and every decision and report shows them next to the gain:
"-0.0200 val_bpb, +40% params, same tokens".
"""

from __future__ import annotations

from typing import Any

# (summary key, label): the canonical names a task's summary uses
CONFOUNDS = (("num_params", "params"), ("tokens", "tokens"), ("flops", "FLOPs"), ("steps", "steps"),
             ("training_seconds", "training time"), ("startup_seconds", "start-up"), ("peak_mem_mb", "memory"))
SAME = 0.02  # relative changes below 2% read as "same"


def compare(candidate: dict[str, Any], incumbent: dict[str, Any]) -> dict[str, dict[str, float]]:
    """For every confound both summaries carry: the candidate's value, the incumbent's and the ratio."""
    out = {}
    for key, _label in CONFOUNDS:
        a, b = candidate.get(key), incumbent.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            out[key] = {"value": float(a), "incumbent": float(b), "ratio": float(a) / b}
    return out


def describe(metric_name: str, delta: float | None, confounds: dict[str, dict[str, float]]) -> str:
    """One line: the metric's change, then each confound's ("+40% params, same tokens")."""
    parts = [f"{delta:+.4f} {metric_name}"] if delta is not None else []
    labels = dict(CONFOUNDS)
    for key, c in confounds.items():
        change = c["ratio"] - 1
        if abs(change) < SAME:
            parts.append(f"same {labels[key]}")
        else:
            parts.append(f"{change:+.0%} {labels[key]}")
    return ", ".join(parts)
