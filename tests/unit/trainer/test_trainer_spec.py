from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.local.trainer.spec import (
    BASE_LEARNING_RATE,
    Checkpoint,
    DataStats,
    InvalidTrainRequestError,
    StepMetrics,
    TrainRequest,
    TrainResult,
)


def make_request(**overrides: object) -> TrainRequest:
    values: dict[str, object] = {
        "model_dir": Path("/models/tiny"),
        "train_path": Path("/data/train.jsonl"),
        "validation_path": None,
        "output_dir": Path("/jobs/1"),
    }
    values.update(overrides)
    return TrainRequest(**values)


@pytest.mark.parametrize("validation_path", [None, Path("/data/validation.jsonl")])
def test_request_survives_json(validation_path: Path | None) -> None:
    request = make_request(validation_path=validation_path, epochs=5, lora_rank=4, learning_rate_multiplier=0.5)

    assert TrainRequest.from_json(request.to_json()) == request


def test_learning_rate_scales_the_base_rate() -> None:
    assert make_request(learning_rate_multiplier=2.5).learning_rate == pytest.approx(2.5 * BASE_LEARNING_RATE)


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lora_rank": 0}, "lora_rank"),
        ({"batch_size": True}, "batch_size"),
        ({"max_seq_len": 4}, "max_seq_len"),
        ({"learning_rate_multiplier": 0.0}, "learning_rate_multiplier"),
        ({"learning_rate_multiplier": "1"}, "learning_rate_multiplier"),
        ({"precision": "fp16"}, "precision"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_out_of_range_fields_are_named(overrides: dict[str, object], field_name: str) -> None:
    with pytest.raises(InvalidTrainRequestError) as raised:
        make_request(**overrides)

    assert raised.value.field_name == field_name


@pytest.mark.parametrize(
    ("mutate", "field_name"),
    [
        (lambda data: data.update(epocs=3), "epocs"),
        (lambda data: data.update(train_path=7), "train_path"),
        (lambda data: data.update(validation_path=["x"]), "validation_path"),
        (lambda data: data.update(epochs=-1), "epochs"),
    ],
)
def test_bad_request_json_is_rejected(mutate, field_name: str) -> None:
    data = json.loads(make_request().to_json())
    mutate(data)

    with pytest.raises(InvalidTrainRequestError) as raised:
        TrainRequest.from_json(json.dumps(data))

    assert raised.value.field_name == field_name


def test_result_survives_json() -> None:
    result = TrainResult(
        checkpoints=[Checkpoint(checkpoint_id="1", epoch=1, step=3, adapter_dir=Path("/jobs/1/checkpoints/epoch-1"))],
        data_stats=DataStats(
            example_count=10,
            step_count=3,
            total_billable_tokens=900,
            total_tuning_characters=1200,
            truncated_example_count=1,
            truncated_example_indices=[4],
            skipped_non_text_part_count=2,
        ),
        metrics=[
            StepMetrics(step=1, epoch=1, train_total_loss=2.0, train_fraction_of_correct_next_step_preds=0.1),
            StepMetrics(3, 1, 1.5, 0.3, eval_total_loss=1.7, eval_fraction_of_correct_next_step_preds=0.25),
        ],
    )

    assert TrainResult.from_json(result.to_json()) == result
