"""The rejection reason says when its list of error codes is cut (issue 19)."""

from __future__ import annotations

from types import SimpleNamespace

from shared.intake import _report_reason


def _report(counts: dict[str, int]) -> SimpleNamespace:
    return SimpleNamespace(
        foreign_format=None, issues=[], error_counts=counts, errors_count=sum(counts.values()), convert_command=None
    )


def test_a_reason_with_more_codes_than_it_lists_ends_the_list_with_an_ellipsis():
    reason = _report_reason("faq.jsonl", _report({"E_A": 3, "E_B": 2, "E_C": 1, "E_D": 1, "E_E": 1}))
    assert reason == "faq.jsonl has 8 error(s) (E_A x3, E_B x2, E_C x1, … 2 more code(s))"


def test_a_reason_listing_every_code_has_no_ellipsis():
    reason = _report_reason("faq.jsonl", _report({"E_A": 1, "E_B": 1}))
    assert reason == "faq.jsonl has 2 error(s) (E_A x1, E_B x1)"
