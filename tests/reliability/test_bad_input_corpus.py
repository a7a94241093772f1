"""The bad input corpus: malformed datasets, configs and object names. Zero crashes; every rejection
names its line (where a line is at fault) and its reason; nothing is written outside ``reports/``.

Corpus files live in ``corpus/datasets`` and ``corpus/configs``, named after what they are; each has
an expectation below (the code and the line, or the config path), and a file without one fails
the suite. Big inputs (64 MiB lines, 10,000-deep nesting, a 10 MB tuning.yaml) are generated here.
The five bugs this corpus found (deep JSON, deep YAML, a YAML bomb, dot-only names, stranded
records on unforeseen errors) are fixed; their tests stay as regression tests.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import ConfigProblem, TuningConfigError
from shared.intake import IntakeOutcomeKind
from shared.states import JobStatus
from shared.tuning_config import MAX_CONFIG_BYTES, load_defaults, parse_tuning_yaml
from shared.validation import ValidationOptions, ValidationReport, validate_stream
from shared.validation.codes import CODES, FILE_LEVEL_CODES
from shared.validation.validator import MAX_LINE_BYTES

from .harness import BUCKET, Pipeline, examples

CORPUS = Path(__file__).parent / "corpus"
DATASETS = CORPUS / "datasets"
CONFIGS = CORPUS / "configs"
ROOT = Path(__file__).resolve().parents[2]
WHOLE_FILE_CODES = FILE_LEVEL_CODES | {"E_FOREIGN_FORMAT"}
"""Codes about the whole file (no line); every other error must name its line."""

DATASET_EXPECTATIONS: dict[str, tuple[str, int | None]] = {
    # encodings and binary files
    "utf16_le_bom.jsonl": ("E_NOT_UTF8", 1),
    "utf16_be_bom.jsonl": ("E_NOT_UTF8", 1),
    "utf16_le_no_bom.jsonl": ("E_NOT_UTF8", 1),
    "utf32_bom.jsonl": ("E_NOT_UTF8", 1),
    "utf8_bom.jsonl": ("E_UTF8_BOM", 1),
    "latin1_line_9.jsonl": ("E_NOT_UTF8", 9),
    "cp1252_smart_quotes_line_9.jsonl": ("E_NOT_UTF8", 9),
    "lone_continuation_byte_line_9.jsonl": ("E_NOT_UTF8", 9),
    "overlong_utf8_slash_line_9.jsonl": ("E_NOT_UTF8", 9),
    "utf8_encoded_surrogate_line_9.jsonl": ("E_NOT_UTF8", 9),
    "truncated_multibyte_at_eof.jsonl": ("E_NOT_UTF8", 21),
    "gzip_compressed.jsonl": ("E_NOT_UTF8", 1),
    "zip_archive.jsonl": ("E_NOT_UTF8", 1),
    "parquet_magic.jsonl": ("E_NOT_UTF8", 1),
    "png_image.jsonl": ("E_NOT_UTF8", 1),
    "elf_binary.jsonl": ("E_NOT_UTF8", 1),
    "nul_bytes_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    # framing and JSON syntax
    "empty.jsonl": ("E_EMPTY_FILE", None),
    "blank_lines_only.jsonl": ("E_EMPTY_FILE", None),
    "whitespace_only.jsonl": ("E_EMPTY_FILE", None),
    "pretty_printed_object.jsonl": ("E_JSON_SYNTAX", 1),
    "json_array_file.jsonl": ("E_JSON_SYNTAX", 1),
    "single_json_array_line.jsonl": ("E_NOT_OBJECT", 1),
    "truncated_last_line.jsonl": ("E_JSON_SYNTAX", 20),
    "trailing_comma_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "python_dict_single_quotes_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "nan_literal_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "raw_control_char_in_string_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "lone_surrogate_escape_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "two_objects_on_one_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "huge_integer_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "deeply_nested_arrays_2000_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "deeply_nested_objects_2000_line_9.jsonl": ("E_JSON_SYNTAX", 9),
    "crlf_with_bad_line_9.jsonl": ("E_CONTENTS_NOT_LIST", 9),
    # lines that are JSON but not examples
    "line_is_array_line_9.jsonl": ("E_NOT_OBJECT", 9),
    "line_is_string_line_9.jsonl": ("E_NOT_OBJECT", 9),
    "line_is_number_line_9.jsonl": ("E_NOT_OBJECT", 9),
    "line_is_null_line_9.jsonl": ("E_NOT_OBJECT", 9),
    "contents_missing_line_9.jsonl": ("E_CONTENTS_MISSING", 9),
    "contents_empty_line_9.jsonl": ("E_CONTENTS_EMPTY", 9),
    "contents_is_object_line_9.jsonl": ("E_CONTENTS_NOT_LIST", 9),
    "contents_is_string_line_9.jsonl": ("E_CONTENTS_NOT_LIST", 9),
    "role_assistant_line_9.jsonl": ("E_ROLE_INVALID", 9),
    "role_system_in_contents_line_9.jsonl": ("E_ROLE_INVALID", 9),
    "role_not_a_string_line_9.jsonl": ("E_ROLE_INVALID", 9),
    "starts_with_model_line_9.jsonl": ("E_FIRST_TURN_NOT_USER", 9),
    "ends_with_user_line_9.jsonl": ("E_LAST_TURN_NOT_MODEL", 9),
    "parts_missing_line_9.jsonl": ("E_PARTS_MISSING", 9),
    "parts_empty_line_9.jsonl": ("E_PARTS_EMPTY", 9),
    "part_with_two_data_fields_line_9.jsonl": ("E_PART_MULTIPLE_DATA", 9),
    "part_empty_object_line_9.jsonl": ("E_PART_NO_DATA", 9),
    "text_empty_line_9.jsonl": ("E_TEXT_EMPTY", 9),
    "text_is_number_line_9.jsonl": ("E_TEXT_NOT_STRING", 9),
    # (an https:// fileUri is valid now: "a publicly available HTTP or HTTPS URL", every modality page)
    "file_data_ftp_uri_line_9.jsonl": ("E_FILE_URI_INVALID", 9),
    "too_many_images_line_9.jsonl": ("E_TOO_MANY_MEDIA", 9),
    "file_data_missing_mime_line_9.jsonl": ("E_MIME_TYPE_MISSING", 9),
    "file_data_exe_mime_line_9.jsonl": ("E_MIME_TYPE_UNSUPPORTED", 9),
    "unknown_top_level_key_line_9.jsonl": ("E_UNKNOWN_KEY", 9),
    "system_instruction_string_line_9.jsonl": ("E_SYSTEM_INSTRUCTION_INVALID", 9),
    "function_call_args_not_object_line_9.jsonl": ("E_FUNCTION_CALL_INVALID", 9),
    "many_bad_lines_every_other.jsonl": ("E_ROLE_INVALID", 1),
    # whole-file verdicts
    "openai_chat_messages.jsonl": ("E_FOREIGN_FORMAT", None),
    "prompt_completion.jsonl": ("E_FOREIGN_FORMAT", None),
    "input_text_output_text.jsonl": ("E_FOREIGN_FORMAT", None),
    # too_few_examples_3.jsonl left the corpus: no minimum is documented any more, so a 3-example
    # file is valid with W_FEW_EXAMPLES (tests/unit/validation/fixtures/rules/few_examples_3.jsonl)
}
"""Corpus dataset -> (a code it must be rejected with, the line it must name; None = whole file)."""

CONFIG_EXPECTATIONS: dict[str, tuple[str, str]] = {
    "yaml_syntax_unclosed_bracket.yaml": ("", "line 3"),
    "yaml_tab_indentation.yaml": ("", "line 2"),
    "yaml_duplicate_key.yaml": ("", "duplicate key 'epochs'"),
    "yaml_python_object_tag.yaml": ("", "python/object/apply"),
    "yaml_not_utf8_latin1.yaml": ("", "not UTF-8"),
    "yaml_binary_nul.yaml": ("", "not UTF-8"),
    "yaml_alias_loop_labels.yaml": ("", "recursive"),
    "yaml_bomb_billion_laughs.yaml": ("description", "string"),
    "top_level_list.yaml": ("(top level)", "mapping"),
    "top_level_scalar.yaml": ("(top level)", "mapping"),
    "unknown_top_level_key_typo.yaml": ("epoch", "unknown key"),
    "unknown_nested_key_typo.yaml": ("smoke_test.promtps", "unknown key"),
    "epochs_negative.yaml": ("epochs", "-1"),
    "epochs_string.yaml": ("epochs", "lots"),
    "epochs_yes_boolean.yaml": ("epochs", "boolean"),
    "epochs_float.yaml": ("epochs", "2.5"),
    "adapter_size_3.yaml": ("adapter_size", "got 3"),
    "learning_rate_zero.yaml": ("learning_rate_multiplier", "greater than 0"),
    "learning_rate_infinite.yaml": ("learning_rate_multiplier", "inf"),
    "smoke_regex_invalid.yaml": ("smoke_test.prompts[0].regex", "regular expression"),
    "smoke_prompt_missing.yaml": ("smoke_test.prompts[0].prompt", "required"),
    "smoke_prompts_not_a_list.yaml": ("smoke_test.prompts", "list"),
    "smoke_max_chars_zero.yaml": ("smoke_test.prompts[0].max_chars", "got 0"),
    "labels_reserved_managed_by.yaml": ("labels.managed-by", "reserved"),
    "labels_bad_value_uppercase.yaml": ("labels.team", "ML Team"),
    "display_name_unknown_placeholder.yaml": ("display_name", "{user}"),
    "display_name_unbalanced_brace.yaml": ("display_name", "template"),
    "validation_dataset_path_traversal.yaml": ("validation_dataset", "'..'"),
    "validation_dataset_absolute_gs_uri.yaml": ("validation_dataset", "gs://other-bucket"),
    "kms_key_malformed.yaml": ("kms_key_name", "my-key"),
    "service_account_not_email.yaml": ("service_account", "robot"),
    "cleanup_keep_last_zero.yaml": ("cleanup.keep_last", "got 0"),
    "cleanup_enabled_string.yaml": ("cleanup.enabled", "true or false"),
    "lineage_uppercase_spaces.yaml": ("lineage", "Support Bot"),
    "several_problems_at_once.yaml": ("smoke_test.timeout_seconds", "9999"),
}
"""Corpus config -> (a dotted path it must be rejected at, a fragment of that problem's message).
Path ``""`` is the whole file (YAML itself is broken); its message names the line when YAML knows it."""


def corpus(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "README.md")


# --- the corpus itself ----------------------------------------------------------------------------


def test_the_corpus_has_at_least_50_inputs_and_an_expectation_for_each():
    datasets, configs = corpus(DATASETS), corpus(CONFIGS)
    assert len(datasets) + len(configs) >= 50
    assert sorted(DATASET_EXPECTATIONS) == datasets, "every corpus dataset needs an expectation, and only those"
    assert sorted(CONFIG_EXPECTATIONS) == configs, "every corpus config needs an expectation, and only those"
    assert all(code in CODES for code, _ in DATASET_EXPECTATIONS.values())


def assert_explained(report: ValidationReport, code: str, line: int | None) -> None:
    """Rejected with ``code`` at ``line``; every issue has a known code, message, hint; line errors name a line."""
    assert not report.valid
    assert (line, code) in {(i.line, i.code) for i in report.issues}, [(i.line, i.code) for i in report.issues][:8]
    for issue in report.issues:
        assert issue.code in CODES and issue.severity == CODES[issue.code].severity
        assert issue.message.strip() and issue.hint.strip()
        if issue.code not in WHOLE_FILE_CODES:
            assert issue.line is not None and issue.line >= 1, f"{issue.code} does not name its line"
    json.dumps(report.to_json_dict())


@pytest.mark.parametrize("name", sorted(DATASET_EXPECTATIONS), ids=str)
def test_every_corpus_dataset_is_rejected_by_the_validator_naming_line_and_reason(name: str):
    code, line = DATASET_EXPECTATIONS[name]
    data = (DATASETS / name).read_bytes()
    assert_explained(validate_stream(io.BytesIO(data), ValidationOptions()), code, line)
    # The same bytes as an iterable of lines (how the CLI feeds stdin) reach the same verdict.
    by_lines = validate_stream(iter(io.BytesIO(data).readlines()), ValidationOptions())
    assert by_lines.valid is False and by_lines.error_counts == validate_stream(io.BytesIO(data)).error_counts


@pytest.mark.parametrize("name", sorted(DATASET_EXPECTATIONS), ids=str)
def test_every_corpus_dataset_is_rejected_by_the_intake_with_report_and_event(pipe: Pipeline, name: str):
    code, line = DATASET_EXPECTATIONS[name]
    event = pipe.upload(f"datasets/corpus/{name}", (DATASETS / name).read_bytes())
    before = pipe.blob_names()

    outcome = pipe.deliver(event)

    assert outcome.kind is IntakeOutcomeKind.REJECTED and outcome.reason.strip()
    record = pipe.record(event)
    assert record.status is JobStatus.REJECTED and record.error.code == "E_DATASET_INVALID"
    assert (line, code) in {(i["line"], i["code"]) for i in record.validation.issues}
    report_name = f"reports/corpus/{record.dataset.stem}/{event.generation}/validation.json"
    assert pipe.blob_names() - before == {report_name}, "the report is the only thing written"
    report = json.loads(pipe.blobs.read_bytes(BUCKET, report_name))
    assert report["valid"] is False and code in report["training"]["error_counts"]
    [rejected] = pipe.publisher.of_type("dataset.rejected")
    assert rejected.data["reason"] and code in rejected.data["error_counts"]
    assert all(e["code"] and e["message"] for e in rejected.data["errors"])
    assert rejected.data["report_uri"] == f"gs://{BUCKET}/{report_name}"
    assert pipe.tuning.jobs == {} and pipe.tuning.calls["create_job"] == 0


# --- big inputs, generated ------------------------------------------------------------------------


class Generated(io.RawIOBase):
    """A read-only stream of ``(bytes, repeat)`` runs, produced lazily (a 64 MiB line costs no memory)."""

    def __init__(self, *runs: tuple[bytes, int]) -> None:
        self._runs: Iterator[tuple[bytes, int]] = iter(runs)
        self._pattern, self._pos, self._end = b"", 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._pos == self._end:
            run = next(self._runs, None)
            if run is None:
                return 0
            self._pattern, count = run
            self._pos, self._end = 0, len(self._pattern) * count
        size = min(len(buffer), self._end - self._pos)
        width = len(self._pattern)
        offset = self._pos % width
        buffer[:size] = (self._pattern * (size // width + 2))[offset : offset + size]
        self._pos += size
        return size


GOOD_LINE = examples(1)


def stream(*runs: tuple[bytes, int]) -> io.BufferedReader:
    return io.BufferedReader(Generated(*runs), buffer_size=1 << 20)


def test_a_line_longer_than_the_limit_is_rejected_by_number_and_the_rest_is_still_checked():
    huge = ((b'{"contents":[{"role":"user","parts":[{"text":"', 1), (b"x", MAX_LINE_BYTES), (b'"}]}]}\n', 1))
    source = stream((GOOD_LINE, 20), *huge, (GOOD_LINE, 20), (b'{"contents": 1}\n', 1), (GOOD_LINE, 5))

    report = validate_stream(source, ValidationOptions())

    assert_explained(report, "E_LINE_TOO_LONG", 21)
    assert (42, "E_CONTENTS_NOT_LIST") in {(i.line, i.code) for i in report.issues}
    assert report.stats.examples == 47 and report.stats.bytes_read > MAX_LINE_BYTES


def test_a_huge_unterminated_last_line_is_rejected_by_number():
    report = validate_stream(stream((GOOD_LINE, 20), (b"[", MAX_LINE_BYTES + 10)), ValidationOptions())
    assert_explained(report, "E_LINE_TOO_LONG", 21)


def test_a_long_line_within_the_limit_is_validated_not_rejected():
    text = b"y" * (8 << 20)
    line = (
        b'{"contents":[{"role":"user","parts":[{"text":"' + text + b'"}]},{"role":"model","parts":[{"text":"ok"}]}]}\n'
    )
    report = validate_stream(io.BytesIO(GOOD_LINE * 20 + line), ValidationOptions())
    assert report.errors_count == 0
    # ~2M tokens: Vertex drops such an example instead of failing, so it is a warning on its line.
    assert {(i.line, i.code) for i in report.issues if i.code == "W_EXAMPLE_TOO_LONG"} == {(21, "W_EXAMPLE_TOO_LONG")}


def test_nesting_10000_deep_is_a_json_error_on_its_line():
    line = b'{"contents":' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"
    report = validate_stream(io.BytesIO(GOOD_LINE * 8 + line + GOOD_LINE * 8), ValidationOptions())
    assert_explained(report, "E_JSON_SYNTAX", 9)


def _nested_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


DEEP_VALUES: dict[str, tuple[bytes, str]] = {
    "tools": (
        b'{"tools":[' + _nested_object(300) + b'],"contents":[{"role":"user","parts":[{"text":"q"}]},'
        b'{"role":"model","parts":[{"text":"a"}]}]}',
        "E_",
    ),
    "function_call_args": (
        b'{"contents":[{"role":"user","parts":[{"text":"q"}]},{"role":"model","parts":[{"functionCall":'
        b'{"name":"f","args":' + _nested_object(300) + b'}}]},{"role":"user","parts":[{"functionResponse":'
        b'{"name":"f","response":{"a":1}}}]},{"role":"model","parts":[{"text":"a"}]}]}',
        "E_",
    ),
    "role": (
        b'{"contents":[{"role":' + _nested_array(300) + b',"parts":[{"text":"q"}]},'
        b'{"role":"model","parts":[{"text":"a"}]}]}',
        "E_ROLE_INVALID",
    ),
    "file_uri": (
        b'{"contents":[{"role":"user","parts":[{"fileData":{"mimeType":"image/png","fileUri":'
        + _nested_array(300)
        + b'}}]},{"role":"model","parts":[{"text":"a"}]}]}',
        "E_FILE_URI_INVALID",
    ),
    "mime_type": (
        b'{"contents":[{"role":"user","parts":[{"fileData":{"mimeType":'
        + _nested_array(300)
        + b',"fileUri":"gs://b/x.png"}}]},{"role":"model","parts":[{"text":"a"}]}]}',
        "E_MIME_TYPE",
    ),
}
"""A value 300 levels deep (orjson parses up to 1024) in each place the validator re-serialises or quotes."""


@pytest.mark.parametrize("where", list(DEEP_VALUES), ids=str)
def test_a_value_nested_300_deep_anywhere_is_reported_not_crashed_on(where: str):
    line, code_prefix = DEEP_VALUES[where]
    report = validate_stream(io.BytesIO(GOOD_LINE * 8 + line + b"\n" + GOOD_LINE * 8), ValidationOptions())
    if not report.valid:
        assert any(i.line == 9 and i.code.startswith(code_prefix) for i in report.issues)


# --- configs --------------------------------------------------------------------------------------


def assert_config_rejected(problems: list[ConfigProblem], path: str, fragment: str) -> None:
    assert problems, "a rejection lists its problems"
    matching = [p for p in problems if p.path == path]
    assert matching, f"no problem at {path!r}: {[p.path for p in problems]}"
    assert any(fragment in p.message for p in matching), [p.message for p in matching]
    for problem in problems:
        assert problem.message.strip() and problem.source.strip()


ISOLATED = {"yaml_bomb_billion_laughs.yaml"}
"""Configs run only in a child process with a memory and time limit, so a regression cannot hang the suite."""


@pytest.mark.parametrize("name", sorted(set(CONFIG_EXPECTATIONS) - ISOLATED), ids=str)
def test_every_corpus_config_is_rejected_with_a_path_per_problem(name: str):
    path, fragment = CONFIG_EXPECTATIONS[name]
    with pytest.raises(TuningConfigError) as caught:
        parse_tuning_yaml((CONFIGS / name).read_bytes(), name)
    assert_config_rejected(caught.value.problems, path, fragment)
    assert all(p.source == name for p in caught.value.problems)


@pytest.mark.parametrize("name", sorted(set(CONFIG_EXPECTATIONS) - ISOLATED), ids=str)
def test_every_corpus_config_rejects_the_dataset_through_the_intake(pipe: Pipeline, name: str):
    path, fragment = CONFIG_EXPECTATIONS[name]
    pipe.blobs.put(BUCKET, "datasets/corpus/tuning.yaml", (CONFIGS / name).read_bytes())
    event = pipe.upload("datasets/corpus/v1.jsonl", examples(20))

    outcome = pipe.deliver(event)

    assert outcome.kind is IntakeOutcomeKind.REJECTED and "tuning.yaml" in outcome.reason
    record = pipe.record(event)
    problems = [ConfigProblem(**p) for p in record.validation.config_errors]
    assert_config_rejected(problems, path, fragment)
    assert {p.source for p in problems} == {f"gs://{BUCKET}/datasets/corpus/tuning.yaml"}
    [rejected] = pipe.publisher.of_type("dataset.rejected")
    assert rejected.data["config_errors"] == record.validation.config_errors
    assert pipe.tuning.jobs == {}


def _in_a_child(code: str, *args: str, timeout: float = 5) -> dict:
    """Run ``code`` in a fresh interpreter limited to 384 MiB and ``timeout`` s (a correct parse takes < 0.5 s)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (384 << 20, 384 << 20))

    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            timeout=timeout,
            preexec_fn=limit,  # the child runs no threads before exec: safe
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout"}
    lines = done.stdout.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {"outcome": f"exit {done.returncode}: {done.stderr.decode()[-300:]}"}


