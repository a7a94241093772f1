"""Helpers for the validator tests (imported by name; not a conftest): build JSONL, validate it, pick issues."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from shared.validation import Issue, ValidationOptions, ValidationReport, validate_stream

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "datasets"


def example(*turns: tuple[str | None, str], system: str | None = None, **extra: Any) -> dict[str, Any]:
    """A Gemini example from (role, text) pairs; role None omits the key."""
    contents = []
    for role, text in turns:
        content: dict[str, Any] = {"parts": [{"text": text}]}
        if role is not None:
            content = {"role": role, **content}
        contents.append(content)
    obj: dict[str, Any] = {}
    if system is not None:
        obj["systemInstruction"] = {"parts": [{"text": system}]}
    obj["contents"] = contents
    obj.update(extra)
    return obj


def good(index: int = 0) -> dict[str, Any]:
    """A valid single-turn example, distinct per index."""
    return example(("user", f"Question number {index}?"), ("model", f"Answer number {index}."))


def jsonl(*objects: Any) -> bytes:
    """Objects serialised one per line; bytes are inserted verbatim (without adding a newline)."""
    out = b""
    for obj in objects:
        out += obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
    return out


def run(data: bytes, **options: Any) -> ValidationReport:
    """Validate in-memory bytes (validation role by default: no minimum-count noise)."""
    options.setdefault("role", "validation")
    return validate_stream(io.BytesIO(data), ValidationOptions(**options))


def line_issues(report: ValidationReport) -> list[Issue]:
    return [issue for issue in report.issues if issue.line is not None]


def codes(report: ValidationReport) -> set[str]:
    return set(report.error_counts)
