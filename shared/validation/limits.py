"""Per-base-model dataset limits and the token-estimate heuristic: the one dated table to update.

Read on 2026-12-04 through the documentation search (each row cites its page):

- [SFT-ABOUT] About supervised fine-tuning for Gemini models, "Limitations":
  https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning
  (also https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/tune-text-models-supervised)
  2.5 Flash / Flash-Lite: 131,072 input+output tokens per training example, 5,000 validation
  examples, 1 GB JSONL, "1M text-only examples or 300K multimodal examples", adapter sizes
  1/2/4/8/16; 2.5 Pro: adapter sizes 1/2/4/8. 2.0 Flash / Flash-Lite: adapter sizes 1/2/4/8
  (the table's row is cut off in the stored excerpt; the 1/2/4/8 reading is from the issue that
  quoted it). The newest page version lists Gemini 3.5 Flash / 3.5 Flash-Lite rows whose values
  were not readable through search: "not documented" here, the 2.5 Flash numbers are assumed
  and the report says so (``documented=False``).
- [SFT-PREPARE] Prepare supervised fine-tuning data:
  https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/supervised-tuning/prepare-data.md.txt
  "we recommend that you start with 100 examples": no minimum is documented for current models
  (the 16-example minimum was on the retired Gemini 1.0/1.5 page), so few examples is a warning.
- [IMAGE] https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/image :
  at most 30 images per example, 20 MB per image; fileUri gs:// or public HTTP(S) URL.
- [AUDIO] https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/audio.md.txt :
  Gemini 2.5 models: 1 audio file per example, 60 minutes, 100 MB.
- [VIDEO] https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/video :
  1 video per example, 100 MB; 5 minutes at MEDIA_RESOLUTION_HIGH/MEDIUM, 20 minutes at LOW
  (longer examples are dropped; over 10 % dropped fails the job); mixing mediaResolution values
  across the dataset is not supported.
- [DOCUMENT] https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/document.md.txt :
  PDFs/pages per example: not found through search ("not documented"); no limit is enforced.
- [MIME-*] the model pages' supported MIME types (audio list from
  https://docs.cloud.google.com/vertex-ai/generative-ai/docs/multimodal/audio-understanding ).

An unknown base model gets :data:`FALLBACK_LIMITS` and the warning ``W_UNKNOWN_BASE_MODEL``.

Token estimate (an ESTIMATE, no tokenizer): ``ceil(characters / 4)`` for text ("a token is
about 4 characters", https://ai.google.dev/gemini-api/docs/tokens), plus per media part the
documented per-image / per-second figures for the model family and media resolution
(:func:`media_tokens`): Gemini 2.x images 258 tokens (64 at LOW), video 263 tokens per second
(66 per frame + 32 audio at LOW), audio 32 tokens per second, PDF pages
258 tokens; Gemini 3.x (per-part resolution, https://ai.google.dev/gemini-api/docs/media-resolution)
images 1120/560/280 tokens (HIGH/MEDIUM/LOW, default HIGH), video frames 70 tokens (280 at
HIGH), PDF pages 560. The duration of audio/video and the page count of a PDF are not visible in
the JSONL, so one minute and ten pages are assumed; reports say the numbers are estimates.

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

MIME_TYPES_BY_KIND: Final[dict[str, tuple[str, ...]]] = {
    # https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/image-understanding (read 2026-12-04)
    "image": ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"),
    # https://docs.cloud.google.com/vertex-ai/generative-ai/docs/multimodal/audio-understanding (read 2026-12-04)
    "audio": (
        "audio/x-aac",
        "audio/flac",
        "audio/mp3",
        "audio/m4a",
        "audio/mpeg",
        "audio/mpga",
        "audio/mp4",
        "audio/ogg",
        "audio/pcm",
        "audio/wav",
        "audio/webm",
        # listed before and by other model pages; kept so no previously valid file is refused
        "audio/aac",
        "audio/opus",
    ),
    # https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/video-understanding (read 2026-12-04)
    "video": (
        "video/x-flv",
        "video/quicktime",
        "video/mpeg",
        "video/mpegps",
        "video/mpg",
        "video/mp4",
        "video/webm",
        "video/wmv",
        "video/3gpp",
        "video/mov",
    ),
    # https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/document-understanding (read 2026-12-04)
    "document": ("application/pdf",),
    "text_file": ("text/plain",),
}
"""Supported media types per modality, from the model pages' MIME lists."""

SUPPORTED_MIME_TYPES: Final[frozenset[str]] = frozenset(mime for types in MIME_TYPES_BY_KIND.values() for mime in types)
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