PARSE_IN_CHILD = """
import json, sys
from shared.errors import TuningConfigError
from shared.tuning_config import parse_tuning_yaml
try:
    parse_tuning_yaml(open(sys.argv[1], "rb").read(), "bomb")
    print(json.dumps({"outcome": "parsed"}))
except TuningConfigError as exc:
    print(json.dumps({"outcome": "rejected", "problems": [p.to_dict() for p in exc.problems]}))
except BaseException as exc:
    print(json.dumps({"outcome": type(exc).__name__}))
"""


def test_a_yaml_bomb_is_rejected_quickly_without_expanding_it():
    result = _in_a_child(PARSE_IN_CHILD, str(CONFIGS / "yaml_bomb_billion_laughs.yaml"))
    assert result["outcome"] == "rejected", result
    path, fragment = CONFIG_EXPECTATIONS["yaml_bomb_billion_laughs.yaml"]
    assert_config_rejected([ConfigProblem(**p) for p in result["problems"]], path, fragment)


def _deep_yaml(depth: int) -> bytes:
    return b"epochs: " + b"[" * depth + b"]" * depth + b"\n"


def test_a_deeply_nested_tuning_yaml_is_a_config_problem():
    with pytest.raises(TuningConfigError) as caught:
        parse_tuning_yaml(_deep_yaml(5000), "deep.yaml")
    assert caught.value.problems[0].path in {"", "epochs"}


