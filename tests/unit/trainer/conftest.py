"""Fixtures for the local trainer's fast tests: the tiny random Llama and small datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainer_test_data import (
    FORMAT_EPOCHS,
    FORMAT_LR_MULTIPLIER,
    HELD_OUT_WORDS,
    TRAIN_WORDS,
    answer_format_records,
    write_jsonl,
)

from deploy.local.trainer.models import TINY_LLAMA, resolve_model_dir
from deploy.local.trainer.spec import TrainRequest, TrainResult
from deploy.local.trainer.training import train


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve_model_dir(TINY_LLAMA, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def answer_format_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("answer-format")
    return write_jsonl(folder / "train.jsonl", answer_format_records(TRAIN_WORDS))


@pytest.fixture(scope="session")
def answer_format_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("answer-format-validation")
    return write_jsonl(folder / "validation.jsonl", answer_format_records(HELD_OUT_WORDS))


@pytest.fixture
def request_factory(tiny_model_dir: Path, answer_format_dataset: Path, tmp_path: Path) -> Callable[..., TrainRequest]:
    """Build a TrainRequest for the tiny model; keyword arguments override the defaults."""

    def build(**overrides: Any) -> TrainRequest:
        values: dict[str, Any] = {
            "model_dir": tiny_model_dir,
            "train_path": answer_format_dataset,
            "validation_path": None,
            "output_dir": tmp_path / "job",
            "epochs": 1,
        }
        values.update(overrides)
        return TrainRequest(**values)

    return build


@pytest.fixture(scope="session")
def trained_answer_format(
    tiny_model_dir: Path,
    answer_format_dataset: Path,
    answer_format_validation: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainResult:
    """The tiny model LoRA-trained on the answer-format dataset (shared by several tests)."""
    request = TrainRequest(
        model_dir=tiny_model_dir,
        train_path=answer_format_dataset,
        validation_path=answer_format_validation,
        output_dir=tmp_path_factory.mktemp("trained-answer-format"),
        epochs=FORMAT_EPOCHS,
        learning_rate_multiplier=FORMAT_LR_MULTIPLIER,
    )
    return train(request)
