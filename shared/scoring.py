"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures in pure Python (no NLTK, no rouge-score dependency).

Tokenisation follows ``rouge_score``'s default (no stemming): lower-case the text and keep the
runs of ASCII letters and digits, so ``"Hello, World!"`` is ``["hello", "world"]``. ROUGE-N counts
clipped n-gram overlaps; ROUGE-L uses the longest common subsequence of the token lists. Each
score is the F1 of precision (over the candidate) and recall (over the reference).

Example:
    >>> s = rouge_scores("the cat sat on the mat", "the cat is on the mat")
    >>> round(s.rouge1, 4), round(s.rouge2, 4), round(s.rougeL, 4)
    (0.8333, 0.6, 0.8333)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_TOKEN = re.compile(r"[a-z0-9]+")

METRICS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
"""Metric names in display order (the keys of :meth:`RougeScores.to_dict`)."""


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens.

    >>> tokenize("Hi there! Reset it (2x) — Acme_Support")
    ['hi', 'there', 'reset', 'it', '2x', 'acme', 'support']
    """
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class RougeScores:
    """F-measures in [0, 1]."""

    rouge1: float
    rouge2: float
    rougeL: float  # the metric's conventional spelling

    def to_dict(self) -> dict[str, float]:
        """``{"rouge1": .., "rouge2": .., "rougeL": ..}`` rounded to 4 places."""
        return {name: round(getattr(self, name), 4) for name in METRICS}


def _f1(overlap: int, candidate_total: int, reference_total: int) -> float:
    if overlap == 0 or candidate_total == 0 or reference_total == 0:
        return 0.0
    precision = overlap / candidate_total
    recall = overlap / reference_total
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(candidate: Sequence[str], reference: Sequence[str], n: int) -> float:
    """ROUGE-N F1 over token lists (overlap counts clipped by the reference's counts).

    >>> rouge_n(["a", "b", "a"], ["a", "a", "a"], 1)
    0.6666666666666666
    """
    cand, ref = _ngrams(candidate, n), _ngrams(reference, n)
    overlap = sum((cand & ref).values())
    return _f1(overlap, sum(cand.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory).

    >>> lcs_length(list("ABCBDAB"), list("BDCABA"))
    4
    """
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0] * (len(b) + 1)
        for j, token_b in enumerate(b, start=1):
            if token_a == token_b:
                current[j] = previous[j - 1] + 1
            else:
                current[j] = max(previous[j], current[j - 1])
        previous = current
    return previous[-1]


def rouge_l(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1: the LCS over the candidate's and the reference's lengths."""
    return _f1(lcs_length(candidate, reference), len(candidate), len(reference))


def rouge_scores(candidate: str, reference: str) -> RougeScores:
    """ROUGE-1/2/L of one answer against its reference text."""
    cand, ref = tokenize(candidate), tokenize(reference)
    return RougeScores(rouge1=rouge_n(cand, ref, 1), rouge2=rouge_n(cand, ref, 2), rougeL=rouge_l(cand, ref))


def mean_scores(scores: Iterable[RougeScores]) -> RougeScores | None:
    """Average per metric (macro mean over prompts); None when there is nothing to average.

    >>> mean_scores([RougeScores(1.0, 0.5, 1.0), RougeScores(0.0, 0.5, 0.0)])
    RougeScores(rouge1=0.5, rouge2=0.5, rougeL=0.5)
    """
    items = list(scores)
    if not items:
        return None
    return RougeScores(
        rouge1=sum(s.rouge1 for s in items) / len(items),
        rouge2=sum(s.rouge2 for s in items) / len(items),
        rougeL=sum(s.rougeL for s in items) / len(items),
    )