def test_a_deeply_nested_tuning_yaml_rejects_the_dataset_instead_of_dropping_the_upload(pipe: Pipeline):
    pipe.blobs.put(BUCKET, "datasets/corpus/tuning.yaml", _deep_yaml(5000))
    event = pipe.upload("datasets/corpus/v1.jsonl", examples(20))
    assert pipe.deliver(event).kind is IntakeOutcomeKind.REJECTED
    assert pipe.record(event).validation.config_errors


def test_a_10_mb_tuning_yaml_is_a_config_problem_not_a_read_of_10_mb(pipe: Pipeline, tmp_path: Path):
    big = b"description: '" + b"x" * (10 << 20) + b"'\n"
    pipe.blobs.put(BUCKET, "datasets/corpus/tuning.yaml", big)
    event = pipe.upload("datasets/corpus/v1.jsonl", examples(20))

    assert pipe.deliver(event).kind is IntakeOutcomeKind.REJECTED
    [problem] = pipe.record(event).validation.config_errors
    assert problem["path"] == "" and str(MAX_CONFIG_BYTES) in problem["message"]
    assert pipe.tuning.jobs == {}

    defaults = tmp_path / "defaults.yaml"
    defaults.write_bytes(big)
    with pytest.raises(TuningConfigError, match="larger than"):
        load_defaults(str(defaults))


