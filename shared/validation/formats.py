"""Recognise the other tuning-data formats people commonly have, so the validator can say
"this is OpenAI chat format, convert it with ..." instead of one error per line.

Example:
    >>> detect_foreign_format({"messages": [{"role": "user", "content": "hi"}]}).name
    'openai'
    >>> detect_foreign_format({"contents": []}) is None
    True
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final


@dataclass(frozen=True, slots=True)
class ForeignFormat:
    """A recognised non-Gemini format: its ``--from`` name for ``sftpilot convert`` and a description."""

    name: str
    description: str


OPENAI: Final = ForeignFormat("openai", 'OpenAI chat format ("messages" with role/content)')
GEMINI_1_0: Final = ForeignFormat(
    "openai", 'the Gemini 1.0 Pro tuning format ("messages" with role user/model and content)'
)
"""The retired gemini-1.0-pro-002 format; ``convert --from openai`` reads it (role ``model`` kept)."""
CHAT_BISON: Final = ForeignFormat("openai", 'PaLM chat-bison format ("context" + "messages" with author/content)')
PROMPT_COMPLETION: Final = ForeignFormat("prompt-completion", 'prompt/completion format ("prompt", "completion")')
INPUT_OUTPUT: Final = ForeignFormat("input-output", 'input/output format ("input_text", "output_text")')
TEXT_INPUT_OUTPUT: Final = ForeignFormat("input-output", 'AI Studio format ("text_input"/"textInput", "output")')

CONVERT_FORMATS: Final[tuple[str, ...]] = ("openai", "prompt-completion", "input-output")
"""The ``--from`` values ``sftpilot convert`` accepts."""

INPUT_KEYS: Final[tuple[str, ...]] = ("input_text", "text_input", "textInput", "input")
OUTPUT_KEYS: Final[tuple[str, ...]] = ("output_text", "output")


def detect_foreign_format(obj: object) -> ForeignFormat | None:
    """The foreign format ``obj`` (one parsed JSONL line) is in, or None (Gemini or unknown)."""
    if not isinstance(obj, dict) or "contents" in obj:
        return None
    messages = obj.get("messages")
    if isinstance(messages, list):
        first = next((m for m in messages if isinstance(m, dict)), None)
        if first is not None and "author" in first:
            return CHAT_BISON
        roles = {m.get("role") for m in messages if isinstance(m, dict)}
        if "model" in roles and "assistant" not in roles:
            return GEMINI_1_0
        return OPENAI
    if "prompt" in obj and "completion" in obj:
        return PROMPT_COMPLETION
    if "input_text" in obj and "output_text" in obj:
        return INPUT_OUTPUT
    if ("text_input" in obj or "textInput" in obj) and "output" in obj:
        return TEXT_INPUT_OUTPUT
    return None


def suggested_output_name(source: str | None) -> str:
    """A sensible OUT for the convert hint: ``train.jsonl`` -> ``train.gemini.jsonl`` (local file)."""
    if not source or source == "-":
        return "converted.gemini.jsonl"
    name = PurePosixPath(source.rstrip("/")).name or "dataset.jsonl"
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return f"{stem}.gemini.jsonl"


def convert_command(fmt: ForeignFormat, source: str | None) -> str:
    """The exact ``sftpilot convert`` command line that fixes a file in ``fmt``."""
    source_arg = shlex.quote(source) if source else "IN.jsonl"
    output = shlex.quote(suggested_output_name(source))
    return f"sftpilot convert {source_arg} {output} --from {fmt.name}"
