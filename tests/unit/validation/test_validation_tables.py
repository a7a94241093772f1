"""The code table, the per-model limits table and foreign-format detection."""

from __future__ import annotations

import io
import json
import re

import pytest

from shared.validation import ValidationOptions, validate_stream
from shared.validation.codes import CODES, FILE_LEVEL_CODES, severity_of
from shared.validation.formats import convert_command, detect_foreign_format, suggested_output_name
from shared.validation.limits import (
    FALLBACK_LIMITS,
    MODEL_LIMITS,
    estimate_text_tokens,
    media_kind,
    media_tokens,
    normalize_model_name,
    resolve_limits,
)


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_is_well_formed(code: str) -> None:
    spec = CODES[code]
    assert re.fullmatch(r"[EW]_[A-Z0-9_]+", code)
    assert spec.severity == ("error" if code.startswith("E_") else "warning")
    assert spec.title and spec.hint.endswith((".", ")"))


def test_the_issue_names_from_the_interface_exist() -> None:
    for code in ("E_ROLE_INVALID", "E_JSON_SYNTAX", "W_FEW_EXAMPLES", "E_FOREIGN_FORMAT", "W_UNKNOWN_BASE_MODEL"):
        assert code in CODES
    assert severity_of("E_EMPTY_FILE") == "error"
    assert {"E_EMPTY_FILE", "E_TOO_FEW_EXAMPLES", "E_FILE_TOO_LARGE"} <= FILE_LEVEL_CODES
    with pytest.raises(KeyError):
        severity_of("E_MADE_UP")


def test_the_table_has_the_supported_models() -> None:
    assert set(MODEL_LIMITS) == {
        "gemini-3.5-flash",
        "gemini-3.5-flash-lite",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro",
        "gemini-2.0-flash-001",
        "gemini-2.0-flash-lite-001",
    }
    flash = MODEL_LIMITS["gemini-2.5-flash"]
    assert flash.max_tokens_per_example == 131_072
    assert flash.max_validation_examples == 5_000
    # no documented minimum any more (the 16 was the retired 1.0/1.5 page): only the recommendation
    assert flash.min_examples == 0 and flash.recommended_min_examples == 100
    assert flash.max_training_examples_text == 1_000_000 and flash.max_training_examples_multimodal == 300_000
    assert flash.adapter_sizes == (1, 2, 4, 8, 16)
    assert MODEL_LIMITS["gemini-2.5-pro"].adapter_sizes == (1, 2, 4, 8)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("gemini-2.5-flash", "gemini-2.5-flash"),
        (" Gemini-2.5-Flash ", "gemini-2.5-flash"),
        ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("publishers/google/models/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("models/gemini-2.0-flash", "gemini-2.0-flash-001"),
        ("gemini-2.0-flash-lite", "gemini-2.0-flash-lite-001"),
    ],
)
def test_model_names_are_normalised(given: str, expected: str) -> None:
    assert normalize_model_name(given) == expected
    limits, known = resolve_limits(given)
    assert known and limits.name == expected


def test_unknown_models_get_the_fallback() -> None:
    assert resolve_limits("palm-2") == (FALLBACK_LIMITS, False)


def test_token_and_media_helpers() -> None:
    assert [estimate_text_tokens(n) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]
    assert [media_kind(m) for m in ("image/png", "video/mp4", "audio/wav", "application/pdf", "text/plain")] == [
        "image",
        "video",
        "audio",
        "document",
        "text_file",
    ]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ({"messages": [{"role": "user", "content": "q"}]}, "openai"),
        ({"context": "c", "messages": [{"author": "user", "content": "q"}]}, "openai"),
        ({"prompt": "q", "completion": "a"}, "prompt-completion"),
        ({"input_text": "q", "output_text": "a"}, "input-output"),
        ({"text_input": "q", "output": "a"}, "input-output"),
        ({"textInput": "q", "output": "a"}, "input-output"),
    ],
)
def test_foreign_formats_are_recognised(line: dict[str, object], name: str) -> None:
    fmt = detect_foreign_format(line)
    assert fmt is not None and fmt.name == name


@pytest.mark.parametrize("line", [{"contents": []}, {"prompt": "q"}, {}, [], "x", {"messages": "no"}])
def test_other_lines_are_not_foreign(line: object) -> None:
    assert detect_foreign_format(line) is None


def test_convert_command_is_copy_pasteable() -> None:
    fmt = detect_foreign_format({"prompt": "q", "completion": "a"})
    assert fmt is not None
    assert convert_command(fmt, "data/my set.jsonl") == (
        "sftpilot convert 'data/my set.jsonl' 'my set.gemini.jsonl' --from prompt-completion"
    )
    assert suggested_output_name("gs://bucket/datasets/faq/v1.jsonl") == "v1.gemini.jsonl"
    assert suggested_output_name(None) == "converted.gemini.jsonl"


# --- issue 15: media token estimates follow the documented figures ------------------------------


def test_media_token_estimates_follow_the_documented_figures_per_family_and_resolution() -> None:
    assert media_tokens("image", "gemini-2", None) == 258
    assert media_tokens("image", "gemini-2", "MEDIA_RESOLUTION_LOW") == 64
    assert media_tokens("video", "gemini-2", None) == 263 * 60  # one minute assumed
    assert media_tokens("audio", "gemini-2", None) == 32 * 60
    assert media_tokens("image", "gemini-3", None) == 1120
    assert media_tokens("image", "gemini-3", "MEDIA_RESOLUTION_MEDIUM") == 560
    assert media_tokens("image", "gemini-3", "MEDIA_RESOLUTION_LOW") == 280
    assert media_tokens("video", "gemini-3", None) == (70 + 32) * 60
    assert media_tokens("document", "gemini-3", None) == 560 * 10


def test_an_example_s_media_resolution_changes_its_token_estimate() -> None:
    def tokens(config: dict[str, str] | None, model: str) -> int:
        example: dict[str, object] = {
            "contents": [
                {"role": "user", "parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}}]},
                {"role": "model", "parts": [{"text": "abcd"}]},
            ]
        }
        if config:
            example["generationConfig"] = config
        data = json.dumps(example).encode() + b"\n"
        report = validate_stream(io.BytesIO(data), ValidationOptions(role="validation", base_model=model))
        return report.stats.input_tokens.total

    assert tokens(None, "gemini-2.5-flash") == 258
    assert tokens({"mediaResolution": "MEDIA_RESOLUTION_LOW"}, "gemini-2.5-flash") == 64
    assert tokens(None, "gemini-3.5-flash") == 1120
