"""Server-side SVG charts for the dashboard: no script, no external asset, every label escaped.

Example:
    >>> svg = line_chart({"train_total_loss": [(1, 2.0), (2, 1.0)]}, title="Loss", y_label="loss")
    >>> svg.startswith("<svg") and "train_total_loss" in svg
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH = 640
HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 28, 40
PALETTE = ("#1a73e8", "#e8710a", "#188038", "#a142f4", "#d93025", "#12b5cb")
BASE_GREY = "#9aa0a6"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def line_chart(
    series: Mapping[str, Sequence[Sequence[float]]], *, title: str, y_label: str, css_class: str = "chart"
) -> str:
    """Lines over steps, one per series, with axes, ticks and a legend.

    ``series`` maps a name to ``[(step, value), ...]``. A series with one point is a dot.
    """
    points = {name: [(float(p[0]), float(p[1])) for p in values if len(p) == 2] for name, values in series.items()}
    points = {name: values for name, values in points.items() if values}
    xs = [x for values in points.values() for x, _ in values]
    ys = [y for values in points.values() for _, y in values]
    if not xs:
        return ""
    x_min, x_max = min(xs), max(xs)
    y_min, y_max = min(*ys, 0.0), max(ys)
    if x_max == x_min:
        x_max = x_min + 1
    if y_max == y_min:
        y_max = y_min + 1
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def sy(y: float) -> float:
        return _TOP + plot_h - (y - y_min) / (y_max - y_min) * plot_h

    total_h = HEIGHT + 16 * len(points)  # the legend sits under the plot, one row per series
    parts = [
        f'<svg class="{escape(css_class)}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {total_h}" width="{WIDTH}" height="{total_h}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_LEFT}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - _RIGHT}" y2="{_TOP + plot_h}" stroke="#5f6368"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#5f6368"/>',
    ]
    for i in range(5):
        value = y_min + (y_max - y_min) * i / 4
        y = sy(value)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#e8eaed"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(value)}</text>')
    for i in range(5):
        value = x_min + (x_max - x_min) * i / 4
        x = sx(value)
        parts.append(f'<text x="{x:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" class="tick">{value:.0f}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" class="tick">step</text>')
    parts.append(
        f'<text x="12" y="{_TOP + plot_h / 2:.0f}" text-anchor="middle" class="tick" '
        f'transform="rotate(-90 12 {_TOP + plot_h / 2:.0f})">{escape(y_label)}</text>'
    )
    for index, (name, values) in enumerate(sorted(points.items())):
        colour = PALETTE[index % len(PALETTE)]
        if len(values) == 1:
            x, y = values[0]
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}" data-series="{escape(name)}"/>'
            )
        else:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}" '
                f'data-series="{escape(name)}" data-points="{len(values)}"/>'
            )
        legend_y = HEIGHT + 8 + index * 16
        legend_x = _LEFT
        parts.append(f'<rect x="{legend_x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{legend_y}" class="legend">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(groups: Mapping[str, Mapping[str, float]], *, title: str, highlight: str = "tuned") -> str:
    """Grouped bars: one group per metric (``rouge1`` ...), one bar per label (base, tuned, ...).

    ``groups`` maps a label to ``{metric: value}`` (the smoke test's ``scores``). Values are
    0..1. The base model is drawn first in grey, the label ``highlight`` in blue.
    """
    labels = sorted(groups, key=lambda label: (label != "base", label != highlight, label))
    metrics = sorted({metric for scores in groups.values() for metric in scores})
    if not labels or not metrics:
        return ""
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    group_w = plot_w / len(metrics)
    bar_w = max(4.0, (group_w - 16) / len(labels))
    parts = [
        f'<svg class="chart bars" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_LEFT}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - _RIGHT}" y2="{_TOP + plot_h}" stroke="#5f6368"/>',
    ]
    for i in range(5):
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#e8eaed"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{i / 4:.2f}</text>')
    for g, metric in enumerate(metrics):
        x0 = _LEFT + g * group_w + 8
        for b, label in enumerate(labels):
            value = max(0.0, min(1.0, float(groups[label].get(metric, 0.0))))
            height = value * plot_h
            colour = BASE_GREY if label == "base" else ("#1a73e8" if label == highlight else PALETTE[(b + 1) % 6])
            x = x0 + b * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{_TOP + plot_h - height:.1f}" width="{bar_w - 2:.1f}" height="{height:.1f}" '
                f'fill="{colour}" data-label="{escape(label)}" data-metric="{escape(metric)}">'
                f"<title>{escape(label)} {escape(metric)}: {value:.3f}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + group_w / 2 - 8:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" class="tick">'
            f"{escape(metric)}</text>"
        )
    for index, label in enumerate(labels):
        colour = BASE_GREY if label == "base" else ("#1a73e8" if label == highlight else PALETTE[(index + 1) % 6])
        legend_x = _LEFT + index * 130
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" class="legend">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
