"""Real-world shapes and one file per documented rule, through the real ``sftpilot validate`` CLI.

``fixtures/official/`` holds Google's examples, one example per line (JSONL), with the page each
comes from in :data:`OFFICIAL`; ``fixtures/rules/`` one small file per rule of issue 15. Each row
says: the options, whether the file is valid, the exit code, and the first line of the "Errors"
section (None when valid). Sources were read on 2026-12-04 (see shared/validation/limits.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures"
FUNCTION_CALLING = "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/function-calling"

OFFICIAL: dict[str, str] = {
    # verbatim (pretty-printed on the page, one line here)
    "function_calling_text.jsonl": FUNCTION_CALLING,
    "function_calling_chat.jsonl": FUNCTION_CALLING,  # the functionResponse turn has no role
    "function_calling_parallel.jsonl": FUNCTION_CALLING,
    # the pages' shapes; their verbatim text was not readable through the documentation search
    "text_dataset_example.jsonl": "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/supervised-tuning/prepare-data.md.txt",
    "image_media_resolution.jsonl": "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/image",
    "video_media_resolution.jsonl": "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/video",
    "document_media_resolution.jsonl": "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/document.md.txt",
    "audio_example.jsonl": "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/audio.md.txt",
}

# file -> (extra CLI options, valid, exit code, first error line or None)
RULES: dict[str, tuple[tuple[str, ...], bool, int, str | None]] = {
    "https_file_uri.jsonl": ((), True, 0, None),
    "ftp_file_uri.jsonl": ((), False, 1, "line 2  contents[0].parts[1].fileData.fileUri  E_FILE_URI_INVALID"),
    "few_examples_3.jsonl": ((), True, 0, None),
    "text_10_examples.jsonl": ((), True, 0, None),
    "images_30.jsonl": ((), True, 0, None),
    "too_many_images_31.jsonl": ((), False, 1, "line 1  contents  E_TOO_MANY_MEDIA"),
    "two_audio_files.jsonl": ((), False, 1, "line 1  contents  E_TOO_MANY_MEDIA"),
    "two_videos.jsonl": ((), False, 1, "line 1  contents  E_TOO_MANY_MEDIA"),
    "mixed_media_resolution.jsonl": (
        (),
        False,
        1,
        "line 2  generationConfig.mediaResolution  E_MEDIA_RESOLUTION_MIXED",
    ),
    "bad_media_resolution.jsonl": (
        (),
        False,
        1,
        "line 1  generationConfig.mediaResolution  E_GENERATION_CONFIG_INVALID",
    ),
    "per_part_media_resolution.jsonl": (
        (),
        False,
        1,
        "line 1  contents[0].parts[1].mediaResolution  E_PART_MEDIA_RESOLUTION_UNSUPPORTED",
    ),
    "audio_types_from_docs.jsonl": ((), True, 0, None),
    "mime_unlisted.jsonl": ((), False, 1, "line 1  contents[0].parts[1].fileData.mimeType  E_MIME_TYPE_UNSUPPORTED"),
    "function_name_invalid.jsonl": (
        (),
        False,
        1,
        "line 1  tools[0].functionDeclarations[0].name  E_FUNCTION_DECLARATION_INVALID",
    ),
    "function_name_missing.jsonl": (
        (),
        False,
        1,
        "line 1  tools[0].functionDeclarations[0].name  E_FUNCTION_DECLARATION_INVALID",
    ),
    "function_schema_json_schema_keyword.jsonl": (
        (),
        False,
        1,
        "line 1  tools[0].functionDeclarations[0].parameters.$schema  E_FUNCTION_DECLARATION_INVALID",
    ),
    "function_schema_bad_type.jsonl": (
        (),
        False,
        1,
        "line 1  tools[0].functionDeclarations[0].parameters.properties.city.type  E_FUNCTION_DECLARATION_INVALID",
    ),
    "function_empty_object_schema.jsonl": ((), True, 0, None),
    "assistant_role.jsonl": ((), False, 1, "line 1  contents[1].role  E_ROLE_INVALID"),
    "gemini_1_0_messages.jsonl": ((), False, 1, "file  E_FOREIGN_FORMAT: this file is in the Gemini 1.0 Pro"),
}

# the same files against other rows of the limits table (--base-model / --adapter-size)
MODEL_RULES: list[tuple[str, tuple[str, ...], bool, str | None]] = [
    ("per_part_media_resolution.jsonl", ("--base-model", "gemini-3.5-flash"), True, None),
    ("text_10_examples.jsonl", ("--base-model", "gemini-2.0-flash", "--adapter-size", "8"), True, None),
    (
        "text_10_examples.jsonl",
        ("--base-model", "gemini-2.0-flash", "--adapter-size", "16"),
        False,
        "file  adapterSize  E_ADAPTER_SIZE_UNSUPPORTED: adapter size 16 is not allowed for gemini-2.0-flash-001 "
        "(allowed: 1, 2, 4, 8)",
    ),
    ("text_10_examples.jsonl", ("--base-model", "gemini-2.5-flash", "--adapter-size", "16"), True, None),
    (
        "text_10_examples.jsonl",
        ("--base-model", "gemini-2.5-pro", "--adapter-size", "16"),
        False,
        "file  adapterSize  E_ADAPTER_SIZE_UNSUPPORTED",
    ),
]


def run(path: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path), *options])
    return result.exit_code, result.stdout


def first_error_line(out: str) -> str | None:
    lines = out.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Errors ("):
            return lines[index + 1].strip()
    return None


def test_every_fixture_file_has_a_row_and_one_example_per_line() -> None:
    assert sorted(p.name for p in (FIXTURES / "official").glob("*.jsonl")) == sorted(OFFICIAL)
    assert sorted(p.name for p in (FIXTURES / "rules").glob("*.jsonl")) == sorted(RULES)
    for path in (FIXTURES / "official").glob("*.jsonl"):
        assert all(isinstance(json.loads(line), dict) for line in path.read_text().splitlines())


@pytest.mark.parametrize("role", ["training", "validation"])
@pytest.mark.parametrize("name", sorted(OFFICIAL), ids=str)
def test_official_examples_pass(name: str, role: str) -> None:
    code, out = run(FIXTURES / "official" / name, "--role", role)
    assert code == 0, (OFFICIAL[name], first_error_line(out))
    assert first_error_line(out) is None


@pytest.mark.parametrize("name", sorted(RULES), ids=str)
def test_rule_fixture_verdict_exit_code_and_first_error_line(name: str) -> None:
    options, valid, exit_code, first = RULES[name]
    code, out = run(FIXTURES / "rules" / name, *options)
    assert code == exit_code, out
    assert ("result                VALID" in out) is valid, out
    if first is None:
        assert first_error_line(out) is None
    else:
        error = first_error_line(out)
        assert error is not None and error.startswith(first), error


@pytest.mark.parametrize(("name", "options", "valid", "first"), MODEL_RULES, ids=str)
def test_base_model_and_adapter_size_select_one_row(
    name: str, options: tuple[str, ...], valid: bool, first: str | None
) -> None:
    code, out = run(FIXTURES / "rules" / name, *options)
    assert code == (0 if valid else 1), out
    error = first_error_line(out)
    assert (error is None) if first is None else (error is not None and error.startswith(first)), error


def test_few_examples_is_a_warning_naming_the_recommendation() -> None:
    code, out = run(FIXTURES / "rules" / "few_examples_3.jsonl")
    assert code == 0
    assert "W_FEW_EXAMPLES: 3 examples; Google recommends starting with 100 (no minimum is documented)" in out


def test_unlisted_mime_type_names_the_allowed_ones() -> None:
    _, out = run(FIXTURES / "rules" / "mime_unlisted.jsonl")
    assert "Supported audio types: audio/x-aac, audio/flac, audio/mp3" in out


def test_assistant_hint_says_what_to_edit_and_convert_fixes_it(tmp_path: Path) -> None:
    source = FIXTURES / "rules" / "assistant_role.jsonl"
    _, out = run(source)
    assert 'fix: Replace "role": "assistant" with "role": "model" in this line' in out
    converted = tmp_path / "fixed.jsonl"
    result = CliRunner().invoke(main, ["convert", str(source), str(converted), "--from", "openai"])
    assert result.exit_code == 0, result.output
    assert json.loads(converted.read_text())["contents"][1]["role"] == "model"
    assert run(converted)[0] == 0


def test_report_says_media_tokens_are_estimates() -> None:
    result = CliRunner().invoke(
        main, ["validate", str(FIXTURES / "official" / "image_media_resolution.jsonl"), "--json"]
    )
    report = json.loads(result.stdout)
    assert report["stats"]["tokens"]["method"].startswith("estimate:")