# --- object names ---------------------------------------------------------------------------------


OBJECT_NAMES: list[tuple[str, IntakeOutcomeKind, str]] = [
    ("datasets/../x.jsonl", IntakeOutcomeKind.REJECTED, "'..' path segment"),
    ("datasets/a/../../b.jsonl", IntakeOutcomeKind.REJECTED, "'..' path segment"),
    ("datasets/../reports/faq/v1.jsonl", IntakeOutcomeKind.REJECTED, "'..' path segment"),
    ("datasets/faq/../../reports/x.jsonl", IntakeOutcomeKind.REJECTED, "'..' path segment"),
    ("datasets/faq/./v1.jsonl", IntakeOutcomeKind.REJECTED, "'.' path segment"),
    ("datasets//v1.jsonl", IntakeOutcomeKind.REJECTED, "empty path segment"),
    ("datasets/faq//v1.jsonl", IntakeOutcomeKind.REJECTED, "empty path segment"),
    ("datasets/faq/v1\n.jsonl", IntakeOutcomeKind.REJECTED, "control character"),
    ("datasets/faq/v\x00.jsonl", IntakeOutcomeKind.REJECTED, "control character"),
    ("datasets/faq/\x1b[31mred.jsonl", IntakeOutcomeKind.REJECTED, "control character"),
    ("datasets/faq/v1#2.jsonl", IntakeOutcomeKind.REJECTED, "'#'"),
    ("datasets/v1.jsonl", IntakeOutcomeKind.REJECTED, "lineage folder"),
    ("datasets/FAQ Bot/v1.jsonl", IntakeOutcomeKind.REJECTED, "not a valid lineage"),
    ("datasets/.hidden/v1.jsonl", IntakeOutcomeKind.REJECTED, "not a valid lineage"),
    ("datasets/" + "l" * 64 + "/v1.jsonl", IntakeOutcomeKind.REJECTED, "not a valid lineage"),
    ("datasets/faq/.jsonl", IntakeOutcomeKind.REJECTED, "empty file name"),
    ("datasets/faq/" + "a" * 1000 + ".jsonl", IntakeOutcomeKind.REJECTED, "display_name"),
    ("other/faq/v1.jsonl", IntakeOutcomeKind.IGNORED, "outside the datasets prefix"),
    ("/datasets/faq/v1.jsonl", IntakeOutcomeKind.IGNORED, "outside the datasets prefix"),
    ("reports/faq/v1.jsonl", IntakeOutcomeKind.IGNORED, "own report"),
    ("reports/../datasets/faq/v1.jsonl", IntakeOutcomeKind.IGNORED, "own report"),
    ("datasets/faq/v1.validation.jsonl", IntakeOutcomeKind.IGNORED, "validation set"),
    ("datasets/faq/", IntakeOutcomeKind.IGNORED, "folder"),
    ("datasets/faq/v1.jsonl/", IntakeOutcomeKind.IGNORED, "folder"),
    ("datasets/faq/v1.JSONL", IntakeOutcomeKind.IGNORED, "not a .jsonl"),
    ("datasets/faq/tuning.yaml", IntakeOutcomeKind.IGNORED, "not a .jsonl"),
    ("datasets/faq/%2e%2e/v1.jsonl", IntakeOutcomeKind.SUBMITTED, "tuning job"),
    ("datasets/faq/ünïcode-数据.jsonl", IntakeOutcomeKind.SUBMITTED, "tuning job"),
    pytest.param(
        "datasets/faq/..jsonl",
        IntakeOutcomeKind.REJECTED,
        "",
    ),
    pytest.param(
        "datasets/faq/...jsonl",
        IntakeOutcomeKind.REJECTED,
        "",
    ),
]


@pytest.mark.parametrize(("name", "kind", "reason"), OBJECT_NAMES)
def test_hostile_object_names_are_ignored_or_rejected_with_a_reason_and_never_written_outside_reports(
    pipe: Pipeline, name: str, kind: IntakeOutcomeKind, reason: str
):
    before = pipe.blob_names()
    event = pipe.upload(name, examples(20))
    before.add(name)

    outcome = pipe.deliver(event)

    assert outcome.kind is kind, outcome.reason
    assert reason in outcome.reason
    written = pipe.blob_names() - before
    for object_name in written:
        assert object_name.startswith("reports/"), object_name
        segments = object_name.split("/")
        assert "." not in segments and ".." not in segments and "" not in segments, object_name
        assert not any(ord(c) < 32 for c in object_name), object_name
    if kind is IntakeOutcomeKind.IGNORED:
        assert pipe.jobs.all() == [] and written == set() and pipe.publisher.published == []
    if kind is IntakeOutcomeKind.REJECTED:
        assert pipe.record(event).status is JobStatus.REJECTED
        assert [e.event_type for e in pipe.publisher.published] == ["dataset.rejected"]
    assert (pipe.tuning.calls["create_job"] == 1) is (kind is IntakeOutcomeKind.SUBMITTED)
