"""Per-base-model dataset limits and the token-estimate heuristic: the one table to update.

Numbers come from the public Vertex AI tuning docs for Gemini 2.0/2.5 ("Limitations",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning): 131,072 input+output tokens per
example, at most 5,000 validation examples, a training file of at most 1 GB, at most 1M
text-only or 300K multimodal training examples (read as: at most 1M examples, of which at most
300K multimodal), adapter sizes 1/2/4/8/16 (2.5 Pro: 1/2/4/8).
Older docs name a 16-example minimum and recommend 100-500 examples: below the minimum is an
error, below 100 a warning. An unknown base model gets :data:`FALLBACK_LIMITS` and the warning
``W_UNKNOWN_BASE_MODEL``.

Token estimate (documented heuristic, no tokenizer needed): ``ceil(characters / 4)`` for the
text of each side of an example (input = system instruction + user turns, output = model
turns), plus a fixed cost per media part from :data:`MEDIA_TOKEN_ESTIMATES` (an image is 258
tokens in Gemini; audio/video/PDF sizes are unknown without fetching the file, so we assume
one minute / ten pages), plus ``ceil(len(json)/4)`` for function calls and responses.

Example:
    >>> limits, known = resolve_limits("publishers/google/models/gemini-2.5-pro")
    >>> (limits.name, known, limits.adapter_sizes)
    ('gemini-2.5-pro', True, (1, 2, 4, 8))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GB: Final = 1024**3
"""The service's "1 GB" file limit, read as 1 GiB (the larger reading, so we never reject early)."""

CHARS_PER_TOKEN: Final = 4

SUPPORTED_MIME_TYPES: Final[frozenset[str]] = frozenset(
    {
        # images
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        # documents
        "application/pdf",
        "text/plain",
        # audio
        "audio/aac",
        "audio/flac",
        "audio/mp3",
        "audio/m4a",
        "audio/mpeg",
        "audio/mpga",
        "audio/mp4",
        "audio/opus",
        "audio/pcm",
        "audio/wav",
        "audio/webm",
        # video
        "video/x-flv",
        "video/quicktime",
        "video/mov",
        "video/mpeg",
        "video/mpegps",
        "video/mpg",
        "video/mp4",
        "video/webm",
        "video/wmv",
        "video/3gpp",
    }
)
"""Media types Gemini accepts in parts (images, PDF/plain text, audio, video)."""

MEDIA_TOKEN_ESTIMATES: Final[dict[str, int]] = {
    "image": 258,  # Gemini counts a (<= 384 px or tiled) image as 258 tokens
    "video": 263 * 60,  # 263 tokens per second; assume one minute
    "audio": 32 * 60,  # 32 tokens per second; assume one minute
    "document": 258 * 10,  # 258 tokens per PDF page; assume ten pages
    "text_file": 1_000,  # a referenced text/plain file of unknown length
}
"""Fixed per-part token estimates for media whose size we cannot see from the JSONL."""


def media_kind(mime_type: str) -> str:
    """Bucket a media type into the statistics' kinds: image, video, audio, document, text_file."""
    if mime_type.startswith("image/"):
        return "image"
    if mime_type.startswith("video/"):
        return "video"
    if mime_type.startswith("audio/"):
        return "audio"
    if mime_type.startswith("text/"):
        return "text_file"
    return "document"


def estimate_text_tokens(chars: int) -> int:
    """``ceil(chars / 4)``: the text part of the token estimate."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What the tuning service accepts for one base model."""

    name: str
    max_tokens_per_example: int
    min_examples: int
    recommended_min_examples: int
    max_training_examples_text: int
    max_training_examples_multimodal: int
    max_validation_examples: int
    max_file_bytes: int
    adapter_sizes: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view (for reports)."""
        return {
            "name": self.name,
            "max_tokens_per_example": self.max_tokens_per_example,
            "min_examples": self.min_examples,
            "recommended_min_examples": self.recommended_min_examples,
            "max_training_examples_text": self.max_training_examples_text,
            "max_training_examples_multimodal": self.max_training_examples_multimodal,
            "max_validation_examples": self.max_validation_examples,
            "max_file_bytes": self.max_file_bytes,
            "adapter_sizes": list(self.adapter_sizes),
        }


def _gemini_2(name: str, adapter_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)) -> ModelLimits:
    return ModelLimits(
        name=name,
        max_tokens_per_example=131_072,
        min_examples=16,
        recommended_min_examples=100,
        max_training_examples_text=1_000_000,
        max_training_examples_multimodal=300_000,
        max_validation_examples=5_000,
        max_file_bytes=GB,
        adapter_sizes=adapter_sizes,
    )


MODEL_LIMITS: Final[dict[str, ModelLimits]] = {
    limits.name: limits
    for limits in (
        _gemini_2("gemini-2.5-flash"),
        _gemini_2("gemini-2.5-flash-lite"),
        _gemini_2("gemini-2.5-pro", adapter_sizes=(1, 2, 4, 8)),
        _gemini_2("gemini-2.0-flash-001"),
        _gemini_2("gemini-2.0-flash-lite-001"),
    )
}
"""The supported SFT base models and their limits."""

MODEL_ALIASES: Final[dict[str, str]] = {
    "gemini-2.0-flash": "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite": "gemini-2.0-flash-lite-001",
}

DEFAULT_BASE_MODEL: Final = "gemini-2.5-flash"

FALLBACK_LIMITS: Final = _gemini_2("unknown")
"""Used for base models missing from the table: the common Gemini 2.x numbers."""


def normalize_model_name(base_model: str) -> str:
    """Strip resource prefixes (``projects/.../publishers/google/models/``, ``models/``) and aliases."""
    name = base_model.strip().lower()
    for marker in ("/publishers/google/models/", "publishers/google/models/", "models/"):
        index = name.rfind(marker)
        if index != -1:
            name = name[index + len(marker) :]
            break
    return MODEL_ALIASES.get(name, name)


def resolve_limits(base_model: str) -> tuple[ModelLimits, bool]:
    """The limits for ``base_model`` and whether the model is known (else the fallback)."""
    name = normalize_model_name(base_model)
    known = MODEL_LIMITS.get(name)
    if known is not None:
        return known, True
    return FALLBACK_LIMITS, False
