"""The base-vs-tuned ROUGE chart: bars carry the scores, the PNG decodes."""

from __future__ import annotations

import io

import pytest
from matplotlib.image import imread

from shared.report_chart import build_rouge_figure, render_png
from shared.scoring import RougeScores

SCORES = {"base": RougeScores(0.1, 0.05, 0.2), "tuned": RougeScores(0.7, 0.5, 0.6)}


def test_one_bar_per_model_and_metric_with_the_scores_as_heights():
    figure = build_rouge_figure(SCORES, title="faq/v2 #7")
    axes = figure.axes[0]
    heights = [round(patch.get_height(), 4) for patch in axes.patches]
    assert heights == [0.1, 0.05, 0.2, 0.7, 0.5, 0.6]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["ROUGE-1", "ROUGE-2", "ROUGE-L"]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["base", "tuned"]
    assert axes.get_title() == "faq/v2 #7"
    assert axes.get_ylim() == pytest.approx((0.0, 1.05))


def test_png_decodes_to_the_figure_size():
    png = render_png(build_rouge_figure(SCORES, title="t"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (400, 640)


def test_more_than_two_models_get_their_own_bars():
    figure = build_rouge_figure({**SCORES, "checkpoint-1": RougeScores(0.3, 0.2, 0.3)}, title="t")
    assert len(figure.axes[0].patches) == 9


def test_the_legend_never_covers_a_bar_even_with_scores_near_one():
    figure = build_rouge_figure({"base": RougeScores(0.3, 0.2, 0.3), "tuned": RougeScores(1.0, 0.98, 1.0)}, title="t")
    render_png(figure)  # lays the figure out
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    legend_box = axes.get_legend().get_window_extent(renderer)
    for patch in axes.patches:
        assert not legend_box.overlaps(patch.get_window_extent(renderer))
    for text in axes.texts:  # the value labels above the bars
        assert not legend_box.overlaps(text.get_window_extent(renderer))


def test_the_axis_says_the_values_are_means_over_n_prompts():
    figure = build_rouge_figure(SCORES, title="faq/v2: base vs tuned ROUGE", prompts=12)
    assert "mean over 12 prompts" in figure.axes[0].get_ylabel()
