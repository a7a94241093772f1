"""Property tests: arbitrary bytes or JSON never crash the validator, and every verdict is explained."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validation_helpers import good

from shared.validation import ValidationOptions, validate_stream
from shared.validation.codes import CODES, FILE_LEVEL_CODES
from shared.validation.validator import _Validator

FILE_LEVEL_ON_LINE_ONE = {"E_NOT_UTF8", "E_JSON_SYNTAX"}  # the whole-file verdicts on binary / pretty JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

# JSON shaped like examples, with random holes: exercises the slow path far more than pure noise.
roles = st.sampled_from(["user", "model", "assistant", "", None, 3])
parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"text": st.text(max_size=8) | json_values}),
        st.fixed_dictionaries(
            {"fileData": st.fixed_dictionaries({"mimeType": st.text(max_size=12), "fileUri": st.text(max_size=12)})}
        ),
        st.dictionaries(st.sampled_from(["text", "inlineData", "functionCall", "x"]), json_values, max_size=2),
        json_values,
    ),
    max_size=3,
)
contents = st.lists(st.fixed_dictionaries({"role": roles, "parts": parts}) | json_values, max_size=4)
examples = st.fixed_dictionaries(
    {"contents": contents | json_values},
    optional={"systemInstruction": json_values | st.fixed_dictionaries({"parts": parts}), "tools": json_values},
)


def check_report(report: Any, line_count: int) -> None:
    # Either valid, or at least one error explains why.
    assert report.valid == (report.errors_count == 0)
    if not report.valid:
        assert any(issue.severity == "error" for issue in report.issues) or report.options.max_errors == 0
    for issue in report.issues:
        assert issue.code in CODES
        assert issue.severity == CODES[issue.code].severity
        assert issue.message and issue.hint
        if issue.line is None:
            assert issue.code in FILE_LEVEL_CODES | {"E_FOREIGN_FORMAT"}
        else:
            assert 1 <= issue.line <= max(line_count, 1)
    # Every line-level problem names its line: errors without a line are file-level only.
    line_errors = [i for i in report.issues if i.severity == "error" and i.line is None]
    assert all(i.code in FILE_LEVEL_CODES | {"E_FOREIGN_FORMAT"} for i in line_errors)
    json.dumps(report.to_json_dict())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    report = validate_stream(io.BytesIO(data), ValidationOptions(role="validation", max_errors=50))
    check_report(report, data.count(b"\n") + 1)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_random_json_lines_never_crash_and_bad_lines_are_named(values: list[Any]) -> None:
    data = b"".join(json.dumps(value).encode() + b"\n" for value in values)
    report = validate_stream(io.BytesIO(data), ValidationOptions(role="validation"))
    check_report(report, len(values))
    # A line that is not an object is always an error on that very line (unless the whole file
    # was judged at once, e.g. as pretty-printed JSON or a foreign format).
    if report.foreign_format is None and "E_JSON_SYNTAX" not in report.error_counts:
        for number, value in enumerate(values, start=1):
            if not isinstance(value, dict):
                assert any(i.line == number and i.severity == "error" for i in report.issues)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(examples, min_size=1, max_size=5))
def test_example_shaped_lines_are_valid_or_explained_on_their_line(lines: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in [good(0), *lines])
    report = validate_stream(io.BytesIO(data), ValidationOptions(role="validation", max_errors=1000))
    check_report(report, len(lines) + 1)
    for issue in report.issues:
        if issue.line is not None and issue.path:
            assert issue.path.split(".")[0].split("[")[0] in {"contents", "systemInstruction", "tools"} or (
                issue.code == "E_UNKNOWN_KEY"
            )


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(examples, min_size=1, max_size=5))
def test_crlf_adds_only_the_crlf_warning(lines: list[dict[str, Any]]) -> None:
    lf = b"".join(json.dumps(line).encode() + b"\n" for line in [good(0), *lines])
    crlf = lf.replace(b"\n", b"\r\n")
    plain = validate_stream(io.BytesIO(lf), ValidationOptions(role="validation", max_errors=1000))
    windows = validate_stream(io.BytesIO(crlf), ValidationOptions(role="validation", max_errors=1000))
    assert windows.error_counts.pop("W_CRLF_LINE_ENDINGS") == 1
    assert windows.error_counts == plain.error_counts
    assert windows.valid == plain.valid


# --- the fast path and the full (slow) path agree, on invalid input too --------------------------

# Text-shaped lines near the fast path's boundary: each may break exactly one of its assumptions
# (odd turn count, a wrong or missing role, blank text, an extra key, a non-text part, a bad
# systemInstruction), so the fast path must hand precisely the bad lines to the slow path.
near_texts = st.sampled_from(["hi", "", " ", "\t\n", "x" * 40, "\u00a0", "ok!"]) | st.text(max_size=6)
near_roles = st.sampled_from(["user", "model", "user", "model", "assistant", "User", None])
near_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"text": near_texts}),
        st.fixed_dictionaries({"text": near_texts, "thought": st.booleans()}),
        st.just({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}),
        st.just({"text": 7}),
    ),
    min_size=0,
    max_size=3,
)
near_turns = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": near_roles, "parts": near_parts}),
        st.fixed_dictionaries({"parts": near_parts}),
        st.fixed_dictionaries({"role": near_roles, "parts": near_parts, "extra": st.just(1)}),
    ),
    min_size=0,
    max_size=4,
)
near_examples = st.fixed_dictionaries(
    {"contents": near_turns},
    optional={
        "systemInstruction": st.one_of(
            st.fixed_dictionaries({"parts": st.lists(st.fixed_dictionaries({"text": near_texts}), max_size=2)}),
            st.fixed_dictionaries({"role": st.just("system"), "parts": near_parts}),
            st.just("be brief"),
        ),
        "generationConfig": st.sampled_from([{"mediaResolution": "MEDIA_RESOLUTION_LOW"}, {}, []]),
    },
)


def _both_paths(data: bytes) -> tuple[Any, Any]:
    options = ValidationOptions(role="validation", max_errors=10_000)
    fast = _Validator(options, force_slow_path=False).run(io.BytesIO(data), None)
    slow = _Validator(options, force_slow_path=True).run(io.BytesIO(data), None)
    return fast, slow


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_examples, min_size=1, max_size=8))
def test_fast_and_full_path_agree_on_near_valid_and_invalid_lines(lines: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in [good(0), *lines])
    fast, slow = _both_paths(data)
    assert fast.valid == slow.valid
    assert fast.error_counts == slow.error_counts
    assert fast.issues == slow.issues
    assert fast.stats.to_dict() == slow.stats.to_dict()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(examples | json_values, min_size=1, max_size=5))
def test_fast_and_full_path_agree_on_random_example_shaped_json(lines: list[Any]) -> None:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    fast, slow = _both_paths(data)
    assert (fast.valid, fast.error_counts, fast.issues) == (slow.valid, slow.error_counts, slow.issues)
