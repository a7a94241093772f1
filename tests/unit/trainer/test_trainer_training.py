from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from trainer_test_data import (
    ANSWER_FORMAT,
    FORMAT_EPOCHS,
    TRAIN_WORDS,
    answer_format_records,
    held_out_prompts,
    model_turn,
    user_turn,
    write_jsonl,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from deploy.local.trainer.dataset import read_conversations
from deploy.local.trainer.engine import batch_loss, collate, encode_file
from deploy.local.trainer.errors import DatasetParseError, EmptyDatasetError, TrainingCancelled
from deploy.local.trainer.formatting import IGNORE_INDEX, encode_conversation
from deploy.local.trainer.generate import Generator
from deploy.local.trainer.spec import StepMetrics, TrainRequest, TrainResult
from deploy.local.trainer.training import train

RequestFactory = Callable[..., TrainRequest]


def follows_format(generator: Generator, model_dir: Path, adapter_dir: Path | None) -> list[bool]:
    answers = [
        generator.generate(model_dir, adapter_dir, [user_turn(prompt)], max_output_tokens=24).text
        for prompt in held_out_prompts()
    ]
    return [bool(ANSWER_FORMAT.match(answer)) for answer in answers]


def test_training_teaches_the_answer_format(tiny_model_dir: Path, trained_answer_format: TrainResult) -> None:
    generator = Generator()

    tuned = follows_format(generator, tiny_model_dir, trained_answer_format.checkpoints[-1].adapter_dir)
    base = follows_format(generator, tiny_model_dir, None)

    assert sum(tuned) >= 0.8 * len(tuned), tuned
    assert not any(base)


def test_metrics_improve_and_eval_runs_at_each_epoch_end(trained_answer_format: TrainResult) -> None:
    metrics = trained_answer_format.metrics
    steps_per_epoch = math.ceil(len(TRAIN_WORDS) * 4 / 4)

    assert [m.step for m in metrics] == list(range(1, FORMAT_EPOCHS * steps_per_epoch + 1))
    with_eval = [m for m in metrics if m.eval_total_loss is not None]
    assert [m.step for m in with_eval] == [epoch * steps_per_epoch for epoch in range(1, FORMAT_EPOCHS + 1)]
    assert all(m.eval_fraction_of_correct_next_step_preds is not None for m in with_eval)
    first_epoch = [m.train_total_loss for m in metrics if m.epoch == 1]
    last_epoch = [m.train_total_loss for m in metrics if m.epoch == FORMAT_EPOCHS]
    assert sum(last_epoch) / len(last_epoch) < 0.5 * sum(first_epoch) / len(first_epoch)
    assert with_eval[-1].eval_total_loss < with_eval[0].eval_total_loss
    assert (
        with_eval[-1].eval_fraction_of_correct_next_step_preds > with_eval[0].eval_fraction_of_correct_next_step_preds
    )


def test_one_adapter_checkpoint_per_epoch(trained_answer_format: TrainResult) -> None:
    checkpoints = trained_answer_format.checkpoints

    assert [c.checkpoint_id for c in checkpoints] == [str(epoch) for epoch in range(1, FORMAT_EPOCHS + 1)]
    assert [c.adapter_dir.name for c in checkpoints] == [f"epoch-{epoch}" for epoch in range(1, FORMAT_EPOCHS + 1)]
    assert [c.step for c in checkpoints] == [c.epoch * 11 for c in checkpoints]
    for checkpoint in checkpoints:
        assert (checkpoint.adapter_dir / "adapter_config.json").is_file()
        assert (checkpoint.adapter_dir / "adapter_model.safetensors").is_file()


def test_data_stats_count_examples_steps_tokens_and_characters(
    tiny_model_dir: Path, answer_format_dataset: Path, trained_answer_format: TrainResult
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    conversations = list(read_conversations(answer_format_dataset))
    tokens = sum(len(encode_conversation(tokenizer, c, 512).input_ids) for c in conversations)
    stats = trained_answer_format.data_stats

    assert stats.example_count == len(conversations) == 44
    assert stats.step_count == 11 * FORMAT_EPOCHS
    assert stats.total_billable_tokens == tokens * FORMAT_EPOCHS
    assert stats.total_tuning_characters == sum(c.characters for c in conversations)
    assert (stats.truncated_example_count, stats.truncated_example_indices) == (0, [])
    assert stats.validation_example_count == 20


def test_loss_covers_exactly_the_model_turn_tokens(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"contents": [user_turn("a long question " * 5), model_turn("short")]},
            {"contents": [user_turn("q"), model_turn("one"), user_turn("again"), model_turn("two words")]},
        ],
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    examples = encode_file(tokenizer, path, max_seq_len=512).examples
    batch = collate(examples, pad_id=tokenizer.pad_token_id)

    with torch.no_grad():
        loss, _, count = batch_loss(model, batch, dtype=None)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    expected_count = (len("short") + 2) + (len("one") + 2) + (len("two words") + 2)  # bytes + <|im_end|> + "\n"
    assert count == expected_count == sum(example.trained_token_count for example in examples)
    targets = batch.labels[:, 1:]
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert float(loss) == pytest.approx(float(reference), rel=1e-5)


def test_should_stop_cancels_before_the_next_step(request_factory: RequestFactory) -> None:
    seen: list[StepMetrics] = []
    request = request_factory(epochs=3)

    with pytest.raises(TrainingCancelled) as raised:
        train(request, on_step=seen.append, should_stop=lambda: len(seen) >= 3)

    assert raised.value.completed_steps == 3
    assert [m.step for m in seen] == [1, 2, 3]
    assert not (request.output_dir / "checkpoints" / "epoch-1").exists()


def test_stop_requested_before_training_loads_no_model(request_factory: RequestFactory) -> None:
    stats = []

    with pytest.raises(TrainingCancelled) as raised:
        train(request_factory(), should_stop=lambda: True, on_data_stats=stats.append)

    assert raised.value.completed_steps == 0
    assert len(stats) == 1


def test_a_broken_line_fails_before_training(request_factory: RequestFactory, tmp_path: Path) -> None:
    records = answer_format_records(TRAIN_WORDS[:2])
    path = write_jsonl(tmp_path / "broken.jsonl", [*records[:4], '{"contents": [{"role": "user"', *records[4:]])
    steps: list[StepMetrics] = []
    request = request_factory(train_path=path)

    with pytest.raises(DatasetParseError) as raised:
        train(request, on_step=steps.append)

    assert raised.value.line == 5
    assert "not valid JSON" in raised.value.reason
    assert steps == []
    assert not (request.output_dir / "checkpoints").exists()


def test_a_broken_validation_line_is_reported_with_its_file(request_factory: RequestFactory, tmp_path: Path) -> None:
    validation = write_jsonl(tmp_path / "validation.jsonl", ['{"contents": "nope"}'])

    with pytest.raises(DatasetParseError) as raised:
        train(request_factory(validation_path=validation))

    assert (raised.value.path, raised.value.line) == (validation, 1)


def test_an_empty_file_is_a_dataset_error(request_factory: RequestFactory, tmp_path: Path) -> None:
    with pytest.raises(EmptyDatasetError):
        train(request_factory(train_path=write_jsonl(tmp_path / "empty.jsonl", ["", "  "])))


def test_long_examples_are_truncated_and_reported(request_factory: RequestFactory, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"contents": [user_turn("short"), model_turn("fits")]},
            {"contents": [user_turn("short"), model_turn("x" * 80)]},  # answer cut, still trained
            {"contents": [user_turn("y" * 80), model_turn("lost")]},  # answer beyond the limit: dropped
        ],
    )

    result = train(request_factory(train_path=path, max_seq_len=48))

    stats = result.data_stats
    assert (stats.example_count, stats.truncated_example_count) == (3, 2)
    assert stats.truncated_example_indices == [2, 3]
    assert stats.dropped_example_count == 1
    assert stats.step_count == 1  # two trainable examples, batch size 4


def test_non_text_parts_are_skipped_and_counted(request_factory: RequestFactory, tmp_path: Path) -> None:
    image = {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}}
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"contents": [{"role": "user", "parts": [image, {"text": "What is it?"}]}, model_turn("A cat.")]}],
    )

    assert train(request_factory(train_path=path)).data_stats.skipped_non_text_part_count == 1


def test_same_seed_same_run_other_seed_other_run(request_factory: RequestFactory, tmp_path: Path) -> None:
    def losses(seed: int, run: str) -> list[float]:
        result = train(request_factory(seed=seed, output_dir=tmp_path / run))
        return [m.train_total_loss for m in result.metrics]

    first = losses(0, "a")

    assert losses(0, "b") == first
    assert losses(1, "c") != first


def test_full_finetune_saves_a_loadable_model(request_factory: RequestFactory, tiny_model_dir: Path) -> None:
    result = train(request_factory(full_finetune=True, epochs=1))

    folder = result.checkpoints[0].adapter_dir
    assert (folder / "config.json").is_file()
    assert not (folder / "adapter_config.json").exists()
    answer = Generator().generate(tiny_model_dir, folder, [user_turn("Tell me about rocket.")], max_output_tokens=4)
    assert answer.candidates_token_count >= 1