LIMITS_READ_ON: Final = "2026-12-04"
"""When the table below was last checked against the documentation (see the module docstring)."""

RESOLUTIONS: Final[tuple[str, ...]] = (
    "MEDIA_RESOLUTION_UNSPECIFIED",
    "MEDIA_RESOLUTION_LOW",
    "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
)
"""GenerationConfig.mediaResolution values (https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/GenerationConfig)."""


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What the tuning service accepts for one base model (one row of the dated table)."""

    name: str
    max_tokens_per_example: int
    min_examples: int
    recommended_min_examples: int
    max_training_examples_text: int
    max_training_examples_multimodal: int
    max_validation_examples: int
    max_file_bytes: int
    adapter_sizes: tuple[int, ...]
    max_images_per_example: int | None = 30
    max_audio_per_example: int | None = 1
    max_videos_per_example: int | None = 1
    max_documents_per_example: int | None = None
    """None: not documented, not enforced."""
    per_part_media_resolution: bool = False
    """Gemini 3+ accept ``mediaResolution`` on a part (https://ai.google.dev/gemini-api/docs/media-resolution)."""
    family: str = "gemini-2"
    documented: bool = True
    """False when the row's numbers could not be read from the docs and the 2.5 Flash row was assumed."""
    source: str = "https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning"

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
            "max_images_per_example": self.max_images_per_example,
            "max_audio_per_example": self.max_audio_per_example,
            "max_videos_per_example": self.max_videos_per_example,
            "max_documents_per_example": self.max_documents_per_example,
            "per_part_media_resolution": self.per_part_media_resolution,
            "documented": self.documented,
            "source": self.source,
            "read_on": LIMITS_READ_ON,
        }


def _row(
    name: str,
    adapter_sizes: tuple[int, ...] = (1, 2, 4, 8, 16),
    *,
    family: str = "gemini-2",
    documented: bool = True,
) -> ModelLimits:
    return ModelLimits(
        name=name,
        max_tokens_per_example=131_072,
        min_examples=0,  # [SFT-PREPARE]: no documented minimum; below 100 is a warning
        recommended_min_examples=100,
        max_training_examples_text=1_000_000,
        max_training_examples_multimodal=300_000,
        max_validation_examples=5_000,
        max_file_bytes=GB,
        adapter_sizes=adapter_sizes,
        per_part_media_resolution=family != "gemini-2",
        family=family,
        documented=documented,
    )


MODEL_LIMITS: Final[dict[str, ModelLimits]] = {
    limits.name: limits
    for limits in (
        _row("gemini-3.5-flash", family="gemini-3", documented=False),
        _row("gemini-3.5-flash-lite", family="gemini-3", documented=False),
        _row("gemini-2.5-flash"),
        _row("gemini-2.5-flash-lite"),
        _row("gemini-2.5-pro", adapter_sizes=(1, 2, 4, 8)),
        _row("gemini-2.0-flash-001", adapter_sizes=(1, 2, 4, 8)),
        _row("gemini-2.0-flash-lite-001", adapter_sizes=(1, 2, 4, 8)),
    )
}
"""The supported SFT base models and their limits (read on :data:`LIMITS_READ_ON`)."""

MODEL_ALIASES: Final[dict[str, str]] = {
    "gemini-2.0-flash": "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite": "gemini-2.0-flash-lite-001",
}

DEFAULT_BASE_MODEL: Final = "gemini-2.5-flash"

FALLBACK_LIMITS: Final = _row("unknown")
"""Used for base models missing from the table: the common Gemini 2.x numbers."""


def media_tokens(kind: str, family: str, resolution: str | None) -> int:
    """Estimated tokens of one media part of ``kind`` for a model family and media resolution.

    Documented per-unit figures (see the module docstring) times an assumed size (one minute of
    audio/video, ten PDF pages, 1,000 tokens for a referenced text file). An estimate only.
    """
    low = resolution == "MEDIA_RESOLUTION_LOW"
    if family == "gemini-2":
        if kind == "image":
            return 64 if low else 258
        if kind == "video":
            return (66 + 32 if low else 263) * 60
        if kind == "document":
            return (64 if low else 258) * 10
    else:
        if kind == "image":
            return {"MEDIA_RESOLUTION_LOW": 280, "MEDIA_RESOLUTION_MEDIUM": 560}.get(resolution or "", 1120)
        if kind == "video":
            return ((280 if resolution == "MEDIA_RESOLUTION_HIGH" else 70) + 32) * 60
        if kind == "document":
            return (280 if low else 560) * 10
    if kind == "audio":
        return 32 * 60
    return 1_000


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
