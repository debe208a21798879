"""The progress plot, after autoresearch's progress.png.

Experiment number on x, metric on y. The title leads with the program's
result, as every report does (report/summary.py: main where the org merges).
Every run with a result is a dot:
discarded runs grey, kept runs green, the evidence runs (noise floor, re-runs,
verifications, ablations) hollow. The running best (where the org merges:
main after each merge) is a step line through the same values the summary
reports (report/summary.py: the mean of each code's runs, starting from the
baseline), each new best labelled with its
description on the side of the line where few runs lie; the noise floor is a
band (the baseline's mean ± 1 sigma over its seeds). The y-axis holds the
central runs and the running best; a run far outside is drawn as a triangle
on the edge. Runs without a result (crash, timeout, invalid, interrupted)
are counted in the title, and so are runs on a fraction of the budget (screen-gate's
screens), whose metric is on another scale: they are not drawn.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from researchorg.ledger import Experiment  # noqa: E402
from researchorg.report.summary import Summary, summarize  # noqa: E402
from researchorg.task.spec import MetricSpec  # noqa: E402


def progress_plot(experiments: list[Experiment], metric: MetricSpec, out: Path, summary: Summary | None = None,
                  title: str = "") -> Summary:
    """Draw the plot to `out` with the numbers of `summary` (the program's, report/summary.program_summary;
    without it, the experiments' own); return the summary it shows."""
    finished = [e for e in experiments if e.status != "running"]
    summary = summary or summarize(finished, metric)
    # runs on a fraction of the budget (screen-gate's screens) score on another scale: counted, not drawn
    screens = [e for e in finished if e.fidelity < 1.0]
    scored = [e for e in finished if e.status in ("keep", "discard", "measured") and e.metric is not None
              and e.fidelity == 1.0]
    kept = [e for e in scored if e.status == "keep"]
    discarded = [e for e in scored if e.status == "discard"]
    noise = [e for e in scored if e.kind == "noise"]
    evidence = [e for e in scored if e.status == "measured" and e.kind != "noise"]
    low, high = _limits([e.metric for e in scored], [v for _, v in summary.steps])
    room = 0.12 * (high - low)  # for the labels, on the better side of the step line
    low, high = (low - room, high) if metric.direction == "minimize" else (low, high + room)
    clip = lambda v: min(max(v, low), high)  # noqa: E731  (outliers drawn on the edge)
    fig, ax = plt.subplots(figsize=(12, 6))
    if len(noise) >= 2:  # where the baseline lands with other seeds
        mean, sigma = statistics.fmean(e.metric for e in noise), statistics.stdev(e.metric for e in noise)
        ax.axhspan(mean - sigma, mean + sigma, color="#9ecae1", alpha=0.35, zorder=1,
                   label=f"noise floor: baseline ±1σ ({len(noise)} seeds)")
    for runs, style in ((discarded, dict(c="#bbbbbb", s=18, label="discarded")),
                        (noise, dict(facecolors="none", edgecolors="#3b6fb6", s=22, label="noise-floor runs")),
                        (evidence, dict(facecolors="none", edgecolors="#8c8c8c", s=18,
                                        label="re-runs, verifications, ablations")),
                        (kept, dict(c="#2ca02c", s=46, edgecolors="black", linewidths=0.5, label="kept"))):
        inside = [e for e in runs if low <= e.metric <= high]
        outside = [e for e in runs if not low <= e.metric <= high]
        if inside:
            ax.scatter([e.id for e in inside], [e.metric for e in inside], zorder=4 if runs is kept else 2, **style)
        if outside:
            style = {**style, "label": None, "s": 30}
            ax.scatter([e.id for e in outside], [clip(e.metric) for e in outside], marker="^" if any(
                e.metric > high for e in outside) else "v", zorder=2, clip_on=False, **style)
    if summary.steps:
        xs = [e.id for e, _ in summary.steps] + [finished[-1].id]
        ys = [v for _, v in summary.steps] + [summary.steps[-1][1]]
        base, best = summary.steps[0][1], summary.steps[-1][1]
        what = "main after each merge" if summary.merging else "running best"
        ax.step(xs, ys, where="post", color="#1f7a1f", linewidth=2, alpha=0.85, zorder=3,
                label=f"{what} (mean of each code's runs): {base:.4f} → {best:.4f}")
        below = metric.direction == "minimize"  # labels on the better side of the line, where few runs lie
        first, last = finished[0].id, finished[-1].id
        for i, (e, value) in enumerate(summary.steps[1:]):
            label = e.description if len(e.description) <= 40 else e.description[:37] + "..."
            right = e.id > first + 0.6 * (last - first)  # late labels end at their point, inside the axes
            ax.annotate(f"#{e.id} {label}", (e.id, value), textcoords="offset points",
                        xytext=(-4 if right else 4, (-10 - 10 * (i % 3)) if below else (6 + 10 * (i % 3))),
                        fontsize=7.5, color="#1a5e1a", ha="right" if right else "left",
                        va="top" if below else "bottom", zorder=5)
    better = "lower" if metric.direction == "minimize" else "higher"
    ax.set_ylim(low, high)
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{metric.name} ({better} is better)")
    without = sum(e.metric is None for e in finished)
    candidate = (f"; candidate #{summary.candidate.id} {summary.value(summary.candidate):.4f} not on main"
                 if summary.candidate is not None else "")
    ax.set_title(title or f"{summary.headline(metric.name)}{candidate}\n"
                          f"{len(finished)} runs: {len(kept) + len(discarded)} decided, {len(kept)} kept, "
                          f"{len(noise) + len(evidence)} as evidence, {without} without a result"
                          + (f"; {len(screens)} on a fraction of the budget "
                             f"({sum(e.status == 'keep' for e in screens)} kept), not drawn" if screens else ""),
                 fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.25)
    if scored:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8.5, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return summary


def _limits(values: list[float], keep: list[float]) -> tuple[float, float]:
    """A y-range that holds the central `values` and every one of `keep` (the running best), not far outliers."""
    if not values:
        return 0.0, 1.0
    ordered = sorted(values)
    lo, hi = ordered[0], ordered[-1]
    inter = statistics.quantiles(ordered, n=4) if len(ordered) >= 4 else [lo, hi]
    iqr = inter[-1] - inter[0]
    if iqr > 0:  # clip beyond 3 interquartile ranges of the middle half
        lo, hi = max(lo, inter[0] - 3 * iqr), min(hi, inter[-1] + 3 * iqr)
    lo, hi = min([lo, *keep]), max([hi, *keep])
    spread = (hi - lo) or abs(hi) * 0.05 or 1.0
    return lo - 0.08 * spread, hi + 0.08 * spread
