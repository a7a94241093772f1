"""File-level rules: encodings, empty files, counts and sizes, base models, foreign formats."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from validation_helpers import FIXTURES, good, jsonl, run

from shared.validation import MODEL_LIMITS, ValidationOptions, validate_stream
from shared.validation.limits import ModelLimits


def validate_fixture(name: str, **options: object) -> object:
    with (FIXTURES / name).open("rb") as stream:
        return validate_stream(stream, ValidationOptions(source_name=name, **options))  # type: ignore[arg-type]


def test_valid_text_fixture_is_valid_with_only_the_few_examples_warning() -> None:
    report = validate_fixture("valid_text_18.jsonl")
    assert report.valid
    assert report.error_counts == {"W_FEW_EXAMPLES": 1}
    assert report.example_count == 18


def test_valid_multimodal_fixture_has_no_issue_as_validation_set() -> None:
    report = validate_fixture("valid_multimodal_4.jsonl", role="validation")
    assert report.valid and report.error_counts == {}
    assert report.stats.multimodal_examples == 3
    assert report.stats.media_parts["image"] == 1
    assert report.stats.media_parts["document"] == 1
    assert report.stats.media_parts["audio"] == 1
    assert report.stats.function_call_parts == 1 and report.stats.function_response_parts == 1


def test_bom_and_crlf_are_reported_once_and_the_lines_still_validated() -> None:
    report = validate_fixture("bom_crlf_18.jsonl")
    assert report.error_counts == {"E_UTF8_BOM": 1, "W_CRLF_LINE_ENDINGS": 1, "W_FEW_EXAMPLES": 1}
    bom = next(i for i in report.issues if i.code == "E_UTF8_BOM")
    assert bom.line == 1
    assert report.stats.crlf_lines == 18
    assert report.stats.measured_examples == 18  # line 1 was validated after removing the BOM


def test_latin1_line_is_not_utf8_on_its_line() -> None:
    report = validate_fixture("latin1_line2.jsonl", role="validation")
    assert [(i.line, i.code) for i in report.issues] == [(2, "E_NOT_UTF8")]


@pytest.mark.parametrize(
    ("name", "words"),
    [("utf16.jsonl", "UTF-16"), ("gzipped.jsonl", "gzip")],
)
def test_non_utf8_files_are_reported_once_and_not_line_by_line(name: str, words: str) -> None:
    report = validate_fixture(name)
    assert report.error_counts == {"E_NOT_UTF8": 1}
    assert words in report.issues[0].message


def test_pretty_printed_json_is_recognised() -> None:
    report = validate_fixture("pretty_printed.json")
    assert report.error_counts == {"E_JSON_SYNTAX": 1}
    assert "pretty-printed" in report.issues[0].message
    assert "jq -c" in report.issues[0].hint


@pytest.mark.parametrize(("name", "message"), [("empty.jsonl", "empty"), ("blank_only.jsonl", "only blank")])
def test_empty_files(name: str, message: str) -> None:
    report = validate_fixture(name)
    assert not report.valid
    assert "E_EMPTY_FILE" in report.error_counts
    empty = next(i for i in report.issues if i.code == "E_EMPTY_FILE")
    assert empty.line is None and message in empty.message
    assert "E_TOO_FEW_EXAMPLES" not in report.error_counts


@pytest.mark.parametrize(
    ("name", "fmt", "command"),
    [
        ("openai_chat_6.jsonl", "openai", "--from openai"),
        ("prompt_completion_6.jsonl", "prompt-completion", "--from prompt-completion"),
        ("input_output_5.jsonl", "input-output", "--from input-output"),
    ],
)
def test_foreign_files_get_one_error_with_the_conversion_command(name: str, fmt: str, command: str) -> None:
    report = validate_fixture(name)
    assert not report.valid
    assert report.foreign_format == fmt
    assert report.error_counts == {"E_FOREIGN_FORMAT": 1}
    issue = report.issues[0]
    assert issue.line is None
    assert f"sftpilot convert {name}" in issue.hint and command in issue.hint
    assert report.convert_command is not None and command in report.convert_command
    assert report.example_count == sum(1 for line in (FIXTURES / name).read_bytes().splitlines() if line.strip())


def test_a_mostly_gemini_file_gets_line_level_foreign_errors() -> None:
    data = jsonl({"prompt": "q", "completion": "a"}, good(1), good(2), good(3), good(4))
    report = run(data)
    assert report.foreign_format is None
    assert [(i.line, i.code) for i in report.issues] == [(1, "E_FOREIGN_FORMAT")]


@pytest.mark.parametrize(
    ("count", "role", "expected"),
    [
        (1, "training", {"W_FEW_EXAMPLES"}),
        (15, "training", {"W_FEW_EXAMPLES"}),
        (16, "training", {"W_FEW_EXAMPLES"}),
        (99, "training", {"W_FEW_EXAMPLES"}),
        (100, "training", set()),
        (3, "validation", set()),
    ],
)
def test_example_count_thresholds(count: int, role: str, expected: set[str]) -> None:
    report = run(jsonl(*(good(i) for i in range(count))), role=role)
    assert set(report.error_counts) == expected
    assert report.valid is not any(code.startswith("E_") for code in expected)


def test_too_many_validation_examples() -> None:
    report = run(jsonl(*(good(i) for i in range(5001))), role="validation")
    assert report.error_counts == {"E_TOO_MANY_VALIDATION_EXAMPLES": 1}
    assert "5,001" in report.issues[0].message


@pytest.fixture
def tiny_model(monkeypatch: pytest.MonkeyPatch) -> str:
    limits = ModelLimits(
        name="tiny-test-model",
        max_tokens_per_example=10,
        min_examples=1,
        recommended_min_examples=1,
        max_training_examples_text=3,
        max_training_examples_multimodal=2,
        max_validation_examples=3,
        max_file_bytes=600,
        adapter_sizes=(4,),
    )
    monkeypatch.setitem(MODEL_LIMITS, limits.name, limits)
    return limits.name


def test_too_many_training_examples_text_and_multimodal(tiny_model: str) -> None:
    report = run(jsonl(*(good(i) for i in range(4))), role="training", base_model=tiny_model)
    assert report.error_counts == {"E_TOO_MANY_EXAMPLES": 1}
    image = {
        "contents": [
            {"role": "user", "parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x"}}]},
            {"role": "model", "parts": [{"text": "a"}]},
        ]
    }
    # two multimodal examples are within the multimodal cap (2) even though the file has 3 examples
    assert (
        "E_TOO_MANY_EXAMPLES"
        not in run(jsonl(good(1), image, image), role="training", base_model=tiny_model).error_counts
    )
    report = run(jsonl(image, image, image), role="training", base_model=tiny_model)
    issue = next(i for i in report.issues if i.code == "E_TOO_MANY_EXAMPLES")
    assert "3 multimodal examples" in issue.message


def test_file_size_limit_counts_bytes_read_or_the_given_size(tiny_model: str) -> None:
    small = jsonl(good(1))
    assert "E_FILE_TOO_LARGE" not in run(small, base_model=tiny_model).error_counts
    assert "E_FILE_TOO_LARGE" in run(small * 10, base_model=tiny_model).error_counts
    assert "E_FILE_TOO_LARGE" in run(small, base_model=tiny_model, size_bytes=10_000).error_counts


def test_examples_over_the_token_limit_are_warned_with_their_line(tiny_model: str) -> None:
    long = {"contents": [{"role": "user", "parts": [{"text": "x" * 60}]}, {"role": "model", "parts": [{"text": "y"}]}]}
    report = run(jsonl(good(1), long), base_model=tiny_model)
    issue = next(i for i in report.issues if i.code == "W_EXAMPLE_TOO_LONG")
    assert issue.line == 2 and issue.severity == "warning" and "drop" in issue.message
    assert report.stats.over_token_limit_examples == 1
    assert report.valid


def test_adapter_size_is_checked_against_the_model() -> None:
    assert run(jsonl(good()), adapter_size=16).error_counts == {}
    report = run(jsonl(good()), adapter_size=16, base_model="gemini-2.5-pro")
    assert report.error_counts == {"E_ADAPTER_SIZE_UNSUPPORTED": 1}
    assert "1, 2, 4, 8" in report.issues[0].message


def test_unknown_base_model_is_a_warning_with_fallback_limits() -> None:
    report = run(jsonl(good()), base_model="gemini-9-ultra")
    assert report.valid
    assert report.error_counts == {"W_UNKNOWN_BASE_MODEL": 1}
    assert not report.base_model_known
    assert report.limits.max_tokens_per_example == 131_072


def test_file_level_issues_come_first_then_lines_in_order() -> None:
    data = jsonl({"contents": []}, good(1), {"contents": "x"})
    report = run(data, role="training", adapter_size=3)
    lines = [issue.line for issue in report.issues]
    assert lines[:2] == [None, None]
    assert lines[2:] == [1, 3]


def test_max_errors_caps_the_listing_but_not_the_counts() -> None:
    distinct_errors = (b'{"contents":' + b" " * i + b"[]}\n" for i in range(30))
    data = jsonl(*distinct_errors, *(b"   \n" for _ in range(30)))
    report = run(data, max_errors=5)
    listed = [i.code for i in report.issues]
    assert listed.count("E_CONTENTS_EMPTY") == 5
    assert listed.count("W_BLANK_LINE") == 5
    assert report.error_counts["E_CONTENTS_EMPTY"] == 30
    assert report.error_counts["W_BLANK_LINE"] == 30
    assert report.listing_truncated
    as_json = report.to_json_dict()
    assert as_json["errors_count"] == 30 and as_json["warnings_count"] == 30
    assert len(as_json["errors"]) == 10


def test_max_errors_zero_lists_nothing_but_keeps_the_verdict() -> None:
    report = run(jsonl({"contents": []}), max_errors=0)
    assert report.issues == [] and not report.valid and report.error_counts == {"E_CONTENTS_EMPTY": 1}


def test_the_broken_example_dataset_shows_each_planted_mistake() -> None:
    path = Path(__file__).resolve().parents[3] / "examples" / "datasets" / "broken-faq" / "faq.jsonl"
    with path.open("rb") as stream:
        report = validate_stream(stream, ValidationOptions(source_name=str(path)))
    found = {(i.line, i.code) for i in report.issues}
    assert {
        (6, "E_FOREIGN_FORMAT"),
        (10, "E_ROLE_INVALID"),
        (14, "E_LAST_TURN_NOT_MODEL"),
        (18, "E_TEXT_EMPTY"),
        (22, "E_JSON_SYNTAX"),
        (25, "W_DUPLICATE_EXAMPLE"),
    } <= found
    assert not report.valid


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="role"):
        ValidationOptions(role="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_errors"):
        ValidationOptions(max_errors=-1)
    with pytest.raises(ValueError, match="epochs"):
        ValidationOptions(epochs=0)


def test_report_json_has_the_documented_shape() -> None:
    report = validate_stream(io.BytesIO(jsonl(good(), {"contents": []})), ValidationOptions(epochs=2))
    data = report.to_json_dict()
    assert {"valid", "errors", "error_counts", "stats"} <= set(data)
    assert data["valid"] is False
    for issue in data["errors"]:
        assert set(issue) == {"line", "path", "code", "severity", "message", "hint"}
    assert data["stats"]["billing"]["epochs"] == 2
