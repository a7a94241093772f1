"""ROUGE-1/2/L against values computed by hand (counts written out next to each case)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.scoring import RougeScores, lcs_length, mean_scores, rouge_l, rouge_n, rouge_scores, tokenize


def test_tokenize_lowercases_and_keeps_alphanumeric_runs():
    assert tokenize("Hello, World! It's 2x—fast_now") == ["hello", "world", "it", "s", "2x", "fast", "now"]
    assert tokenize("  ...  ") == []


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        # identical up to case and punctuation
        ("Hello, World!", "hello world", (1.0, 1.0, 1.0)),
        # nothing in common
        ("alpha beta", "gamma delta", (0.0, 0.0, 0.0)),
        # empty candidate
        ("", "gamma delta", (0.0, 0.0, 0.0)),
        # unigrams 5/6 both ways; bigrams {the cat, on the, the mat} 3/5; LCS "the cat on the mat" 5/6
        ("the cat sat on the mat", "the cat is on the mat", (5 / 6, 3 / 5, 5 / 6)),
        # no stemming: killed != kill. unigrams 3/4; bigrams {the gunman} 1/3; LCS police-the-gunman 3/4
        ("police killed the gunman", "police kill the gunman", (0.75, 1 / 3, 0.75)),
        # unequal lengths: P=3/7 R=3/4 -> 18/33; bigrams P=1/6 R=1/3 -> 2/9; LCS "the gunman" P=2/7 R=2/4 -> 4/11
        ("the gunman was shot dead by police", "police kill the gunman", (18 / 33, 2 / 9, 4 / 11)),
        # reversed order: every unigram matches, no bigram does, LCS is 1 of 4
        ("a b c d", "d c b a", (1.0, 0.0, 0.25)),
        # clipped counts: "the" x3 vs x1 -> overlap 1, P=1/3 R=1/2 -> 0.4; no bigram overlap
        ("the the the", "the cat", (0.4, 0.0, 0.4)),
    ],
)
def test_rouge_scores_match_hand_computed_values(candidate, reference, expected):
    scores = rouge_scores(candidate, reference)
    assert (scores.rouge1, scores.rouge2, scores.rougeL) == pytest.approx(expected)


def test_lcs_classic_example():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_to_dict_rounds_to_four_places():
    assert RougeScores(2 / 3, 0.0, 1 / 7).to_dict() == {"rouge1": 0.6667, "rouge2": 0.0, "rougeL": 0.1429}


def test_mean_scores_averages_per_metric_and_is_none_when_empty():
    mean = mean_scores([RougeScores(1.0, 0.0, 0.5), RougeScores(0.0, 1.0, 0.25)])
    assert mean == RougeScores(0.5, 0.5, 0.375)
    assert mean_scores([]) is None


words = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=12)


@given(words, words)
def test_f_measures_are_symmetric_and_bounded(a, b):
    for score in (rouge_n(a, b, 1), rouge_n(a, b, 2), rouge_l(a, b)):
        assert 0.0 <= score <= 1.0
    assert rouge_n(a, b, 1) == pytest.approx(rouge_n(b, a, 1))
    assert rouge_l(a, b) == pytest.approx(rouge_l(b, a))
    assert lcs_length(a, b) <= min(len(a), len(b))


@given(st.lists(st.sampled_from(["x", "y", "z"]), min_size=2, max_size=12))
def test_a_text_scores_one_against_itself(tokens):
    assert rouge_n(tokens, tokens, 1) == rouge_n(tokens, tokens, 2) == rouge_l(tokens, tokens) == 1.0
