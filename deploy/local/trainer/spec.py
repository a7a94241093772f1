"""The local trainer's request and result types: what to train and what comes back.

This module imports no torch, so the tuning server can build requests and read results
cheaply; ``deploy.local.trainer.training.train()`` runs a request.

>>> request = TrainRequest(model_dir=Path("m"), train_path=Path("t.jsonl"), validation_path=None,
...                        output_dir=Path("out"), epochs=2)
>>> TrainRequest.from_json(request.to_json()) == request
True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deploy.local.trainer.errors import (
    DatasetError,
    DatasetParseError,
    EmptyDatasetError,
    TrainerError,
    TrainingCancelled,
)

__all__ = [
    "BASE_LEARNING_RATE",
    "Checkpoint",
    "DataStats",
    "DatasetError",
    "DatasetParseError",
    "EmptyDatasetError",
    "InvalidTrainRequestError",
    "Precision",
    "StepMetrics",
    "TrainRequest",
    "TrainResult",
    "TrainingCancelled",
]

# Vertex's learningRateMultiplier scales this (LoRA on a 135M model learns a style in ~50 steps).
BASE_LEARNING_RATE = 2e-4

Precision = Literal["auto", "bf16", "fp32"]
_PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


class InvalidTrainRequestError(TrainerError, ValueError):
    """A ``TrainRequest`` field outside its allowed range (``field_name`` names it)."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class TrainRequest:
    """One tuning job: LoRA (or a full fine-tune) of ``model_dir`` on a Gemini SFT JSONL file.

    ``precision="auto"`` uses bf16 autocast where the CPU supports bf16 natively, else fp32.
    ``num_threads=None`` picks from the model size and the machine's load
    (``threads.default_num_threads``).
    """

    model_dir: Path
    train_path: Path
    validation_path: Path | None
    output_dir: Path
    epochs: int = 3
    lora_rank: int = 8
    learning_rate_multiplier: float = 1.0
    batch_size: int = 4
    max_seq_len: int = 512
    seed: int = 0
    full_finetune: bool = False
    precision: Precision = "auto"
    num_threads: int | None = None
    init_adapter_dir: Path | None = None
    """Continuous tuning: start from this saved LoRA adapter instead of a fresh one."""

    def __post_init__(self) -> None:
        minimums = {"epochs": 1, "lora_rank": 1, "batch_size": 1, "max_seq_len": 8}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidTrainRequestError(name, f"must be an integer >= {minimum}, got {value!r}")
        multiplier = self.learning_rate_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not multiplier > 0:
            raise InvalidTrainRequestError("learning_rate_multiplier", f"must be a number > 0, got {multiplier!r}")
        if self.precision not in _PRECISIONS:
            raise InvalidTrainRequestError("precision", f"must be one of {', '.join(_PRECISIONS)}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise InvalidTrainRequestError("num_threads", f"must be an integer >= 1, got {self.num_threads!r}")

    @property
    def learning_rate(self) -> float:
        return BASE_LEARNING_RATE * float(self.learning_rate_multiplier)

    def to_json(self) -> str:
        return json.dumps(_jsonable(dataclasses.asdict(self)), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> TrainRequest:
        """Parse ``to_json`` output; unknown or missing keys raise ``InvalidTrainRequestError``."""
        try:
            data = json.loads(s)
        except json.JSONDecodeError as error:
            raise InvalidTrainRequestError("<json>", f"not valid JSON: {error.msg}") from None
        if not isinstance(data, dict):
            raise InvalidTrainRequestError("<json>", "must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidTrainRequestError(unknown[0], "unknown field")
        for name in ("model_dir", "train_path", "output_dir"):
            if not isinstance(data.get(name), str):
                raise InvalidTrainRequestError(name, "must be a path string")
        validation = data.get("validation_path")
        if validation is not None and not isinstance(validation, str):
            raise InvalidTrainRequestError("validation_path", "must be a path string or null")
        values: dict[str, Any] = dict(data)
        for name in ("model_dir", "train_path", "output_dir"):
            values[name] = Path(data[name])
        values["validation_path"] = Path(validation) if validation is not None else None
        init_adapter = data.get("init_adapter_dir")
        if init_adapter is not None and not isinstance(init_adapter, str):
            raise InvalidTrainRequestError("init_adapter_dir", "must be a path string or null")
        values["init_adapter_dir"] = Path(init_adapter) if init_adapter is not None else None
        return cls(**values)


@dataclass(frozen=True)
class StepMetrics:
    """Metrics of one optimizer step (eval fields only on the last step of an epoch)."""

    step: int
    epoch: int
    train_total_loss: float
    train_fraction_of_correct_next_step_preds: float
    eval_total_loss: float | None = None
    eval_fraction_of_correct_next_step_preds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepMetrics:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class Checkpoint:
    """The adapter saved at the end of an epoch (a full model folder when ``full_finetune``)."""

    checkpoint_id: str
    epoch: int
    step: int
    adapter_dir: Path


@dataclass(frozen=True)
class DataStats:
    """What the training file held and what training will cost.

    ``total_billable_tokens`` is dataset tokens x epochs (how Vertex bills tuning);
    ``total_tuning_characters`` counts the text of the dataset once.
    ``truncated_example_indices`` are 1-based example positions (blank lines not counted);
    examples whose learned tokens were all cut off are not trained on (``dropped_example_count``).
    """

    example_count: int
    step_count: int
    total_billable_tokens: int
    total_tuning_characters: int
    truncated_example_count: int
    truncated_example_indices: list[int]
    skipped_non_text_part_count: int = 0
    dropped_example_count: int = 0
    validation_example_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataStats:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class TrainResult:
    """Everything a finished job produced."""

    checkpoints: list[Checkpoint]
    data_stats: DataStats
    metrics: list[StepMetrics] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(_jsonable(dataclasses.asdict(self)), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> TrainResult:
        data = json.loads(s)
        return cls(
            checkpoints=[
                Checkpoint(
                    checkpoint_id=str(item["checkpoint_id"]),
                    epoch=int(item["epoch"]),
                    step=int(item["step"]),
                    adapter_dir=Path(item["adapter_dir"]),
                )
                for item in data["checkpoints"]
            ],
            data_stats=DataStats.from_dict(data["data_stats"]),
            metrics=[StepMetrics.from_dict(item) for item in data.get("metrics", [])],
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
