"""Text generation with a local base model, optionally with a tuned adapter on top.

>>> generator = Generator()  # doctest: +SKIP
>>> generator.generate(model_dir, adapter_dir, [{"role": "user", "parts": [{"text": "Hi"}]}]).text  # doctest: +SKIP
'Hi there! ...'
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.local.trainer.dataset import parse_contents
from deploy.local.trainer.errors import TrainerError
from deploy.local.trainer.generation import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    AdapterNotFoundError,
    GenerationResult,
    PromptTooLongError,
)

__all__ = [
    "FINISH_MAX_TOKENS",
    "FINISH_STOP",
    "AdapterNotFoundError",
    "GenerationResult",
    "Generator",
    "InvalidGenerationConfigError",
    "PromptTooLongError",
]

if TYPE_CHECKING:  # inference imports torch: loaded only when a model is (see Generator._get)
    from deploy.local.trainer.inference import LoadedModel


class InvalidGenerationConfigError(TrainerError, ValueError):
    """A sampling parameter outside its range (``field_name`` names it)."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


class Generator:
    """Caches loaded (model_dir, adapter_dir) pairs (small LRU) so repeated calls are fast.

    LoRA adapters are merged into a private copy of the base weights on load, so tuned models
    generate as fast as the base. Calls are serialised (the CPU is the bottleneck anyway), which
    also makes the generator safe to share between request threads.
    """

    def __init__(self, max_loaded_models: int = 2, num_threads: int | None = None) -> None:
        if max_loaded_models < 1:
            raise InvalidGenerationConfigError("max_loaded_models", "must be >= 1")
        self._max_loaded = max_loaded_models
        self._num_threads = num_threads  # None: decided per call (model size, machine load)
        self._loaded: OrderedDict[tuple[str, str | None, int], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.load_count = 0  # how many times weights were read from disk (observable caching)

    def generate(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        contents: list[dict[str, Any]],
        system_instruction: str | None = None,
        *,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = None,
        max_output_tokens: int = 128,
        seed: int = 0,
    ) -> GenerationResult:
        """Answer Gemini-format ``contents``; temperature 0 is greedy, otherwise seeded sampling.

        Raises ``ContentsFormatError`` for unreadable contents, ``InvalidGenerationConfigError``
        for out-of-range sampling values, ``PromptTooLongError`` and ``AdapterNotFoundError``.
        """
        _check_sampling(temperature, top_p, top_k, max_output_tokens)
        parsed = parse_contents(contents, system_instruction)
        with self._lock:
            loaded = self._get(model_dir, adapter_dir)
            loaded.use_threads(self._num_threads)
            return loaded.generate(parsed, temperature, top_p, top_k, max_output_tokens, seed)

    def clear(self) -> None:
        """Forget every loaded model (frees memory)."""
        with self._lock:
            self._loaded.clear()

    def _get(self, model_dir: Path, adapter_dir: Path | None) -> LoadedModel:
        key = (
            str(model_dir.resolve()),
            str(adapter_dir.resolve()) if adapter_dir is not None else None,
            _weights_version(adapter_dir if adapter_dir is not None else model_dir),
        )
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        from deploy.local.trainer import inference  # noqa: PLC0415 - keeps torch out of the server's import

        loaded = inference.load(model_dir, adapter_dir)
        self.load_count += 1
        self._loaded[key] = loaded
        while len(self._loaded) > self._max_loaded:
            self._loaded.popitem(last=False)
        return loaded


def _check_sampling(temperature: float, top_p: float | None, top_k: int | None, max_output_tokens: int) -> None:
    if not temperature >= 0:
        raise InvalidGenerationConfigError("temperature", f"must be >= 0, got {temperature!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidGenerationConfigError("top_p", f"must be in (0, 1], got {top_p!r}")
    if top_k is not None and top_k < 1:
        raise InvalidGenerationConfigError("top_k", f"must be >= 1, got {top_k!r}")
    if max_output_tokens < 1:
        raise InvalidGenerationConfigError("max_output_tokens", f"must be >= 1, got {max_output_tokens!r}")


def _weights_version(folder: Path) -> int:
    """Changes when the weights in ``folder`` are rewritten, so a stale cache entry is not reused."""
    stamps = [path.stat().st_mtime_ns for path in folder.glob("*.safetensors")]
    return max(stamps, default=0)
