"""Reading: any chunking gives the same report, iterables work, memory stays bounded, errors are clear."""

from __future__ import annotations

import io
from typing import Any

import pytest
from validation_helpers import FIXTURES, good, jsonl, run

from shared.validation import DatasetReadError, ValidationOptions, validate_stream
from shared.validation import validator as validator_module


class TrickleReader:
    """A stream that returns at most ``step`` bytes per read (like a slow network reader)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


def summary(report: Any) -> tuple[Any, ...]:
    return (
        report.valid,
        [(i.line, i.path, i.code) for i in report.issues],
        report.error_counts,
        report.stats.to_dict() | {"bytes": None},
    )


MIXED = (
    jsonl(good(1), good(2))
    + b"\xef\xbb\xbf"
    + jsonl(good(3))
    + b"\r\n"
    + jsonl({"contents": []}, good(1))
    + b'{"contents": [}\r\n'
    + jsonl({"messages": []})
    + b'{"contents":[{"role":"user","parts":[{"text":"last line without newline"}]},'
    b'{"role":"model","parts":[{"text":"ok"}]}]}'
)


@pytest.mark.parametrize("step", [1, 2, 7, 64, 1000])
def test_report_does_not_depend_on_how_the_stream_is_chunked(step: int) -> None:
    expected = summary(validate_stream(io.BytesIO(MIXED), ValidationOptions(role="validation")))
    got = summary(validate_stream(TrickleReader(MIXED, step), ValidationOptions(role="validation")))
    assert got == expected


def test_iterable_of_lines_gives_the_same_report_as_a_stream() -> None:
    lines = io.BytesIO(MIXED).readlines()
    expected = summary(validate_stream(io.BytesIO(MIXED), ValidationOptions(role="validation")))
    assert summary(validate_stream(lines, ValidationOptions(role="validation"))) == expected


def test_mixed_input_reports_the_expected_lines() -> None:
    report = run(MIXED)
    assert [(i.line, i.code) for i in report.issues] == [
        (3, "E_UTF8_BOM"),
        (4, "W_CRLF_LINE_ENDINGS"),
        (4, "W_BLANK_LINE"),
        (5, "E_CONTENTS_EMPTY"),
        (6, "W_DUPLICATE_EXAMPLE"),
        (7, "E_JSON_SYNTAX"),
        (8, "E_FOREIGN_FORMAT"),
    ]
    assert report.stats.lines == 9
    assert report.stats.blank_lines == 1
    assert report.example_count == 8
    assert report.stats.crlf_lines == 2


def test_duplicates_name_the_first_occurrence() -> None:
    report = run(jsonl(good(1), good(2), good(1), good(1)))
    duplicates = [i for i in report.issues if i.code == "W_DUPLICATE_EXAMPLE"]
    assert [(i.line, i.message) for i in duplicates] == [
        (3, "this example is identical to line 1"),
        (4, "this example is identical to line 1"),
    ]
    assert report.stats.duplicates == 2
    assert report.stats.duplicate_detection_complete


def test_duplicate_table_saturates_without_hanging_and_says_so() -> None:
    # The size hint makes a 4096-slot table (3072 entries); 4000 distinct lines overflow it.
    data = jsonl(*(good(i) for i in range(4000)), good(1))
    report = run(data, size_bytes=100)
    assert not report.stats.duplicate_detection_complete
    assert report.stats.duplicates == 1  # line 2 was stored before the table filled up
    assert report.valid


def test_a_huge_line_is_skipped_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validator_module, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(validator_module, "CHUNK_BYTES", 256)
    huge = b'{"contents": "' + b"x" * 5000 + b'"}\n'
    for step in (64, 100_000):
        report = validate_stream(
            TrickleReader(jsonl(good(1)) + huge + jsonl(good(2)), step), ValidationOptions(role="validation")
        )
        assert [(i.line, i.code) for i in report.issues] == [(2, "E_LINE_TOO_LONG")]
        assert "5,016 bytes" in report.issues[0].message
        assert report.stats.measured_examples == 2


def test_huge_last_line_without_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validator_module, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(validator_module, "CHUNK_BYTES", 256)
    report = validate_stream(TrickleReader(jsonl(good(1)) + b"x" * 3000, 100), ValidationOptions(role="validation"))
    assert [(i.line, i.code) for i in report.issues] == [(2, "E_LINE_TOO_LONG")]


def test_progress_is_reported_with_growing_byte_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validator_module, "PROGRESS_EVERY_BYTES", 1000)
    data = jsonl(*(good(i) for i in range(200)))
    seen: list[int] = []
    validate_stream(io.BytesIO(data), ValidationOptions(), progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == len(data)
    assert len(seen) >= 2


class FailingReader:
    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("connection reset by peer")
        return jsonl(good(1))


def test_read_errors_become_dataset_read_errors() -> None:
    with pytest.raises(DatasetReadError) as caught:
        validate_stream(FailingReader(), ValidationOptions(source_name="gs://b/train.jsonl"))
    assert caught.value.path == "gs://b/train.jsonl"
    assert "connection reset" in caught.value.reason


def test_text_mode_streams_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="binary"):
        validate_stream(io.StringIO('{"contents": []}\n'), ValidationOptions())  # type: ignore[arg-type]


def test_a_real_file_object_works(tmp_path: Any) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes((FIXTURES / "valid_text_18.jsonl").read_bytes())
    with path.open("rb") as stream:
        report = validate_stream(stream, ValidationOptions(size_bytes=path.stat().st_size))
    assert report.valid and report.stats.bytes_read == path.stat().st_size
