from __future__ import annotations

from pathlib import Path

import pytest
from trainer_test_data import ANSWER_FORMAT, user_turn
from transformers import AutoTokenizer

from deploy.local.trainer.dataset import ContentsFormatError, parse_contents
from deploy.local.trainer.formatting import encode_prompt
from deploy.local.trainer.generate import (
    AdapterNotFoundError,
    Generator,
    InvalidGenerationConfigError,
    PromptTooLongError,
)
from deploy.local.trainer.spec import TrainResult

QUESTION = [user_turn("Tell me about rocket.")]


@pytest.fixture
def adapter_dir(trained_answer_format: TrainResult) -> Path:
    return trained_answer_format.checkpoints[-1].adapter_dir


def test_repeated_calls_reuse_the_loaded_model(tiny_model_dir: Path, adapter_dir: Path) -> None:
    generator = Generator()

    first = generator.generate(tiny_model_dir, adapter_dir, QUESTION)
    second = generator.generate(tiny_model_dir, adapter_dir, QUESTION)

    assert first == second
    assert generator.load_count == 1
    assert ANSWER_FORMAT.match(first.text)
    assert first.finish_reason == "STOP"


def test_least_recently_used_model_is_evicted(tiny_model_dir: Path, adapter_dir: Path) -> None:
    generator = Generator(max_loaded_models=1)

    tuned = generator.generate(tiny_model_dir, adapter_dir, QUESTION, max_output_tokens=8)
    base = generator.generate(tiny_model_dir, None, QUESTION, max_output_tokens=8)
    tuned_again = generator.generate(tiny_model_dir, adapter_dir, QUESTION, max_output_tokens=8)

    assert generator.load_count == 3
    assert tuned_again == tuned
    assert base.text != tuned.text


def test_token_counts_and_max_tokens(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))

    result = Generator().generate(tiny_model_dir, None, QUESTION, "Answer briefly.", max_output_tokens=5)

    expected_prompt = encode_prompt(tokenizer, parse_contents(QUESTION, "Answer briefly."))
    assert result.prompt_token_count == len(expected_prompt)
    assert (result.candidates_token_count, result.finish_reason) == (5, "MAX_TOKENS")


def test_sampling_is_reproducible_with_a_seed(tiny_model_dir: Path) -> None:
    generator = Generator()

    def sample(seed: int, **options: float | int) -> str:
        return generator.generate(
            tiny_model_dir, None, QUESTION, temperature=1.0, max_output_tokens=12, seed=seed, **options
        ).text

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in range(5)}) > 1
    greedy = generator.generate(tiny_model_dir, None, QUESTION, max_output_tokens=12).text
    assert sample(3, top_k=1) == greedy
    assert sample(4, top_p=1e-6) == greedy


def test_non_text_parts_are_skipped_and_counted(tiny_model_dir: Path) -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}

    result = Generator().generate(
        tiny_model_dir, None, [{"role": "user", "parts": [image, {"text": "What is this?"}]}], max_output_tokens=2
    )

    assert result.skipped_non_text_parts == 1


@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_out_of_range_sampling_values_are_rejected(tiny_model_dir: Path, options: dict, field_name: str) -> None:
    with pytest.raises(InvalidGenerationConfigError) as raised:
        Generator().generate(tiny_model_dir, None, QUESTION, **options)

    assert raised.value.field_name == field_name


def test_bad_inputs_raise_specific_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    generator = Generator()

    with pytest.raises(ContentsFormatError):
        generator.generate(tiny_model_dir, None, [])
    with pytest.raises(AdapterNotFoundError):
        generator.generate(tiny_model_dir, tmp_path, QUESTION)
    with pytest.raises(PromptTooLongError) as raised:
        generator.generate(tiny_model_dir, None, [user_turn("x" * 2100)])
    assert raised.value.context_window == 2048
    assert generator.load_count == 1  # only the base model, loaded for the too-long prompt
