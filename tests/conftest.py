"""Fixtures shared by every suite (the helpers themselves live in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import T0, Clock

from shared import wiring


@pytest.fixture
def clock() -> Clock:
    """A clock standing at :data:`helpers.T0` until the test advances it."""
    return Clock(T0)


@pytest.fixture(autouse=True)
def _fresh_services() -> Iterator[None]:
    """Each test starts and ends without cached services (install them with ``wiring.install_services``)."""
    wiring.reset_services_cache()
    yield
    wiring.reset_services_cache()
