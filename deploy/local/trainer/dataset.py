"""Reading Gemini supervised-tuning JSONL into conversations the trainer can encode.

The trainer is lenient where training can still be done correctly (a missing ``role`` is
inferred from the turn's position, non-text parts are skipped and counted) and strict where it
cannot (a line that is not a JSON object, a turn without ``parts``, an unknown role, no model
turn to learn from). Strict validation with error codes lives in the dataset validator; this
reader only has to make sure training never guesses.

>>> parse_contents([{"parts": [{"text": "Hi"}]}, {"parts": [{"text": "Hello!"}]}]).turns
(Turn(role='user', text='Hi'), Turn(role='model', text='Hello!'))
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deploy.local.trainer.errors import DatasetParseError, TrainerError

Role = Literal["user", "model"]
_ROLES: dict[str, Role] = {"user": "user", "model": "model"}

# Gemini part kinds that carry no text; a text-only local model skips them (and counts them).
NON_TEXT_PART_KEYS = frozenset(
    {
        "fileData",
        "file_data",
        "inlineData",
        "inline_data",
        "functionCall",
        "function_call",
        "functionResponse",
        "function_response",
        "executableCode",
        "executable_code",
        "codeExecutionResult",
        "code_execution_result",
    }
)


class ContentsFormatError(TrainerError, ValueError):
    """Gemini ``contents`` (or a ``systemInstruction``) that cannot be read.

    ``json_path`` points at the offending value, e.g. ``contents[1].parts[0]``.
    """

    def __init__(self, json_path: str, reason: str) -> None:
        self.json_path = json_path
        self.reason = reason
        super().__init__(f"{json_path}: {reason}")


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation; ``text`` is the concatenation of its text parts."""

    role: Role
    text: str


@dataclass(frozen=True)
class ParsedContents:
    """A system instruction plus turns, with what had to be skipped."""

    system: str | None
    turns: tuple[Turn, ...]
    skipped_non_text_parts: int

    @property
    def characters(self) -> int:
        """Characters of text the model sees (system instruction included)."""
        return len(self.system or "") + sum(len(turn.text) for turn in self.turns)


@dataclass(frozen=True)
class Conversation(ParsedContents):
    """A parsed training example and the 1-based line it came from."""

    line: int = 0


def parse_contents(contents: Any, system_instruction: Any = None) -> ParsedContents:
    """Read Gemini ``contents`` (and an optional ``systemInstruction``) into turns.

    A turn without ``role`` gets ``user`` at even positions and ``model`` at odd ones, which
    is what the Gemini docs mean by "role may be omitted in single-turn examples".
    Raises ``ContentsFormatError`` naming the JSON path of the first problem.
    """
    if not isinstance(contents, list) or not contents:
        raise ContentsFormatError("contents", "must be a non-empty list of {role, parts} objects")
    skipped = 0
    turns: list[Turn] = []
    for index, content in enumerate(contents):
        where = f"contents[{index}]"
        if not isinstance(content, dict):
            raise ContentsFormatError(where, 'must be an object like {"role": "user", "parts": [{"text": "..."}]}')
        raw_role = content.get("role")
        role: Role
        if raw_role is None or raw_role == "":
            role = "user" if index % 2 == 0 else "model"
        elif isinstance(raw_role, str) and raw_role in _ROLES:
            role = _ROLES[raw_role]
        else:
            raise ContentsFormatError(f"{where}.role", f'must be "user" or "model", got {raw_role!r}')
        text, skipped_here = _parts_text(content.get("parts"), f"{where}.parts")
        skipped += skipped_here
        turns.append(Turn(role=role, text=text))
    system = None
    if system_instruction is not None:
        system, skipped_here = _system_text(system_instruction)
        skipped += skipped_here
    return ParsedContents(system=system, turns=tuple(turns), skipped_non_text_parts=skipped)


def read_conversations(path: Path) -> Iterator[Conversation]:
    """Yield one ``Conversation`` per non-blank line of a Gemini SFT JSONL file, streaming.

    Raises ``DatasetParseError(line, reason, path)`` at the first line that cannot be trained on.
    """
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield _parse_line(raw, line_number, path)


def _parse_line(raw: bytes, line_number: int, path: Path) -> Conversation:
    def fail(reason: str) -> DatasetParseError:
        return DatasetParseError(line_number, reason, path=path)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(f"not valid UTF-8 (byte {error.start}); save the file as UTF-8") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise fail('must be a JSON object like {"contents": [...]}')
    if "contents" not in record:
        hint = ""
        if "messages" in record:
            hint = " (this looks like OpenAI chat format; convert it with `sftpilot convert`)"
        elif "prompt" in record or "input_text" in record:
            hint = " (this looks like prompt/completion format; convert it with `sftpilot convert`)"
        raise fail(f'missing "contents"{hint}')
    system_instruction = record.get("systemInstruction", record.get("system_instruction"))
    try:
        parsed = parse_contents(record["contents"], system_instruction)
    except ContentsFormatError as error:
        raise fail(str(error)) from None
    if parsed.turns[0].role != "user":
        raise fail('contents[0] must be a "user" turn; the model answers, it does not speak first')
    if not any(turn.role == "model" for turn in parsed.turns):
        raise fail('no "model" turn to learn from; add the answer as {"role": "model", "parts": [{"text": ...}]}')
    return Conversation(
        system=parsed.system,
        turns=parsed.turns,
        skipped_non_text_parts=parsed.skipped_non_text_parts,
        line=line_number,
    )


def _parts_text(parts: Any, where: str) -> tuple[str, int]:
    if not isinstance(parts, list):
        raise ContentsFormatError(where, 'must be a list of parts like [{"text": "..."}]')
    texts: list[str] = []
    skipped = 0
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise ContentsFormatError(f"{where}[{index}]", 'must be an object like {"text": "..."}')
        text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
        elif text is not None:
            raise ContentsFormatError(f"{where}[{index}].text", "must be a string")
        elif NON_TEXT_PART_KEYS.intersection(part):
            skipped += 1
        else:
            raise ContentsFormatError(
                f"{where}[{index}]", "has none of text, fileData, inlineData, functionCall, functionResponse"
            )
    return "".join(texts), skipped


def _system_text(system_instruction: Any) -> tuple[str | None, int]:
    if isinstance(system_instruction, str):
        return system_instruction, 0
    if not isinstance(system_instruction, dict):
        raise ContentsFormatError("systemInstruction", 'must be an object like {"parts": [{"text": "..."}]}')
    text, skipped = _parts_text(system_instruction.get("parts"), "systemInstruction.parts")
    return (text or None), skipped
