from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trainer_test_data import model_turn, user_turn
from transformers import AutoTokenizer

from deploy.local.trainer.dataset import parse_contents
from deploy.local.trainer.formatting import IGNORE_INDEX, encode_conversation, encode_prompt


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def learned_and_masked_text(tokenizer: Any, input_ids: list[int], labels: list[int]) -> tuple[str, str]:
    learned = [token for token, label in zip(input_ids, labels, strict=True) if label != IGNORE_INDEX]
    masked = [token for token, label in zip(input_ids, labels, strict=True) if label == IGNORE_INDEX]
    return tokenizer.decode(learned), tokenizer.decode(masked)


def test_only_model_turns_are_learned(tokenizer: Any) -> None:
    contents = parse_contents(
        [user_turn("first question"), model_turn("first answer"), user_turn("second question"), model_turn("second")],
        {"parts": [{"text": "system words"}]},
    )

    encoded = encode_conversation(tokenizer, contents, max_seq_len=1024)

    learned, masked = learned_and_masked_text(tokenizer, encoded.input_ids, encoded.labels)
    assert learned == "first answer<|im_end|>\nsecond<|im_end|>\n"
    for never_learned in ("system words", "first question", "second question", "<|im_start|>assistant"):
        assert never_learned in masked
    assert encoded.labels[: len(encoded.labels) // 4] == [IGNORE_INDEX] * (len(encoded.labels) // 4)
    assert not encoded.truncated


def test_learned_labels_equal_their_input_ids(tokenizer: Any) -> None:
    encoded = encode_conversation(tokenizer, parse_contents([user_turn("Q"), model_turn("Answer")]), max_seq_len=1024)

    pairs = [(token, label) for token, label in zip(encoded.input_ids, encoded.labels, strict=True)]
    assert all(label in (IGNORE_INDEX, token) for token, label in pairs)
    assert encoded.trained_token_count == len("Answer") + 2  # bytes + <|im_end|> + "\n"


def test_training_prompt_matches_the_generation_prompt(tokenizer: Any) -> None:
    question = [user_turn("What colour is the sky?")]
    encoded = encode_conversation(tokenizer, parse_contents([*question, model_turn("Blue.")]), max_seq_len=1024)
    prompt = encode_prompt(tokenizer, parse_contents(question))

    assert encoded.input_ids[: len(prompt)] == prompt
    assert set(encoded.labels[: len(prompt)]) == {IGNORE_INDEX}
    assert encoded.labels[len(prompt)] != IGNORE_INDEX


def test_long_examples_are_cut_to_max_seq_len(tokenizer: Any) -> None:
    contents = parse_contents([user_turn("Q" * 10), model_turn("A" * 100)])

    encoded = encode_conversation(tokenizer, contents, max_seq_len=40)

    assert encoded.truncated
    assert len(encoded.input_ids) == len(encoded.labels) == 40
    assert 0 < encoded.trained_token_count < 100
