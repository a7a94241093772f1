"""Building local base models (imports torch and transformers; ``models`` calls it lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers import models as tokenizer_models
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as transformers_logging

# Larger than the usual 0.02: with hidden size 64 that would give near-uniform logits that
# LoRA cannot sharpen in a few hundred steps (the loss stalls near ln(vocab)).
TINY_LLAMA_INIT_RANGE = 0.1
# ChatML, like SmolLM2, but without a default system prompt (keeps tiny examples short).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")


def convert_smollm2_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize the SmolLM2 GGUF into a plain fp32 safetensors folder (~20 s, once)."""
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # Loading from GGUF marks the model as quantized although the weights are plain fp32 now;
    # left in place, the flag makes later loads look for the GGUF again.
    _clear_quantization_flags(model)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _clear_quantization_flags(model: Any) -> None:
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attribute, cleared in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
        if hasattr(model, attribute):
            setattr(model, attribute, cleared)


def build_tiny_llama(out_dir: Path, *, seed: int) -> None:
    """Save a tiny random Llama and its byte tokenizer; the same seed gives the same bytes."""
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|pad|>"),
        tie_word_embeddings=True,
        initializer_range=TINY_LLAMA_INIT_RANGE,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def build_byte_tokenizer() -> Any:
    """A byte-level tokenizer (one token per UTF-8 byte, no merges) with ChatML special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    core = Tokenizer(tokenizer_models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in TINY_SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=2048,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer
