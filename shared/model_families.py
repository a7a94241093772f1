"""What each Gemini model family accepts for thinking, as one data table with its sources.

The smoke test and the base-model comparison generate with the least thinking a model allows
(answers are compared with training examples that carry no thoughts), and the local tuning
server checks requests against the same facts, the way Vertex does where it is documented.

Sources (the table rows name theirs):

* THINKING = https://cloud.google.com/vertex-ai/generative-ai/docs/thinking : thinking budget
  ranges per 2.5 model (2.5 Pro 128-32768 and cannot turn thinking off; 2.5 Flash 1-24576,
  0 turns it off; 2.5 Flash-Lite 512-24576, 0 turns it off), ``thinking_level`` for Gemini 3
  and later (Gemini 3 Pro: LOW/HIGH, thinking cannot be turned off; Gemini 3 Flash also
  MINIMAL/MEDIUM), 2.5 models do not support ``thinking_level``, and a request may not set both.
* GEMINI_API_THINKING = https://ai.google.dev/gemini-api/docs/thinking : the same ranges, and
  that thinking tokens are part of the output (they count against ``maxOutputTokens``).
* MODELS = https://cloud.google.com/vertex-ai/generative-ai/docs/models : Gemini 2.0 models do
  not think (no thinking config is sent to them).

Output tokens: thinking is billed and limited as output, so ``maxOutputTokens`` must hold the
thinking budget *plus* the answer. For a budget family the request asks for
``answer + budget`` tokens; a level family has no budget to add, so ``level_headroom`` (a
sftpilot choice, not a Google figure) is added instead.

Example:
    >>> family_for("publishers/google/models/gemini-2.5-pro").name
    'gemini-2.5-pro'
    >>> settings = generation_settings("gemini-2.5-pro", answer_tokens=256)
    >>> (settings.thinking_budget, settings.thinking_level, settings.max_output_tokens)
    (128, None, 384)
    >>> generation_settings("gemini-3-pro-preview", answer_tokens=256).thinking_level
    'LOW'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

THINKING: Final = "https://cloud.google.com/vertex-ai/generative-ai/docs/thinking"
GEMINI_API_THINKING: Final = "https://ai.google.dev/gemini-api/docs/thinking"
MODELS: Final = "https://cloud.google.com/vertex-ai/generative-ai/docs/models"


class ThinkingControl(StrEnum):
    """How a family's thinking is controlled."""

    NONE = "none"
    """The model does not think: send no thinking config."""
    BUDGET = "budget"
    """``thinking_budget`` in tokens (Gemini 2.5)."""
    LEVEL = "level"
    """``thinking_level`` (Gemini 3 and later); a budget is accepted for compatibility only."""


@dataclass(frozen=True)
class ModelFamily:
    """The thinking facts of one model family (matched by name prefix, longest first)."""

    name: str
    pattern: str
    """Regular expression matched against the short model name (``gemini-2.5-flash-001``)."""
    control: ThinkingControl
    min_budget: int | None = None
    """Smallest positive budget accepted (budget families)."""
    max_budget: int | None = None
    can_disable: bool = False
    """0 turns thinking off (budget families)."""
    levels: tuple[str, ...] = ()
    """Accepted ``thinking_level`` values, lowest first (level families)."""
    lowest_level: str | None = None
    """The level the smoke test asks for (the least thinking the family offers)."""
    level_headroom: int = 0
    """Output tokens added for thinking when only a level can be set (sftpilot's choice)."""
    source: str = THINKING

    def matches(self, model: str) -> bool:
        """True when ``model`` (any form: short, publisher path, full resource) is of this family."""
        return re.match(self.pattern, short_model_name(model)) is not None

    @property
    def least_budget(self) -> int | None:
        """The budget that thinks least: 0 where thinking can be turned off, else the minimum."""
        if self.control is not ThinkingControl.BUDGET:
            return None
        return 0 if self.can_disable else self.min_budget

    def budget_problem(self, budget: int) -> str | None:
        """Why Vertex refuses ``thinking_budget=budget`` on this family, or None (-1 = dynamic)."""
        if self.control is not ThinkingControl.BUDGET or budget == -1:
            return None
        if budget == 0:
            return None if self.can_disable else f"Budget 0 is invalid. {self.name} only works in thinking mode."
        low, high = self.min_budget or 1, self.max_budget or budget
        if not low <= budget <= high:
            return f"The thinking budget {budget} is invalid for {self.name}: it must be between {low} and {high}."
        return None

    def level_problem(self, level: str) -> str | None:
        """Why Vertex refuses ``thinking_level=level`` on this family, or None (not documented)."""
        if self.control is ThinkingControl.NONE:
            return None
        if self.control is ThinkingControl.BUDGET:
            return f"thinking_level is not supported by {self.name}; use thinking_budget."
        if level.upper() not in self.levels:
            return f"thinking_level {level} is not supported by {self.name} (supported: {', '.join(self.levels)})."
        return None


