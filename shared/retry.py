"""Bounded retries of one call on retryable errors, shared by the smoke test and the cleanup.

What counts as retryable is decided by :func:`shared.errors.is_retryable` alone.

Example:
    >>> calls = []
    >>> def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 2:
    ...         raise TimeoutError("slow")
    ...     return "ok"
    >>> call_with_retries(flaky, retry=RetryPolicy(attempts=3), sleep=lambda s: None), len(calls)
    ('ok', 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import is_retryable

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one call (5xx, 429, timeouts, transport errors)."""

    attempts: int = 3
    initial_backoff_seconds: float = 1.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(self.initial_backoff_seconds * self.multiplier ** (attempt - 1))

    def worst_case_seconds(self, timeout_seconds: float) -> float:
        """Longest one call can take: every attempt times out, plus the backoffs between them.

        >>> RetryPolicy().worst_case_seconds(30)
        93.0
        """
        backoffs = sum(self.backoff(attempt) for attempt in range(1, self.attempts))
        return float(timeout_seconds * self.attempts + backoffs)


def call_with_retries(operation: Callable[[], T], *, retry: RetryPolicy, sleep: Sleep) -> T:
    """Run ``operation``; retry retryable errors with backoff, then let the last one propagate."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as exc:
            if not is_retryable(exc) or attempt >= retry.attempts:
                raise
            sleep(retry.backoff(attempt))
