"""Helpers every test suite shares: one fixed start time and one clock the test moves by hand.

Importable as ``helpers`` (pytest's ``pythonpath`` includes ``tests/``); ``tests/conftest.py``
offers the clock as a fixture too.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
"""The tests' "now" unless they say otherwise (display names and report paths derive from it)."""


class Clock:
    """A :class:`shared.ports.Clock` the test moves (leases, stall detection). Thread-safe."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float = 0, **delta: float) -> None:
        """Move forward by ``seconds`` and/or ``timedelta`` keywords (``hours=7``)."""
        with self._lock:
            self.now += timedelta(seconds=seconds, **delta)
