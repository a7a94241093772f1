"""One table row per rule: a small input line, the code it must produce, where, and how bad."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from validation_helpers import example, good, jsonl, line_issues, run

from shared.validation.codes import CODES


@dataclass(frozen=True)
class Case:
    name: str
    line: Any  # an object (serialised) or raw bytes (a whole line, newline included)
    code: str
    path: str


def part_line(part: Any, role: str = "user") -> dict[str, Any]:
    other = "model" if role == "user" else "user"
    turns = [{"role": role, "parts": [part]}, {"role": other, "parts": [{"text": "ok"}]}]
    if role == "model":
        turns.reverse()
    return {"contents": turns}


CASES = [
    Case("invalid json", b'{"contents": [}\n', "E_JSON_SYNTAX", ""),
    Case("python repr", b"{'contents': []}\n", "E_JSON_SYNTAX", ""),
    Case("not utf-8", b'{"contents": "caf\xe9"}\n', "E_NOT_UTF8", ""),
    Case("array line", b"[1, 2]\n", "E_NOT_OBJECT", ""),
    Case("string line", b'"hello"\n', "E_NOT_OBJECT", ""),
    Case("blank line", b"   \n", "W_BLANK_LINE", ""),
    Case("bom in the middle", b'\xef\xbb\xbf{"contents": []}\n', "E_UTF8_BOM", ""),
    Case("contents missing", {"systemInstruction": {"parts": [{"text": "x"}]}}, "E_CONTENTS_MISSING", "contents"),
    Case("contents not list", {"contents": {"role": "user"}}, "E_CONTENTS_NOT_LIST", "contents"),
    Case("contents empty", {"contents": []}, "E_CONTENTS_EMPTY", "contents"),
    Case("unknown top-level key", {**good(), "metadata": {"id": 1}}, "E_UNKNOWN_KEY", "metadata"),
    Case("typo top-level key", {**good(), "systemInstructions": {"parts": []}}, "E_UNKNOWN_KEY", "systemInstructions"),
    Case(
        "turn not object",
        {"contents": ["hi", {"role": "model", "parts": [{"text": "x"}]}]},
        "E_CONTENT_NOT_OBJECT",
        "contents[0]",
    ),
    Case(
        "unknown content key",
        {
            "contents": [
                {"role": "user", "parts": [{"text": "q"}], "name": "bob"},
                {"role": "model", "parts": [{"text": "a"}]},
            ]
        },
        "E_UNKNOWN_KEY",
        "contents[0].name",
    ),
    Case("role assistant", example(("user", "q"), ("assistant", "a")), "E_ROLE_INVALID", "contents[1].role"),
    Case(
        "role system in contents",
        example(("system", "be nice"), ("user", "q"), ("model", "a")),
        "E_ROLE_INVALID",
        "contents[0].role",
    ),
    Case("role upper case", example(("User", "q"), ("model", "a")), "E_ROLE_INVALID", "contents[0].role"),
    Case(
        "role not a string",
        {"contents": [{"role": 1, "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "a"}]}]},
        "E_ROLE_INVALID",
        "contents[0].role",
    ),
    Case(
        "role missing multi-turn",
        example(("user", "q"), (None, "a"), ("user", "q2"), ("model", "a2")),
        "E_ROLE_MISSING",
        "contents[1].role",
    ),
    Case("role omitted single-turn", example((None, "q"), (None, "a")), "W_ROLE_OMITTED", "contents[0].role"),
    Case(
        "parts missing",
        {"contents": [{"role": "user"}, {"role": "model", "parts": [{"text": "a"}]}]},
        "E_PARTS_MISSING",
        "contents[0].parts",
    ),
    Case(
        "parts not list",
        {"contents": [{"role": "user", "parts": {"text": "q"}}, {"role": "model", "parts": [{"text": "a"}]}]},
        "E_PARTS_MISSING",
        "contents[0].parts",
    ),
    Case(
        "parts empty",
        {"contents": [{"role": "user", "parts": []}, {"role": "model", "parts": [{"text": "a"}]}]},
        "E_PARTS_EMPTY",
        "contents[0].parts",
    ),
    Case("part is a string", part_line("hello"), "E_PART_NOT_OBJECT", "contents[0].parts[0]"),
    Case("part empty object", part_line({}), "E_PART_NO_DATA", "contents[0].parts[0]"),
    Case("part misspelled key", part_line({"txt": "hello"}), "E_PART_NO_DATA", "contents[0].parts[0]"),
    Case(
        "part two data fields",
        part_line({"text": "a", "inlineData": {"mimeType": "image/png", "data": "AA=="}}),
        "E_PART_MULTIPLE_DATA",
        "contents[0].parts[0]",
    ),
    Case("text not string", part_line({"text": 42}), "E_TEXT_NOT_STRING", "contents[0].parts[0].text"),
    Case("text empty", part_line({"text": ""}), "E_TEXT_EMPTY", "contents[0].parts[0].text"),
    Case("text whitespace", part_line({"text": " \n "}), "W_TEXT_BLANK", "contents[0].parts[0].text"),
    Case(
        "fileData not object",
        part_line({"fileData": "gs://b/x.png"}),
        "E_FILE_DATA_INVALID",
        "contents[0].parts[0].fileData",
    ),
    Case(
        "fileData ftp uri",
        part_line({"fileData": {"mimeType": "image/png", "fileUri": "ftp://x/y.png"}}),
        "E_FILE_URI_INVALID",
        "contents[0].parts[0].fileData.fileUri",
    ),
    Case(
        "fileData uri missing",
        part_line({"fileData": {"mimeType": "image/png"}}),
        "E_FILE_URI_INVALID",
        "contents[0].parts[0].fileData.fileUri",
    ),
    Case(
        "fileData mime missing",
        part_line({"fileData": {"fileUri": "gs://b/x.png"}}),
        "E_MIME_TYPE_MISSING",
        "contents[0].parts[0].fileData.mimeType",
    ),
    Case(
        "fileData mime unsupported",
        part_line({"fileData": {"mimeType": "image/bmp", "fileUri": "gs://b/x.bmp"}}),
        "E_MIME_TYPE_UNSUPPORTED",
        "contents[0].parts[0].fileData.mimeType",
    ),
    Case(
        "inlineData without data",
        part_line({"inlineData": {"mimeType": "image/png"}}),
        "E_INLINE_DATA_INVALID",
        "contents[0].parts[0].inlineData.data",
    ),
    Case(
        "inlineData unsupported mime",
        part_line({"inlineData": {"mimeType": "application/zip", "data": "AA=="}}),
        "E_MIME_TYPE_UNSUPPORTED",
        "contents[0].parts[0].inlineData.mimeType",
    ),
    Case(
        "functionCall without name",
        part_line({"functionCall": {"args": {}}}, role="model"),
        "E_FUNCTION_CALL_INVALID",
        "contents[1].parts[0].functionCall.name",
    ),
    Case(
        "functionCall args not object",
        part_line({"functionCall": {"name": "f", "args": "x=1"}}, role="model"),
        "E_FUNCTION_CALL_INVALID",
        "contents[1].parts[0].functionCall.args",
    ),
    Case(
        "functionResponse without response",
        part_line({"functionResponse": {"name": "f"}}),
        "E_FUNCTION_RESPONSE_INVALID",
        "contents[0].parts[0].functionResponse.response",
    ),
    Case(
        "functionCall in a user turn",
        part_line({"functionCall": {"name": "f", "args": {}}}),
        "W_FUNCTION_PART_ROLE",
        "contents[0].parts[0].functionCall",
    ),
    Case(
        "systemInstruction string",
        {**good(), "systemInstruction": "be nice"},
        "E_SYSTEM_INSTRUCTION_INVALID",
        "systemInstruction",
    ),
    Case(
        "systemInstruction no parts",
        {**good(), "systemInstruction": {"role": "system"}},
        "E_SYSTEM_INSTRUCTION_INVALID",
        "systemInstruction.parts",
    ),
    Case(
        "systemInstruction media part",
        {**good(), "systemInstruction": {"parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x"}}]}},
        "E_SYSTEM_INSTRUCTION_INVALID",
        "systemInstruction.parts[0]",
    ),
    Case(
        "systemInstruction empty text",
        {**good(), "systemInstruction": {"parts": [{"text": ""}]}},
        "E_TEXT_EMPTY",
        "systemInstruction.parts[0].text",
    ),
    Case("tools not a list", {**good(), "tools": {"functionDeclarations": []}}, "E_TOOLS_INVALID", "tools"),
    Case(
        "first turn model",
        example(("model", "hello"), ("user", "q"), ("model", "a")),
        "E_FIRST_TURN_NOT_USER",
        "contents[0].role",
    ),
    Case(
        "last turn user",
        example(("user", "q"), ("model", "a"), ("user", "and?")),
        "E_LAST_TURN_NOT_MODEL",
        "contents[2].role",
    ),
    Case("only a user turn", example(("user", "q")), "E_LAST_TURN_NOT_MODEL", "contents[0].role"),
    Case(
        "two user turns in a row",
        example(("user", "q"), ("user", "q again"), ("model", "a")),
        "W_CONSECUTIVE_SAME_ROLE",
        "contents[1].role",
    ),
    Case("openai line in a gemini file", {"messages": [{"role": "user", "content": "q"}]}, "E_FOREIGN_FORMAT", ""),
    Case("prompt/completion line", {"prompt": "q", "completion": "a"}, "E_FOREIGN_FORMAT", ""),
    Case("input/output line", {"input_text": "q", "output_text": "a"}, "E_FOREIGN_FORMAT", ""),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule_reports_code_line_path_and_hint(case: Case) -> None:
    # The case sits on line 4 of a file of otherwise valid examples (so the file is Gemini format).
    data = jsonl(good(1), good(2), good(3), case.line, good(5))
    report = run(data)
    found = [issue for issue in line_issues(report) if issue.code == case.code]
    assert found, f"{case.code} not reported; got {[(i.line, i.code) for i in report.issues]}"
    issue = found[0]
    assert issue.line == 4
    assert issue.path == case.path
    assert issue.severity == CODES[case.code].severity
    assert issue.message and issue.hint
    # Nothing is reported on the valid neighbours.
    assert {i.line for i in line_issues(report)} == {4}
    assert report.valid is (CODES[case.code].severity == "warning" and report.errors_count == 0)


VALID_LINES = [
    ("plain single turn", good()),
    ("system instruction with role", {**good(), "systemInstruction": {"role": "system", "parts": [{"text": "x"}]}}),
    ("multi-turn", example(("user", "a"), ("model", "b"), ("user", "c"), ("model", "d"))),
    (
        "several text parts",
        {
            "contents": [
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}]},
            ]
        },
    ),
    ("image by gs uri", part_line({"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/cat.jpg"}})),
    ("pdf inline", part_line({"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}})),
    (
        "snake_case spellings",
        {
            "system_instruction": {"parts": [{"text": "x"}]},
            "contents": [
                {"role": "user", "parts": [{"file_data": {"mime_type": "image/png", "file_uri": "gs://b/x.png"}}]},
                {"role": "model", "parts": [{"text": "a cat"}]},
            ],
        },
    ),
    (
        "tools and function calling",
        {
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"y": 2}}}]},
                {"role": "model", "parts": [{"text": "y is 2"}]},
            ],
        },
    ),
    ("unicode text", example(("user", "¿Dónde está la estación? 駅はどこ"), ("model", "À gauche 👉"))),
]


@pytest.mark.parametrize("obj", [case[1] for case in VALID_LINES], ids=[case[0] for case in VALID_LINES])
def test_valid_shapes_produce_no_issue(obj: dict[str, Any]) -> None:
    report = run(jsonl(good(1), obj, good(3)))
    assert line_issues(report) == []
    assert report.valid


def test_json_error_names_the_character_column() -> None:
    line = '{"contents": [{"role": "user", "parts": [{"text": "héllo"}]}, oops]}\n'
    report = run(line.encode())
    issue = next(i for i in report.issues if i.code == "E_JSON_SYNTAX")
    assert f"column {line.index('oops') + 1}" in issue.message


def test_not_utf8_names_the_byte() -> None:
    report = run(b'{"contents": "caf\xe9"}\n')
    issue = next(i for i in report.issues if i.code == "E_NOT_UTF8")
    assert "0xe9" in issue.message and "byte 18" in issue.message


def test_unknown_key_suggests_the_close_spelling() -> None:
    report = run(jsonl({**good(), "systemInstructions": {"parts": [{"text": "x"}]}}))
    issue = next(i for i in report.issues if i.code == "E_UNKNOWN_KEY")
    assert "'systemInstruction'" in issue.hint


def test_assistant_role_hint_says_model() -> None:
    report = run(jsonl(example(("user", "q"), ("assistant", "a"))))
    issue = next(i for i in report.issues if i.code == "E_ROLE_INVALID")
    assert '"model"' in issue.hint


def test_json_array_line_hint_mentions_one_example_per_line() -> None:
    report = run(json.dumps([good(1), good(2)]).encode() + b"\n")
    issue = next(i for i in report.issues if i.code == "E_NOT_OBJECT")
    assert "one example per line" in issue.hint


def test_one_line_can_carry_several_issues_each_with_its_own_path() -> None:
    line = {"contents": [{"role": "assistant", "parts": [{"text": ""}]}, {"role": "user", "parts": []}]}
    report = run(jsonl(line))
    found = {(i.code, i.path) for i in report.issues if i.line == 1}
    assert ("E_ROLE_INVALID", "contents[0].role") in found
    assert ("E_TEXT_EMPTY", "contents[0].parts[0].text") in found
    assert ("E_PARTS_EMPTY", "contents[1].parts") in found
    assert ("E_LAST_TURN_NOT_MODEL", "contents[1].role") in found
