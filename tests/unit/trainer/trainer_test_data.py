"""Small datasets for the local trainer's tests (imported by the tests and their conftest).

The "answer format" dataset teaches one visible habit: every answer is exactly
``ANSWER: <word>``. The untrained tiny model emits random bytes, so a model that follows the
format on held-out prompts has learned it from training.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ANSWER_FORMAT = re.compile(r"^ANSWER: [a-z]+$")
TRAIN_WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "candle", "forest"]
HELD_OUT_WORDS = ["rocket", "silver", "garden", "planet", "window"]
QUESTION_TEMPLATES = [
    "What is the key word in: {w} is on my mind?",
    "Pick the noun: the {w} was here.",
    "Tell me about {w}.",
    "Which word matters in 'a {w} today'?",
]
# Enough steps for the tiny model to pick up the format reliably (~120 steps, a few seconds).
FORMAT_EPOCHS = 10
FORMAT_LR_MULTIPLIER = 10.0


def held_out_prompts() -> list[str]:
    return [template.format(w=word) for word in HELD_OUT_WORDS for template in QUESTION_TEMPLATES[2:]]


def user_turn(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def model_turn(text: str) -> dict[str, Any]:
    return {"role": "model", "parts": [{"text": text}]}


def write_jsonl(path: Path, records: Iterable[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def answer_format_records(words: list[str]) -> list[dict[str, Any]]:
    return [
        {"contents": [user_turn(template.format(w=word)), model_turn(f"ANSWER: {word}")]}
        for word in words
        for template in QUESTION_TEMPLATES
    ]
