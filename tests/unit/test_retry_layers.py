"""One retry layer per call: a backend that always answers 503 gets exactly the README's bound.

The real :class:`~shared.adapters.vertex.VertexTuningBackend` runs on a fake google-genai
client (the transport), under the real smoke-test and cleanup code with their default
:class:`~shared.retry.RetryPolicy` (3 attempts).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from google.genai import errors as genai_errors

from shared.adapters.vertex import VertexTuningBackend
from shared.cleanup import RetirementTarget, retire_model
from shared.errors import TransientBackendError
from shared.model_families import generation_settings
from shared.retry import RetryPolicy
from shared.smoke_test import SmokePrompt, SmokeTarget, SmokeTestOptions, TargetRole, run_prompt

README_BOUND = RetryPolicy().attempts
"""The README promises at most this many calls per prompt and per cleanup step."""


def _unavailable() -> genai_errors.ServerError:
    return genai_errors.ServerError(503, {"error": {"code": 503, "message": "down", "status": "UNAVAILABLE"}})


class _AlwaysUnavailable:
    """Stands in for ``client.models`` and ``client._api_client``: counts calls, always 503."""

    def __init__(self, calls: Counter[str]) -> None:
        self.calls = calls

    def generate_content(self, **_: Any) -> Any:
        self.calls["generate_content"] += 1
        raise _unavailable()

    def request(self, method: str, path: str, body: dict[str, Any]) -> Any:
        self.calls[f"{method} {path}"] += 1
        raise _unavailable()


class _Client:
    def __init__(self, calls: Counter[str]) -> None:
        self.models = _AlwaysUnavailable(calls)
        self._api_client = _AlwaysUnavailable(calls)


@pytest.fixture
def calls() -> Counter[str]:
    return Counter()


@pytest.fixture
def backend(calls: Counter[str]) -> VertexTuningBackend:
    return VertexTuningBackend("p", "us-central1", client=_Client(calls), sleep=lambda s: None)


def test_a_prompt_that_always_fails_with_503_costs_exactly_the_readme_bound(backend, calls):
    assert README_BOUND == 3
    prompt = SmokePrompt("Hi", ({"role": "user", "parts": [{"text": "Hi"}]},), ())
    target = SmokeTarget(TargetRole.TUNED, "projects/p/locations/us-central1/endpoints/1", "tuned")
    with pytest.raises(TransientBackendError):
        run_prompt(
            0,
            prompt,
            target,
            tuning=backend,
            options=SmokeTestOptions(),
            generation=generation_settings("gemini-2.5-flash", answer_tokens=64),
            retry=RetryPolicy(initial_backoff_seconds=0.0),
            sleep=lambda s: None,
        )
    assert calls == Counter({"generate_content": README_BOUND})


def test_a_cleanup_step_that_always_fails_with_503_costs_exactly_the_readme_bound(backend, calls):
    model = "projects/p/locations/us-central1/models/7@1"
    target = RetirementTarget("job1", model, (), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(TransientBackendError):
        retire_model(
            target,
            tuning=backend,
            managed_by="sftpilot",
            dry_run=False,
            retry=RetryPolicy(initial_backoff_seconds=0.0),
            sleep=lambda s: None,
        )
    assert calls == Counter({f"get {model}": README_BOUND})
