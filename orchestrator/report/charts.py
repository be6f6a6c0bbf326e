"""Inline SVG charts for the report: no scripts, no external assets, readable at any width."""

from __future__ import annotations

from html import escape

from ..formatting import delta, fmt_num
from ..timeline import MetricRow

BAR_H = 22
GAP = 8
LABEL_W = 70
VALUE_W = 150
WIDTH = 440


def metric_bars(row: MetricRow) -> str:
    """A horizontal bar chart of one key metric: the baseline, then each result, each bar the mean over the
    run's seeds with an error bar for its 95% confidence interval (none for a single seed).

    Bars start at zero (or span the range when values are negative), so differences are not exaggerated."""
    items: list[tuple[str, float | None, str, int]] = [("baseline", row.baseline, "base", 0)]
    items += [(f"run {run}", v, "run", run) for run, v in row.values.items()]
    values = [v for _, v, _, _ in items if v is not None]
    if not values:
        return ""
    intervals = {n: (s.ci_low, s.ci_high) for _, _, _, n in items
                 if (s := row.summary(n)).ci_low is not None and s.ci_high is not None}
    ends = values + [x for lo_hi in intervals.values() for x in lo_hi]
    lo = min(0.0, min(ends))
    hi = max(0.0, max(ends))
    span = (hi - lo) or 1.0
    plot_w = WIDTH - LABEL_W - VALUE_W
    height = len(items) * (BAR_H + GAP) + GAP
    zero_x = LABEL_W + (0 - lo) / span * plot_w
    out = [
        (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
         f'aria-label="{escape(row.key)}: baseline and results" preserveAspectRatio="xMinYMin meet">'),
        f"<title>{escape(row.key)}</title>",
    ]
    for i, (label, v, kind, n) in enumerate(items):
        y = GAP + i * (BAR_H + GAP)
        out.append(f'<text class="lbl" x="{LABEL_W - 8}" y="{y + BAR_H * 0.7:.1f}" text-anchor="end">{escape(label)}</text>')
        if v is None:
            out.append(f'<text class="val" x="{LABEL_W + 4}" y="{y + BAR_H * 0.7:.1f}">n/a</text>')
            continue
        x0 = zero_x if v >= 0 else LABEL_W + (v - lo) / span * plot_w
        w = max(1.0, abs(v) / span * plot_w)
        shown = row.text(n) if n in row.seeds else fmt_num(v)
        d = "" if kind == "base" else (row.diff_text(n) if n in row.seeds and 0 in row.seeds else delta(v, row.baseline))
        src = f", {row.evaluation[n]}" if n in row.evaluation else ""
        tip = f"{label}: {shown}{src}" + (f" ({d} vs baseline)" if d else "")
        out.append(
            f'<rect class="bar {kind}" x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" rx="3">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if n in intervals:  # the 95% interval as an error bar with whiskers
            a, b = (LABEL_W + (x - lo) / span * plot_w for x in intervals[n])
            mid, top, bot = y + BAR_H / 2, y + BAR_H * 0.25, y + BAR_H * 0.75
            tip = f"{label}: 95% CI [{fmt_num(intervals[n][0])}, {fmt_num(intervals[n][1])}]"
            out.append(f'<path class="err" d="M{a:.1f},{mid:.1f}H{b:.1f}M{a:.1f},{top:.1f}V{bot:.1f}M{b:.1f},{top:.1f}'
                       f'V{bot:.1f}"><title>{escape(tip)}</title></path>')
        rel = "" if kind == "base" else delta(v, row.baseline)
        text = shown + (f" ({rel})" if rel else "")
        out.append(f'<text class="val" x="{LABEL_W + plot_w + 6}" y="{y + BAR_H * 0.7:.1f}">{escape(text)}</text>')
    out.append(f'<line class="axis" x1="{zero_x:.1f}" y1="0" x2="{zero_x:.1f}" y2="{height}"/>')
    out.append("</svg>")
    return "".join(out)


def run_strip(statuses: list[tuple[int, str, int]]) -> str:
    """One square per run (coloured and lettered by verdict) with its attempts: the timeline at a glance."""
    if not statuses:
        return ""
    size, gap = 34, 6
    width = len(statuses) * (size + gap) + gap
    out = [f'<svg class="strip" viewBox="0 0 {width} {size + 2 * gap + 14}" role="img" aria-label="runs by verdict">']
    for i, (run, status, attempts) in enumerate(statuses):
        x = gap + i * (size + gap)
        letter = {"ok": "✓", "degenerate": "D", "failed": "✗", "timeout": "T", "tampered": "!",
                  "interrupted": "…", "unfinished": "…", "not run": "–"}.get(status, "?")
        out.append(
            f'<g class="st-{escape(status.replace(" ", "-"))}"><rect x="{x}" y="{gap}" width="{size}" height="{size}" rx="5">'
            f"<title>run {run}: {escape(status)} after {attempts} attempt(s)</title></rect>"
            f'<text x="{x + size / 2}" y="{gap + size * 0.68:.1f}" text-anchor="middle">{letter}</text>'
            f'<text class="num" x="{x + size / 2}" y="{gap + size + 13}" text-anchor="middle">{run}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
