"""The progress plot, after autoresearch's progress.png.

Experiment number on x, metric on y; every finished run a dot (discarded in
grey, kept in colour), the running best of the kept runs as a step line, and
each kept run labelled with its description; the noise floor as a band (the
baseline's mean ± 1 sigma over its seeds) and the lab's evidence runs
(re-runs, verifications, ablations) as hollow dots. Runs without a metric
(crash, timeout, invalid, interrupted) are counted in the title but not drawn.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from researchorg.ledger import Experiment  # noqa: E402
from researchorg.stats.score import best as pick_best  # noqa: E402
from researchorg.task.spec import MetricSpec  # noqa: E402


def progress_plot(experiments: list[Experiment], metric: MetricSpec, out: Path, title: str = "") -> Path:
    finished = [e for e in experiments if e.status != "running"]
    scored = [e for e in finished if e.status in ("keep", "discard") and e.metric is not None]
    kept = [e for e in scored if e.status == "keep"]
    fig, ax = plt.subplots(figsize=(12, 6))
    discarded = [e for e in scored if e.status == "discard"]
    ax.scatter([e.id for e in discarded], [e.metric for e in discarded], c="#bbbbbb", s=18, label="discarded", zorder=2)
    ax.scatter([e.id for e in kept], [e.metric for e in kept], c="#2ca02c", s=50, edgecolors="black",
               linewidths=0.5, label="kept", zorder=4)
    if kept:
        best, steps = [], []
        for e in kept:
            best.append(e.metric if not best else pick_best(metric, [best[-1], e.metric]))
            steps.append(e.id)
        last = finished[-1].id if finished else steps[-1]
        ax.step(steps + [last], best + [best[-1]], where="post", color="#1f7a1f", linewidth=2, alpha=0.8,
                label="running best", zorder=3)
        for e in kept:
            label = e.description if len(e.description) <= 48 else e.description[:45] + "..."
            ax.annotate(label, (e.id, e.metric), textcoords="offset points", xytext=(5, 5), fontsize=7.5,
                        color="#1a5e1a", rotation=20, ha="left", va="bottom")
    noise = [e.metric for e in finished if e.kind == "noise" and e.metric is not None]
    if len(noise) >= 2:  # the noise floor: where the baseline lands with other seeds (mean ± 1 sigma)
        mean, sigma = statistics.fmean(noise), statistics.stdev(noise)
        ax.axhspan(mean - sigma, mean + sigma, color="#9ecae1", alpha=0.35, zorder=1,
                   label=f"noise floor: baseline ±1σ ({len(noise)} seeds)")
    evidence = [e for e in finished if e.status == "measured" and e.kind != "noise" and e.metric is not None]
    ax.scatter([e.id for e in evidence], [e.metric for e in evidence], facecolors="none", edgecolors="#6b8fb3",
               s=18, label="re-runs, verifications, ablations", zorder=2)
    better = "lower" if metric.direction == "minimize" else "higher"
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{metric.name} ({better} is better)")
    without = sum(e.metric is None for e in finished)
    ax.set_title(title or f"{len(finished)} runs: {len(scored)} decided, {len(kept)} kept, "
                          f"{len(finished) - len(scored) - without} as evidence, {without} without a result")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.25)
    if scored:
        ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
