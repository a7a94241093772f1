from __future__ import annotations

from pathlib import Path

import pytest
from trainer_test_data import model_turn, user_turn, write_jsonl

from deploy.local.trainer.dataset import ContentsFormatError, Turn, parse_contents, read_conversations
from deploy.local.trainer.errors import DatasetParseError


def test_missing_roles_alternate_user_then_model() -> None:
    parsed = parse_contents([{"parts": [{"text": "Q"}]}, {"parts": [{"text": "A"}]}])

    assert parsed.turns == (Turn("user", "Q"), Turn("model", "A"))


def test_text_parts_are_concatenated_and_non_text_parts_counted() -> None:
    parsed = parse_contents(
        [
            {
                "role": "user",
                "parts": [
                    {"text": "Look at "},
                    {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}},
                    {"text": "this."},
                ],
            },
            {
                "role": "model",
                "parts": [{"inline_data": {"mimeType": "image/png", "data": "AA=="}}, {"text": "A cat."}],
            },
        ]
    )

    assert parsed.turns == (Turn("user", "Look at this."), Turn("model", "A cat."))
    assert parsed.skipped_non_text_parts == 2


@pytest.mark.parametrize(
    "system_instruction",
    [{"parts": [{"text": "Be brief."}]}, {"role": "system", "parts": [{"text": "Be brief."}]}, "Be brief."],
)
def test_system_instruction_forms(system_instruction: object) -> None:
    parsed = parse_contents([user_turn("Q"), model_turn("A")], system_instruction)

    assert parsed.system == "Be brief."
    assert parsed.characters == len("Be brief.") + 2


@pytest.mark.parametrize(
    ("contents", "json_path"),
    [
        ([], "contents"),
        ([{"role": "assistant", "parts": [{"text": "x"}]}], "contents[0].role"),
        ([{"role": "user", "parts": "hello"}], "contents[0].parts"),
        ([user_turn("Q"), {"role": "model", "parts": [{"txt": "A"}]}], "contents[1].parts[0]"),
        ([user_turn("Q"), {"role": "model", "parts": [{"text": 3}]}], "contents[1].parts[0].text"),
        ([user_turn("Q"), ["not", "an", "object"]], "contents[1]"),
    ],
)
def test_unreadable_contents_name_the_json_path(contents: object, json_path: str) -> None:
    with pytest.raises(ContentsFormatError) as raised:
        parse_contents(contents)

    assert raised.value.json_path == json_path


def test_reads_every_example_and_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"contents": [user_turn("one"), model_turn("1")]},
            "",
            {"systemInstruction": {"parts": [{"text": "S"}]}, "contents": [user_turn("two"), model_turn("2")]},
        ],
    )

    conversations = list(read_conversations(path))

    assert [conversation.line for conversation in conversations] == [1, 3]
    assert conversations[1].system == "S"
    assert conversations[1].turns[1] == Turn("model", "2")


@pytest.mark.parametrize(
    ("bad_line", "reason_part"),
    [
        ('{"contents": [', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "OpenAI chat format"),
        ('{"prompt": "hi", "completion": "there"}', "prompt/completion format"),
        ('{"contents": [{"role": "model", "parts": [{"text": "A"}]}]}', 'must be a "user" turn'),
        ('{"contents": [{"role": "user", "parts": [{"text": "Q"}]}]}', 'no "model" turn'),
        (
            '{"contents": [{"role": "user", "parts": [{"text": "Q"}]}, {"role": "bot", "parts": []}]}',
            "contents[1].role",
        ),
    ],
)
def test_a_broken_line_raises_with_its_line_number(tmp_path: Path, bad_line: str, reason_part: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"contents": [user_turn("Q"), model_turn("A")]}, "", bad_line])

    with pytest.raises(DatasetParseError) as raised:
        list(read_conversations(path))

    assert raised.value.line == 3
    assert raised.value.path == path
    assert reason_part in raised.value.reason
    assert str(raised.value).startswith("train.jsonl line 3: ")


def test_invalid_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    valid = b'{"contents": [{"role": "user", "parts": [{"text": "Q"}]}, {"role": "model", "parts": [{"text": "A"}]}]}'
    path.write_bytes(valid + b"\n\xff\xfe\n")

    with pytest.raises(DatasetParseError) as raised:
        list(read_conversations(path))

    assert raised.value.line == 2
    assert "UTF-8" in raised.value.reason
