"""Loading models for generation and decoding token by token (imports torch; used by ``generate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from deploy.local.trainer.dataset import ParsedContents
from deploy.local.trainer.formatting import encode_prompt
from deploy.local.trainer.generation import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    AdapterNotFoundError,
    GenerationResult,
    PromptTooLongError,
)
from deploy.local.trainer.threads import default_num_threads


@dataclass
class LoadedModel:
    """A model ready to generate, with its tokenizer and the token ids that end a turn."""

    model: Any
    tokenizer: Any
    stop_token_ids: frozenset[int]
    context_window: int
    parameter_count: int

    def use_threads(self, num_threads: int | None) -> None:
        """Set torch's thread count for the next call (``None``: ``default_num_threads``)."""
        torch.set_num_threads(num_threads or default_num_threads(self.parameter_count))

    def generate(
        self,
        contents: ParsedContents,
        temperature: float,
        top_p: float | None,
        top_k: int | None,
        max_output_tokens: int,
        seed: int,
    ) -> GenerationResult:
        """Decode one answer with a KV cache; sampling draws from a generator seeded with ``seed``."""
        prompt_ids = encode_prompt(self.tokenizer, contents)
        if len(prompt_ids) + max_output_tokens > self.context_window:
            raise PromptTooLongError(len(prompt_ids), max_output_tokens, self.context_window)
        sampler = torch.Generator().manual_seed(seed)
        generated: list[int] = []
        finish_reason = FINISH_MAX_TOKENS
        with torch.no_grad():
            output = self.model(input_ids=torch.tensor([prompt_ids]), use_cache=True, logits_to_keep=1)
            while len(generated) < max_output_tokens:
                token = next_token(output.logits[0, -1].float(), temperature, top_p, top_k, sampler)
                if token in self.stop_token_ids:
                    finish_reason = FINISH_STOP
                    break
                generated.append(token)
                if len(generated) == max_output_tokens:
                    break
                output = self.model(
                    input_ids=torch.tensor([[token]]),
                    past_key_values=output.past_key_values,
                    use_cache=True,
                    logits_to_keep=1,
                )
        return GenerationResult(
            text=self.tokenizer.decode(generated, skip_special_tokens=True),
            prompt_token_count=len(prompt_ids),
            candidates_token_count=len(generated),
            finish_reason=finish_reason,
            skipped_non_text_parts=contents.skipped_non_text_parts,
        )


def load(model_dir: Path, adapter_dir: Path | None) -> LoadedModel:
    """Load ``model_dir`` with the LoRA adapter (merged) or full fine-tune in ``adapter_dir``."""
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model: Any
    if adapter_dir is None:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    elif (adapter_dir / "adapter_config.json").is_file():
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    elif (adapter_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(adapter_dir), dtype=torch.float32)
    else:
        raise AdapterNotFoundError(adapter_dir)
    model.eval()
    stop_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    configured = model.generation_config.eos_token_id
    if isinstance(configured, int):
        stop_ids.add(configured)
    elif isinstance(configured, list):
        stop_ids.update(int(token) for token in configured)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        stop_token_ids=frozenset(stop_ids),
        context_window=int(getattr(model.config, "max_position_embeddings", 2048)),
        parameter_count=sum(parameter.numel() for parameter in model.parameters()),
    )


def next_token(logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None, sampler: Any) -> int:
    """Greedy at temperature 0; otherwise temperature, then top-k, then top-p (nucleus) sampling."""
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        threshold = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, sorted_ids = torch.sort(probabilities, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the top token)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probabilities = torch.zeros_like(probabilities).scatter(0, sorted_ids, sorted_probs)
    return int(torch.multinomial(probabilities, 1, generator=sampler))
