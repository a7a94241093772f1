"""Converting foreign formats: mapping rules, failures with reasons, and outputs that validate."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from validation_helpers import FIXTURES

from shared.validation import ValidationOptions, validate_stream
from shared.validation.convert import ConversionError, convert_example, convert_stream


def convert_lines(data: bytes, fmt: str) -> tuple[Any, list[dict[str, Any]]]:
    sink = io.BytesIO()
    result = convert_stream(io.BytesIO(data), sink, fmt)
    return result, [json.loads(line) for line in sink.getvalue().splitlines()]


def test_openai_system_and_assistant_are_mapped() -> None:
    example, notes = convert_example(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        "openai",
    )
    assert example == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
        ],
    }
    assert notes == ["system_to_instruction"]


def test_openai_tool_calls_become_function_parts() -> None:
    obj = json.loads((FIXTURES / "openai_chat_6.jsonl").read_text().splitlines()[2])
    example, notes = convert_example(obj, "openai")
    assert [content["role"] for content in example["contents"]] == ["user", "model", "user", "model"]
    assert example["contents"][1]["parts"] == [{"functionCall": {"name": "get_usage", "args": {"project": "demo"}}}]
    assert example["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_usage", "response": {"storage_gb": 42}}}
    ]
    assert example["tools"][0]["functionDeclarations"][0]["name"] == "get_usage"
    assert "tool_calls" in notes


def test_consecutive_same_role_messages_are_merged() -> None:
    example, notes = convert_example(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": "API?"},
                {"role": "assistant", "content": "Yes"},
            ]
        },
        "openai",
    )
    assert example["contents"][0] == {"role": "user", "parts": [{"text": "Hi"}, {"text": "API?"}]}
    assert notes == ["turns_merged"]


def test_chat_bison_context_and_authors() -> None:
    example, _ = convert_example(
        {
            "context": "You are a bot.",
            "messages": [{"author": "user", "content": "q"}, {"author": "bot", "content": "a"}],
        },
        "openai",
    )
    assert example["systemInstruction"] == {"parts": [{"text": "You are a bot."}]}
    assert [content["role"] for content in example["contents"]] == ["user", "model"]


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("gs://b/cat.png", {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}}),
        ("data:image/jpeg;base64,AAAA", {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}),
    ],
)
def test_openai_image_parts(url: str, part: dict[str, Any]) -> None:
    example, _ = convert_example(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "What is it?"},
                    ],
                },
                {"role": "assistant", "content": "A cat."},
            ]
        },
        "openai",
    )
    assert example["contents"][0]["parts"] == [part, {"text": "What is it?"}]


@pytest.mark.parametrize(
    ("obj", "fmt", "reason"),
    [
        ({"messages": []}, "openai", "non-empty"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}, "openai", "empty"),
        ({"messages": [{"role": "narrator", "content": "q"}]}, "openai", "unknown role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
            "openai",
            "neither gs://",
        ),
        ({"messages": [{"role": "tool", "content": "{}"}]}, "openai", "no known tool call"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]},
            "openai",
            "not valid JSON",
        ),
        ({"prompt": "q"}, "prompt-completion", "expected keys"),
        ({"prompt": "q", "completion": 3}, "prompt-completion", "not a string"),
        ({"prompt": "q", "completion": "  "}, "prompt-completion", "empty"),
        ({"input_text": "q"}, "input-output", "expected keys"),
        ([1, 2], "openai", "not an object"),
    ],
)
def test_unconvertible_examples_say_why(obj: Any, fmt: str, reason: str) -> None:
    with pytest.raises(ConversionError) as caught:
        convert_example(obj, fmt)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("fixture", "fmt", "converted", "failed_lines"),
    [
        ("openai_chat_6.jsonl", "openai", 5, [6]),
        ("prompt_completion_6.jsonl", "prompt-completion", 5, [6]),
        ("input_output_5.jsonl", "input-output", 5, []),
    ],
)
def test_fixture_conversion_reports_failed_lines_and_output_validates(
    fixture: str, fmt: str, converted: int, failed_lines: list[int]
) -> None:
    result, examples = convert_lines((FIXTURES / fixture).read_bytes(), fmt)
    assert result.converted == converted == len(examples)
    assert [failure.line for failure in result.failures] == failed_lines
    assert result.ok is (not failed_lines)
    output = b"".join(json.dumps(example).encode() + b"\n" for example in examples)
    report = validate_stream(io.BytesIO(output), ValidationOptions(role="validation"))
    assert report.valid, report.issues
    assert report.foreign_format is None


def test_gemini_lines_are_copied_and_blank_or_broken_lines_handled() -> None:
    gemini = {"contents": [{"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "a"}]}]}
    data = json.dumps(gemini).encode() + b"\n\n{broken\n" + json.dumps({"prompt": "p", "completion": "c"}).encode()
    result, examples = convert_lines(data, "prompt-completion")
    assert examples[0] == gemini and len(examples) == 2
    assert result.notes == {"already_gemini": 1, "blank_lines": 1}
    assert [(f.line, f.reason.split(":")[0]) for f in result.failures] == [(3, "invalid JSON")]
    assert result.lines == 4


def test_failure_listing_is_capped_but_counted() -> None:
    data = b"[]\n" * 10
    sink = io.BytesIO()
    result = convert_stream(io.BytesIO(data), sink, "openai", max_failures=3)
    assert result.failure_count == 10 and len(result.failures) == 3 and sink.getvalue() == b""


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        convert_stream(io.BytesIO(b""), io.BytesIO(), "csv")


def test_conversion_reads_chunked_streams_and_iterables() -> None:
    lines = [json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}).encode() + b"\n" for i in range(50)]
    data = b"".join(lines)

    class Trickle:
        def __init__(self) -> None:
            self.stream = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self.stream.read(5)

    for source in (Trickle(), lines):
        sink = io.BytesIO()
        result = convert_stream(source, sink, "prompt-completion")
        assert result.converted == 50
        assert json.loads(sink.getvalue().splitlines()[49])["contents"][1]["parts"][0]["text"] == "a49"


# --- issue 15: convert output passes the documented rules ------------------------------------------


def test_openai_tools_become_declarations_that_pass_the_function_declaration_rules() -> None:
    obj = {
        "messages": [
            {"role": "user", "content": "Time in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"time": "10:00"}'},
            {"role": "assistant", "content": "It is 10:00."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "strict": True,
                    "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "properties": {"city": {"type": ["string", "null"]}, "unit": {"const": "C"}},
                        "required": ["city"],
                    },
                },
            },
        ],
    }
    example, notes = convert_example(obj, "openai")
    declarations = example["tools"][0]["functionDeclarations"]
    assert declarations[0] == {"name": "get_time"}  # empty object schema dropped: no arguments
    weather = declarations[1]["parameters"]
    assert "$schema" not in weather and weather["properties"]["city"] == {"type": "string", "nullable": True}
    assert weather["properties"]["unit"] == {"enum": ["C"]}
    assert {"tool_keys_dropped", "empty_parameters_dropped"} <= set(notes)
    report = validate_stream(io.BytesIO(json.dumps(example).encode() + b"\n"), ValidationOptions(role="validation"))
    assert report.valid and not report.issues, report.issues


def test_a_weight_zero_message_is_never_silently_trained_on() -> None:
    obj = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "bad answer", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "good answer", "weight": 1},
        ]
    }
    with pytest.raises(ConversionError) as caught:
        convert_example(obj, "openai")
    assert "messages[1] has weight 0" in caught.value.reason


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        ("Classify: great movie\n\n###\n\n", " positive\n", {"legacy_separator_kept", "stop_sequence_kept"}),
        ("Translate: cat ->", " chat END", {"legacy_separator_kept", "stop_sequence_kept"}),
        ("Translate: cat", "chat", set()),
    ],
)
def test_legacy_separators_and_stop_words_are_kept_and_warned_about(
    prompt: str, completion: str, expected: set[str]
) -> None:
    example, notes = convert_example({"prompt": prompt, "completion": completion}, "prompt-completion")
    assert example["contents"][0]["parts"][0]["text"] == prompt  # kept: the user's data decides
    assert set(notes) == expected


def test_gemini_lines_with_assistant_role_are_fixed_by_convert() -> None:
    line = {"contents": [{"role": "user", "parts": [{"text": "q"}]}, {"role": "Assistant", "parts": [{"text": "a"}]}]}
    example, notes = convert_example(line, "openai")
    assert example["contents"][1]["role"] == "model" and notes == ["roles_renamed"]


def test_https_image_urls_are_kept_as_file_data() -> None:
    obj = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg?x=1"}}]},
            {"role": "assistant", "content": "A cat."},
        ]
    }
    example, _ = convert_example(obj, "openai")
    assert example["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg?x=1"}}
    ]


def test_the_gemini_1_0_messages_format_converts_to_a_valid_file() -> None:
    source = (Path(__file__).parent / "fixtures" / "rules" / "gemini_1_0_messages.jsonl").read_bytes()
    result, examples = convert_lines(source, "openai")
    assert result.ok and result.converted == 2
    assert [turn["role"] for turn in examples[0]["contents"]] == ["user", "model"]
