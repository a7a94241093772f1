"""pytest fixtures for tests against the real emulators (Pub/Sub, Firestore, fake-gcs-server).

Import them into a ``conftest.py`` (``tests/integration`` and ``tests/contract`` do)::

    from deploy.local.pytest_fixtures import *  # noqa: F403

``emulators`` starts the three servers once per test process (a few seconds; shared by every
conftest that imports it), exports their environment variables while the session runs
(restored afterwards) and yields the :class:`deploy.local.stack.LocalStack`. The other
fixtures isolate tests by unique names: a bucket, a topic with a pull subscription, Firestore
collections. Tests that use them should be marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from deploy.local.components import MissingComponentError
from deploy.local.stack import LocalStack
from deploy.local.testing import (
    TopicHandle,
    create_bucket,
    create_topic,
    shared_emulators,
    stop_shared_emulators,
    unique_name,
)

__all__ = [
    "emulators",
    "firestore_collections",
    "gcs_bucket",
    "pubsub_topic",
    "pytest_sessionfinish",
]


@pytest.fixture(scope="session")
def emulators() -> Iterator[LocalStack]:
    """The running emulators; their env vars (STORAGE_EMULATOR_HOST, ...) are set meanwhile."""
    try:
        stack = shared_emulators()
    except MissingComponentError as exc:
        pytest.fail(f"cannot start the emulators: {exc}", pytrace=False)
    saved = {name: os.environ.get(name) for name in stack.env()}
    os.environ.update(stack.env())
    yield stack
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No emulator outlives the test session."""
    stop_shared_emulators()


@pytest.fixture
def gcs_bucket(emulators: LocalStack) -> str:
    """A fresh, empty bucket on fake-gcs-server."""
    return create_bucket(emulators, unique_name("bkt"))


@pytest.fixture
def pubsub_topic(emulators: LocalStack) -> TopicHandle:
    """A fresh topic with one pull subscription (message ordering enabled on it)."""
    return create_topic(emulators, unique_name("topic"), ordered=True)


@pytest.fixture
def firestore_collections(emulators: LocalStack) -> tuple[str, str]:
    """Fresh ``(jobs_collection, effects_collection)`` names in the Firestore emulator."""
    return unique_name("jobs"), unique_name("effects")