MODEL_FAMILIES: Final[tuple[ModelFamily, ...]] = (
    ModelFamily("gemini-1.x", r"gemini-1\.", ThinkingControl.NONE, source=MODELS),
    ModelFamily("gemini-2.0", r"gemini-2\.0-", ThinkingControl.NONE, source=MODELS),
    ModelFamily(
        "gemini-2.5-pro", r"gemini-2\.5-pro", ThinkingControl.BUDGET, min_budget=128, max_budget=32768, source=THINKING
    ),
    ModelFamily(
        "gemini-2.5-flash-lite",
        r"gemini-2\.5-flash-lite",
        ThinkingControl.BUDGET,
        min_budget=512,
        max_budget=24576,
        can_disable=True,
        source=THINKING,
    ),
    ModelFamily(
        "gemini-2.5-flash",
        r"gemini-2\.5-flash",
        ThinkingControl.BUDGET,
        min_budget=1,
        max_budget=24576,
        can_disable=True,
        source=THINKING,
    ),
    ModelFamily(
        "gemini-3-pro",
        r"gemini-3(\.\d+)?-pro",
        ThinkingControl.LEVEL,
        levels=("LOW", "HIGH"),
        lowest_level="LOW",
        level_headroom=1024,
        source=THINKING,
    ),
    ModelFamily(
        "gemini-3-flash",
        r"gemini-3(\.\d+)?-flash",
        ThinkingControl.LEVEL,
        levels=("MINIMAL", "LOW", "MEDIUM", "HIGH"),
        lowest_level="MINIMAL",
        level_headroom=512,
        source=THINKING,
    ),
)
"""Most specific first: ``gemini-2.5-flash-lite`` must win over ``gemini-2.5-flash``."""

UNKNOWN_FAMILY: Final = ModelFamily("unknown", r".*", ThinkingControl.NONE, source=THINKING)
"""A model we have no facts for: no thinking config (the model's default), no headroom."""


def short_model_name(model: str) -> str:
    """``projects/p/locations/l/publishers/google/models/gemini-2.5-pro@001`` -> ``gemini-2.5-pro``.

    >>> short_model_name("publishers/google/models/gemini-2.5-flash-lite-001")
    'gemini-2.5-flash-lite-001'
    """
    return model.rsplit("/", 1)[-1].split("@", 1)[0].lower()


def is_tuned_model_name(model: str) -> bool:
    """True for a tuned model or endpoint resource (``projects/../models/123``), not a Gemini name.

    >>> is_tuned_model_name("projects/p/locations/l/models/123@1"), is_tuned_model_name("gemini-2.5-pro")
    (True, False)
    """
    return ("/models/" in model and "/publishers/" not in model) or "/endpoints/" in model


def family_for(model: str) -> ModelFamily:
    """The family of a Gemini model name, or :data:`UNKNOWN_FAMILY`."""
    for family in MODEL_FAMILIES:
        if family.matches(model):
            return family
    return UNKNOWN_FAMILY


@dataclass(frozen=True)
class GenerationSettings:
    """Thinking and output-token settings for one deterministic smoke-test call."""

    thinking_budget: int | None
    thinking_level: str | None
    max_output_tokens: int
    family: str


def generation_settings(base_model: str | None, *, answer_tokens: int) -> GenerationSettings:
    """The least thinking ``base_model`` allows, and room for it next to ``answer_tokens``.

    >>> generation_settings("gemini-2.5-flash", answer_tokens=256)
    GenerationSettings(thinking_budget=0, thinking_level=None, max_output_tokens=256, family='gemini-2.5-flash')
    >>> generation_settings(None, answer_tokens=256).thinking_budget is None
    True
    """
    family = family_for(base_model) if base_model else UNKNOWN_FAMILY
    budget = family.least_budget
    level = family.lowest_level if family.control is ThinkingControl.LEVEL else None
    room = (budget or 0) + (family.level_headroom if level else 0)
    return GenerationSettings(
        thinking_budget=budget,
        thinking_level=level,
        max_output_tokens=answer_tokens + room,
        family=family.name,
    )
