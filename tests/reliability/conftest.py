"""Fixtures of the reliability suite. The harness itself lives in :mod:`harness` (importable by tests).

Emulator fixtures (``emulators``, ``firestore_collections``, ...) come from
``deploy/local/pytest_fixtures.py``; tests that use them are marked ``integration``.
"""

from __future__ import annotations

import pytest

from deploy.local.pytest_fixtures import *  # noqa: F403

from .harness import Pipeline


@pytest.fixture
def pipe() -> Pipeline:
    """A fresh pipeline on fakes (quota 5, two smoke prompts, cleanup keep_last 1)."""
    return Pipeline()
