"""The base-vs-tuned ROUGE bar chart written next to the smoke-test report (``rouge.png``).

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``): no global figure
state, no display needed, safe inside a Cloud Function.

Example:
    >>> from shared.scoring import RougeScores
    >>> png = render_png(build_rouge_figure({"base": RougeScores(0.1, 0.0, 0.1),
    ...                                      "tuned": RougeScores(0.6, 0.4, 0.5)}, title="faq"))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.scoring import METRICS, RougeScores

_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
_COLOURS = ("#9aa0a6", "#1a73e8", "#34a853", "#fbbc04")


def build_rouge_figure(scores_by_model: Mapping[str, RougeScores], *, title: str, prompts: int | None = None) -> Figure:
    """A grouped bar chart: one group per metric, one bar per model (in mapping order).

    Each bar is labelled with its value; the y axis is fixed to [0, 1] so charts of different
    runs compare at a glance. The y label says the bars are means over ``prompts`` prompts. The
    legend sits below the axes, so it never covers a bar or its label (scores near 1.0 reach
    the top right corner, where a legend inside the axes would be).
    """
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    models = list(scores_by_model)
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        values = [getattr(scores_by_model[model], metric) for metric in METRICS]
        offsets = [m + (index - (len(models) - 1) / 2) * width for m in range(len(METRICS))]
        bars = axes.bar(offsets, values, width, label=model, color=_COLOURS[index % len(_COLOURS)])
        axes.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    axes.set_xticks(range(len(METRICS)), [_LABELS[m] for m in METRICS])
    axes.set_ylim(0.0, 1.05)
    over = f"mean over {prompts} prompt{'s' if prompts != 1 else ''}" if prompts else "mean over the prompts"
    axes.set_ylabel(f"F-measure vs reference\n({over})")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=max(len(models), 1), frameon=False)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def render_png(figure: Figure) -> bytes:
    """Encode a figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
