"""What generation produces and how it fails (torch-free; used by ``generate`` and ``inference``).

Kept apart from ``generate`` so ``inference`` (which imports torch and is loaded lazily by
``generate``) depends only downwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.local.trainer.errors import TrainerError

FINISH_STOP = "STOP"
FINISH_MAX_TOKENS = "MAX_TOKENS"


class AdapterNotFoundError(TrainerError):
    """``adapter_dir`` holds neither a LoRA adapter nor a full model."""

    def __init__(self, adapter_dir: Path) -> None:
        self.adapter_dir = adapter_dir
        super().__init__(f"{adapter_dir} holds neither adapter_config.json (LoRA) nor config.json (full model)")


class PromptTooLongError(TrainerError, ValueError):
    """The prompt plus the requested output does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, max_output_tokens: int, context_window: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_output_tokens = max_output_tokens
        self.context_window = context_window
        super().__init__(
            f"prompt of {prompt_tokens} tokens plus maxOutputTokens={max_output_tokens} exceeds "
            f"the local model's context window of {context_window} tokens"
        )


@dataclass(frozen=True)
class GenerationResult:
    """One candidate: its text, token counts and why decoding ended (``STOP`` or ``MAX_TOKENS``)."""

    text: str
    prompt_token_count: int
    candidates_token_count: int
    finish_reason: str
    skipped_non_text_parts: int = 0
