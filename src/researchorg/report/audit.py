"""The audit of a results.tsv (stats/audit.py) as a person reads it: one line per keep, then the totals."""

from __future__ import annotations

from researchorg.stats.audit import Audit


def _gain(value: float) -> str:
    return f"{value:+.4g}"


def audit_lines(audit: Audit, metric: str) -> list[str]:
    """The audit as lines of text: each keep's claim, the chance it is real and its shrunk gain; the run's claimed
    and likely improvement; which keeps to re-run first."""
    lines = [f"{audit.name}: {len(audit.keeps)} keeps, {metric} baseline {audit.baseline:.6g}, seed noise "
             f"{audit.sigma:.3g} per run ({audit.sigma_source})",
             f"{'row':>5}  {'claimed':>11}  {'P(real)':>7}  {'likely':>11}  description"]
    for keep in audit.keeps:
        if keep.claimed <= 0:
            continue
        lines.append(f"{keep.row:>5}  {_gain(keep.claimed):>11}  {keep.p_real:>7.2f}  {_gain(keep.expected):>11}  "
                     f"{keep.description[:70]}")
    other = sum(k.claimed <= 0 for k in audit.keeps)
    if other:
        lines.append(f"       {other} keeps did not beat the best so far (kept by another rule): not counted")
    low, high = audit.likely_interval
    share = 100 * audit.claimed_total / abs(audit.baseline)
    lines.append(f"claimed improvement: {_gain(audit.claimed_total)} ({share:.3g}% of the baseline)")
    lines.append(f"likely true improvement: {_gain(audit.likely_total)} (90% interval {_gain(low)} to {_gain(high)})")
    if audit.rerun_first:
        lines.append("re-run first (most likely noise, weighted by what they claim): rows "
                     + ", ".join(str(r) for r in audit.rerun_first))
    return lines
