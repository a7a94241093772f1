"""generateContent on endpoints, tuned models and base models.

* ``endpoints/{e}`` -> the checkpoint deployed there: the job's local base model + that adapter.
* ``models/{m}[@1]`` -> the model's default (last) checkpoint.
* ``publishers/google/models/{name}`` -> the mapped local base model, no adapter.

Sampling follows the request's ``generationConfig`` (temperature, topP, topK,
maxOutputTokens, seed, stopSequences). Defaults mirror Gemini 2.5 (temperature 1.0, topP 0.95,
topK 64), except ``maxOutputTokens`` (256: the local models are small). ``thinkingConfig`` is
checked the way Vertex checks it for the target's Gemini base model (the table and its sources
are :mod:`shared.model_families`): a budget outside the family's range (e.g. 0 or < 128 on 2.5
Pro), a ``thinkingLevel`` on a 2.5 model or one the family does not offer, or both fields at
once, get 400 INVALID_ARGUMENT. Then it is ignored: the local models do not think. Torch is
imported on the first call only.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.tuning_server.config import ServerConfig, normalize_base_model
from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import (
    JSON,
    ApiError,
    failed_precondition,
    invalid_argument,
    not_found,
    now_rfc3339,
)
from shared.model_families import family_for

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 64
DEFAULT_MAX_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class Target:
    """What to run: a local base model and optionally an adapter folder."""

    local_model: str
    adapter_dir: Path | None
    model_version: str
    base_model: str = ""
    """The Gemini model the target stands for (its family decides which thinking config is valid)."""


class InferenceService:
    """Resolves a generateContent target and runs the trainer's :class:`Generator`."""

    def __init__(self, config: ServerConfig, store: StateStore) -> None:
        self.config = config
        self.store = store
        self._generator: Any = None
        self._lock = threading.Lock()

    # --- targets ---------------------------------------------------------------------------

    def endpoint_target(self, endpoint_id: str) -> Target:
        """The model deployed on an endpoint (all traffic goes to the first deployment)."""
        with self.store.lock:
            endpoint = self.store.endpoints.get(endpoint_id)
            if endpoint is None:
                raise not_found(f"Endpoint {endpoint_id} not found.")
            deployments = endpoint.deployment_list
            if not deployments:
                raise failed_precondition(f"Endpoint {endpoint.name} has no deployed model.")
            deployed = deployments[0]
            model_id = deployed.model.split("/models/")[-1].split("@")[0]
            model = self.store.models.get(model_id)
            if model is None:
                raise failed_precondition(f"The model deployed on {endpoint.name} no longer exists.")
            checkpoint = model.checkpoint(deployed.checkpoint_id)
            return Target(
                model.local_model, self._adapter_path(checkpoint.adapter_dir), deployed.model, model.base_model
            )

    def model_target(self, model_id: str) -> Target:
        """A tuned model's default checkpoint."""
        with self.store.lock:
            model = self.store.models.get(model_id)
            if model is None:
                raise not_found(f"Model {model_id} not found.")
            checkpoint = model.checkpoint(None)
            return Target(
                model.local_model, self._adapter_path(checkpoint.adapter_dir), model.versioned_name, model.base_model
            )

    def publisher_target(self, name: str) -> Target:
        """A base model by its Gemini name."""
        local = self.config.local_model_for(name)
        if local is None:
            raise not_found(f"Publisher model publishers/google/models/{name} not found.")
        return Target(local, None, normalize_base_model(name), normalize_base_model(name))

    def _adapter_path(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.store.state_dir / path

    # --- generation ------------------------------------------------------------------------

    def generate(self, target: Target, body: JSON) -> JSON:
        """Answer one (normalised camelCase) GenerateContentRequest."""
        contents = body.get("contents")
        if isinstance(contents, dict):
            contents = [contents]
        if not isinstance(contents, list) or not contents:
            raise invalid_argument("contents is required and must be a non-empty list.")
        system_instruction = _system_text(body.get("systemInstruction"))
        config = body.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise invalid_argument("generationConfig must be an object.")
        candidate_count = config.get("candidateCount")
        if candidate_count not in (None, 1):
            raise invalid_argument("candidateCount > 1 is not supported by the local tuning server.")
        temperature = _number(config, "temperature", DEFAULT_TEMPERATURE)
        top_p = _number(config, "topP", DEFAULT_TOP_P)
        top_k = _integer(config, "topK", DEFAULT_TOP_K)
        max_tokens = _integer(config, "maxOutputTokens", DEFAULT_MAX_OUTPUT_TOKENS)
        seed = _integer(config, "seed", secrets.randbelow(2**31))
        _check_thinking(config.get("thinkingConfig"), target.base_model)
        stop_sequences = config.get("stopSequences") or []
        if not isinstance(stop_sequences, list) or not all(isinstance(s, str) for s in stop_sequences):
            raise invalid_argument("generationConfig.stopSequences must be a list of strings.")

        generator = self._get_generator()
        from deploy.local.trainer.errors import TrainerError  # noqa: PLC0415
        from deploy.local.trainer.models import resolve_model_dir  # noqa: PLC0415

        try:
            model_dir = resolve_model_dir(target.local_model, self.config.model_cache_dir)
            result = generator.generate(
                model_dir,
                target.adapter_dir,
                contents,
                system_instruction,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_output_tokens=max_tokens,
                seed=seed,
            )
        except ValueError as error:  # ContentsFormatError, InvalidGenerationConfigError, PromptTooLongError
            raise invalid_argument(str(error)) from error
        except TrainerError as error:  # adapter files gone, model unavailable
            raise failed_precondition(str(error)) from error

        text: str = result.text
        finish_reason: str = result.finish_reason
        for stop in stop_sequences:
            index = text.find(stop) if stop else -1
            if index >= 0:
                text = text[:index]
                finish_reason = "STOP"
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": finish_reason,
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": result.prompt_token_count,
                "candidatesTokenCount": result.candidates_token_count,
                "totalTokenCount": result.prompt_token_count + result.candidates_token_count,
                "trafficType": "ON_DEMAND",
            },
            "modelVersion": target.model_version,
            "createTime": now_rfc3339(),
            "responseId": secrets.token_urlsafe(12),
        }

    def _get_generator(self) -> Any:
        with self._lock:
            if self._generator is None:
                try:
                    from deploy.local.trainer.generate import Generator  # noqa: PLC0415 - loads torch
                except ImportError as error:
                    raise ApiError(
                        501, f"Local generation needs the 'train' extra (torch, transformers): {error}"
                    ) from error
                self._generator = Generator()
            return self._generator


