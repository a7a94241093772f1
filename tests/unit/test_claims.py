"""One lease length for every claim (``shared.claims``); the rules themselves are in tests/contract."""

from __future__ import annotations

from shared.claims import DEFAULT_LEASE_SECONDS
from shared.completion import CompletionOptions
from shared.poller import PollOptions
from shared.settings import Settings


def test_one_lease_default_longer_than_the_function_timeout() -> None:
    assert DEFAULT_LEASE_SECONDS > 540  # the event-function timeout: a live invocation keeps its claim
    assert Settings(project="p", bucket="datasets-bkt").lease_seconds == DEFAULT_LEASE_SECONDS
    assert PollOptions().lease_seconds == DEFAULT_LEASE_SECONDS
    assert CompletionOptions(bucket="b", deployment="d").lease_seconds == DEFAULT_LEASE_SECONDS


def test_the_lease_setting_reaches_every_claimant() -> None:
    settings = Settings(project="p", bucket="datasets-bkt", lease_seconds=900)
    assert PollOptions.from_settings(settings).lease_seconds == 900
    assert CompletionOptions.from_settings(settings).lease_seconds == 900
