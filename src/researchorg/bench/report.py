"""The benchmark's report: markdown, a self-contained HTML page, JSON and the curves as PNG."""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from researchorg.bench.measures import AXES, MEASURES, RepeatResult, interval, value_at


def curves_plot(results: dict[str, list[RepeatResult]], out: Path) -> Path:
    """Best-so-far improvement of main over hours (virtual in simulation, wall time on a real task), slot-hours
    and experiments: the mean per org with its 95% band, and the raw curve (best single kept run) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    scales = (3600.0, 3600.0, 1.0)
    for axis, (ax, name, scale) in enumerate(zip(axes, AXES, scales, strict=True)):
        ends = {}
        for label, repeats in results.items():
            # each org over its own compute; the curves hold after their last point, so the grid goes a little
            # past it and a change at its very end shows
            horizon = ends[label] = max(max(r.horizons[axis], r.verified_curve[-1][axis], r.raw_curve[-1][axis])
                                        for r in repeats)
            grid = [horizon * i / 200 for i in range(200)] + [horizon, horizon * 1.02]
            points = [interval([value_at(r.verified_curve, x, axis) for r in repeats]) for x in grid]
            means = [m for m, _ in points]
            halves = [0.0 if math.isnan(h) else h for _, h in points]
            xs = [x / scale for x in grid]
            (line,) = ax.plot(xs, means, drawstyle="steps-post", label=f"{label} (n={len(repeats)})")
            ax.fill_between(xs, [m - h for m, h in zip(means, halves, strict=True)],
                            [m + h for m, h in zip(means, halves, strict=True)], step="post", alpha=0.2,
                            color=line.get_color())
            raw = [statistics.fmean(value_at(r.raw_curve, x, axis) for r in repeats) for x in grid]
            ax.plot(xs, raw, drawstyle="steps-post", linestyle=":", linewidth=1, color=line.get_color())
        small, large = min(ends.values()), max(ends.values())
        if small > 0 and large / small > 20:  # orgs of very different sizes (a scaling study): a log axis
            ax.set_xscale("symlog", linthresh=small / scale / 10)
            name += " (log)"
        ax.set_xlabel(name)
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel("improvement over the baseline")
    axes[0].legend(fontsize=8)
    fig.suptitle("improvement of main (solid, mean and 95% CI over repeats) and best single kept run (dotted); "
                 "hours are virtual in simulation")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cell(value: tuple[float, float], percent: bool = False) -> str:
    mean, half = value
    if math.isnan(mean):
        return "-"
    if percent:
        return f"{100 * mean:.1f}% ± {100 * half:.1f}" if not math.isnan(half) else f"{100 * mean:.1f}%"
    return f"{mean:.4f} ± {half:.4f}" if not math.isnan(half) else f"{mean:.4f}"


def _median(value: float, form: str) -> str:
    return format(value, form) if math.isfinite(value) else "not reached"


TARGET_COLUMNS = ("reached the target", "median hours to it", "median experiments to it", "parallel efficiency")


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The report's main table: a row per org, a column per measure that any org has (mean ± 95% CI), then the
    time to the target and the parallel efficiency where the bench has a target (medians over repeats)."""
    head = ["org", *[name for _, name in MEASURES]]
    rows = []
    target = "target" in summary
    if target:
        head += list(TARGET_COLUMNS)
    for label, row in summary["orgs"].items():
        cells = [label, *[_cell(row[key], percent=key.endswith("rate")) for key, _ in MEASURES]]
        if target:
            efficiency = row.get("parallel_efficiency", math.nan)
            cells += [f"{100 * row['reached_target']:.0f}%", _median(row["time_to_target_h"], ".2f"),
                      _median(row["experiments_to_target"], ".0f"),
                      f"{efficiency:.2f}" if math.isfinite(efficiency) else "-"]
        rows.append(cells)
    used = [i for i in range(1, len(head)) if any(r[i] != "-" for r in rows)]  # no empty columns (e.g. tokens)
    head = [head[0], *[head[i] for i in used]]
    rows = [[r[0], *[r[i] for i in used]] for r in rows]
    return head, rows


def _target_line(summary: dict[str, Any]) -> list[str]:
    """What the target columns mean, where the bench has a target."""
    target = summary.get("target")
    if not target:
        return []
    what = (f"what {target['reference']} reached in the same repeat" if target["reference"] is not None
            else f"an improvement of {target['value']:g}")
    line = f"Target: {what}, read on the {target['on']} curve; times and experiments are medians over repeats."
    if target["reference"] is not None:
        line += (f" Parallel efficiency: T({target['reference']}) x its slots / (T x the org's slots), the median "
                 "over repeats (0 where the org never reached it).")
    return ["", line]


def write_report(name: str, spec_text: str, results: dict[str, list[RepeatResult]], summary: dict[str, Any],
                 out: Path) -> dict[str, Path]:
    png = curves_plot(results, out / "curves.png")
    head, rows = summary_rows(summary)
    paired = [f"| {p['a']} - {p['b']} | {p['mean_diff']:+.4f} ± {p['ci95']:.4f} | {p['p']:.3g} |"
              for p in summary["paired"]]
    repeats = {label: len(r) for label, r in results.items()}
    md = [f"# Benchmark: {name}", "", f"Repeats per org: {repeats}. Mean ± 95% CI half-width over repeats "
          "(Student t). Improvement of main: the program branch's measured value (the mean of its code's runs) "
          "over the baseline's, after merges, which are verified where the org has a verify process; raw: the "
          "best single kept run; true: what the simulation knows.", *_target_line(summary), "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
          *["| " + " | ".join(r) + " |" for r in rows], "",
          f"Paired comparisons of the {summary.get('paired_on', 'final improvement of main')} (paired by repeat: "
          "the same landscape in simulation, the same agent seeds on a real task):", "",
          "| orgs | mean difference | p (paired t) |", "|---|---|---|", *paired, "",
          "![curves](curves.png)", "", "## Spec", "", "```toml", spec_text.strip(), "```", ""]
    (out / "report.md").write_text("\n".join(md))
    image = base64.b64encode(png.read_bytes()).decode()
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    pairs = "<table><tr><th>orgs</th><th>mean difference</th><th>p (paired t)</th></tr>" + "".join(
        f"<tr><td>{html.escape(p['a'])} - {html.escape(p['b'])}</td><td>{p['mean_diff']:+.4f} ± {p['ci95']:.4f}"
        f"</td><td>{p['p']:.3g}</td></tr>" for p in summary["paired"]) + "</table>"
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}</style>"
            f"<h1>Benchmark: {html.escape(name)}</h1>{table}<h2>Paired comparisons of the "
            f"{html.escape(summary.get('paired_on', 'final improvement of main'))}</h2>{pairs}"
            f"<h2>Curves</h2><img alt='curves' src='data:image/png;base64,{image}' style='max-width:100%'>"
            f"<h2>Spec</h2><pre>{html.escape(spec_text)}</pre>")
    (out / "report.html").write_text(page)
    data = {"name": name, "summary": finite(summary), "runs": {k: [asdict(r) for r in v] for k, v in results.items()},
            "spec": spec_text}
    (out / "report.json").write_text(json.dumps(data, indent=1))
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json", "png": png}


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