def _system_text(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        parts = raw.get("parts") or []
        if isinstance(parts, list):
            return "".join(part.get("text", "") for part in parts if isinstance(part, dict)) or None
    raise invalid_argument("systemInstruction must be a Content object with text parts.")


def _check_thinking(raw: Any, base_model: str) -> None:
    """400 for a thinking config Vertex refuses on ``base_model``'s family (see the module doc)."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise invalid_argument("generationConfig.thinkingConfig must be an object.")
    budget, level = raw.get("thinkingBudget"), raw.get("thinkingLevel")
    if budget is not None and level is not None:
        raise invalid_argument("thinking_budget and thinking_level cannot both be set.")
    family = family_for(base_model)
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise invalid_argument("generationConfig.thinkingConfig.thinkingBudget must be an integer.")
        problem = family.budget_problem(budget)
    elif level is not None and str(level).upper() != "THINKING_LEVEL_UNSPECIFIED":
        problem = family.level_problem(str(level))
    else:
        problem = None
    if problem is not None:
        raise invalid_argument(problem)


def _number(config: JSON, key: str, default: float) -> float:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_argument(f"generationConfig.{key} must be a number.")
    return float(value)


def _integer(config: JSON, key: str, default: int) -> int:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise invalid_argument(f"generationConfig.{key} must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid_argument(f"generationConfig.{key} must be an integer.") from None
    if isinstance(value, float) and value != number:
        raise invalid_argument(f"generationConfig.{key} must be an integer.")
    return number
