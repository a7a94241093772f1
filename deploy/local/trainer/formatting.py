"""Turning conversations into token ids with the model's own chat template.

Training and generation must see identical prompts, so both go through the tokenizer's chat
template. For training the rendered text is cut at turn boundaries: the text each model turn
adds (its answer plus the end-of-turn marker) is learned, everything else (system prompt, user
turns, template scaffolding) gets label ``IGNORE_INDEX`` and contributes no loss.

>>> encode_conversation(tokenizer, conversation, max_seq_len=512).labels  # doctest: +SKIP
[-100, -100, ..., 22, 918, 2, 198]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy.local.trainer.dataset import ParsedContents
from deploy.local.trainer.errors import TrainerError

IGNORE_INDEX = -100


class ChatTemplateError(TrainerError):
    """The tokenizer's chat template renders turns in a way the trainer cannot split."""


@dataclass(frozen=True)
class EncodedExample:
    """Token ids and labels of one example (labels are ``IGNORE_INDEX`` where nothing is learned)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def trained_token_count(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def chat_messages(contents: ParsedContents) -> list[dict[str, str]]:
    """Gemini turns as chat-template messages (``model`` becomes ``assistant``)."""
    messages: list[dict[str, str]] = []
    if contents.system is not None:
        messages.append({"role": "system", "content": contents.system})
    for turn in contents.turns:
        messages.append({"role": "assistant" if turn.role == "model" else "user", "content": turn.text})
    return messages


def render_prompt(tokenizer: Any, contents: ParsedContents) -> str:
    """The text the model continues from when asked to answer ``contents``."""
    return str(tokenizer.apply_chat_template(chat_messages(contents), tokenize=False, add_generation_prompt=True))


def encode_prompt(tokenizer: Any, contents: ParsedContents) -> list[int]:
    """Token ids of ``render_prompt`` (no extra special tokens: the template has them)."""
    return list(tokenizer(render_prompt(tokenizer, contents), add_special_tokens=False)["input_ids"])


def encode_conversation(tokenizer: Any, contents: ParsedContents, max_seq_len: int) -> EncodedExample:
    """Tokenize a whole conversation, learning only the model turns, cut to ``max_seq_len`` tokens.

    Raises ``ChatTemplateError`` if the template does not render a conversation as the
    concatenation of its turns (true of ChatML-style templates such as SmolLM2's).
    """
    messages = chat_messages(contents)
    segments: list[tuple[str, bool]] = []  # (text, learned)
    consumed = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], add_generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], add_generation_prompt=False)
        if not before.startswith(consumed) or not through.startswith(before):
            raise ChatTemplateError("the chat template does not render turns as a prefix-stable sequence")
        segments.append((before[len(consumed) :], False))
        segments.append((through[len(before) :], True))
        consumed = through
    whole = _render(tokenizer, messages, add_generation_prompt=False)
    if not whole.startswith(consumed):
        raise ChatTemplateError("the chat template does not render turns as a prefix-stable sequence")
    segments.append((whole[len(consumed) :], False))

    input_ids: list[int] = []
    labels: list[int] = []
    for text, learned in segments:
        if not text:
            continue
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        input_ids.extend(ids)
        labels.extend(ids if learned else [IGNORE_INDEX] * len(ids))
    truncated = len(input_ids) > max_seq_len
    return EncodedExample(input_ids=input_ids[:max_seq_len], labels=labels[:max_seq_len], truncated=truncated)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt))
