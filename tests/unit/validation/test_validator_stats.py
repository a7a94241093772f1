"""Statistics: exact values on a small file, fast path == slow path, large values, billing."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from validation_helpers import FIXTURES, example, good, jsonl, run

from shared.validation import ValidationOptions
from shared.validation.report import Distribution, bucket_key, bucket_value
from shared.validation.validator import _Validator

IMAGE = {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}}


def small_dataset() -> bytes:
    return jsonl(
        example(("user", "hello"), ("model", "world!!"), system="abcd"),
        example(("user", "q"), ("model", "a" * 10), ("user", "qq"), ("model", "bbb")),
        {
            "contents": [
                {"role": "user", "parts": [IMAGE, {"text": "what?"}]},
                {"role": "model", "parts": [{"text": "cat"}]},
            ]
        },
    )


def test_statistics_of_a_small_dataset() -> None:
    stats = run(small_dataset(), epochs=3).stats.to_dict()
    assert stats["examples"] == 3 and stats["measured_examples"] == 3
    assert stats["turns"] == {"min": 2, "mean": 2.67, "max": 4}
    assert stats["chars"]["input"] == {"mean": 5.67, "p50": 5, "p95": 9, "max": 9, "sum": 17}
    assert stats["chars"]["output"] == {"mean": 7.67, "p50": 7, "p95": 13, "max": 13, "sum": 23}
    # tokens: ceil(chars/4) per side, plus 258 for the image (an input part)
    assert stats["tokens"]["input"] == {"mean": 88.0, "p50": 3, "p95": 260, "max": 260, "sum": 264}
    assert stats["tokens"]["output"] == {"mean": 2.33, "p50": 2, "p95": 4, "max": 4, "sum": 7}
    assert stats["system_instruction"] == {"examples": 1, "share_of_examples": 0.3333, "share_of_chars": 0.1}
    assert stats["multimodal"] == {
        "parts": {"image": 1, "video": 0, "audio": 0, "document": 0, "text_file": 0},
        "examples": 1,
    }
    assert stats["billing"] == {"dataset_tokens": 271, "epochs": 3, "estimated_billable_tokens": 813}


def test_billing_without_epochs_is_per_epoch_only() -> None:
    stats = run(small_dataset()).stats
    assert stats.dataset_tokens == 271 and stats.estimated_billable_tokens is None


def random_text_example(rng: random.Random, index: int) -> dict[str, Any]:
    turns: list[tuple[str | None, str]] = []
    for _ in range(rng.randint(1, 4)):
        turns.append(("user", f"{index} " + "u" * rng.randint(1, 300)))
        turns.append(("model", "m" * rng.randint(1, 30_000 if rng.random() < 0.05 else 900)))
    system = "s" * rng.randint(1, 200) if rng.random() < 0.5 else None
    return example(*turns, system=system)


def validate_with(data: bytes, force_slow_path: bool, **options: Any) -> Any:
    return _Validator(ValidationOptions(**options), force_slow_path=force_slow_path).run(io.BytesIO(data), None)


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_path_and_slow_path_agree_on_text_datasets(seed: int) -> None:
    rng = random.Random(seed)
    data = jsonl(*(random_text_example(rng, i) for i in range(300)), good(7), good(7))
    fast = validate_with(data, False, epochs=2)
    slow = validate_with(data, True, epochs=2)
    assert fast.stats.to_dict() == slow.stats.to_dict()
    assert fast.issues == slow.issues and fast.error_counts == slow.error_counts


def test_fast_path_and_slow_path_agree_on_the_fixture() -> None:
    data = (FIXTURES / "valid_text_18.jsonl").read_bytes()
    assert validate_with(data, False).stats == validate_with(data, True).stats


def test_large_values_keep_exact_sums_and_maxima() -> None:
    lengths = [20_000, 50_000, 16_384, 100]
    data = jsonl(*(example(("user", "x" * n), ("model", "y")) for n in lengths))
    for force_slow in (False, True):
        chars = validate_with(data, force_slow).stats.input_chars
        assert chars.total == sum(lengths)
        assert chars.max == 50_000
        assert abs(chars.p50 - 16_384) / 16_384 < 0.01
        tokens = validate_with(data, force_slow).stats.input_tokens
        assert tokens.total == sum((n + 3) // 4 for n in lengths)
        assert tokens.max == 12_500


@pytest.mark.parametrize("value", [0, 1, 255, 16_383, 16_384, 16_385, 99_999, 10**9])
def test_histogram_buckets_are_exact_below_the_limit_and_within_one_percent_above(value: int) -> None:
    represented = bucket_value(bucket_key(value))
    if value < 16_384:
        assert represented == value
    else:
        assert represented <= value < represented * 1.01


def test_distribution_percentiles_are_nearest_rank() -> None:
    counts = {value: 1 for value in range(1, 101)}
    dist = Distribution.from_histogram(counts, total=5050, maximum=100)
    assert (dist.p50, dist.p95, dist.max, dist.mean) == (50, 95, 100, 50.5)
    assert Distribution.from_histogram({}, 0, 0).count == 0


def test_over_limit_examples_are_left_out_of_dataset_tokens() -> None:
    long = example(("user", "x" * 600_000), ("model", "y"))
    report = run(jsonl(good(1), long), epochs=1)
    assert report.stats.over_token_limit_examples == 1
    per_example = (len("Question number 1?") + 3) // 4 + (len("Answer number 1.") + 3) // 4
    assert report.stats.dataset_tokens == per_example
    assert report.stats.input_tokens.max == 150_000
