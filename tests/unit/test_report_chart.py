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
