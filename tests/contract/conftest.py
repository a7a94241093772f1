"""Contract suites: the same tests run on the in-memory fake and on the real adapter.

Each ``*_harness`` fixture is parametrized ``fake`` / ``real``; ``real`` runs against the
emulators (marked ``integration``, so ``-m "not integration"`` runs only the fakes). A harness
carries the port under test plus the few implementation-specific hooks a contract needs to
arrange a situation (e.g. breaking a stream mid-read), never a different assertion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from deploy.local.pytest_fixtures import *  # noqa: F403
from deploy.local.testing import TopicHandle, create_topic, delete_topic, pull, unique_name
from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher
from shared.events import encode_body
from shared.ports import BlobStore, JobStore, OutgoingEvent, Publisher

IMPLEMENTATIONS = ["fake", pytest.param("real", marks=pytest.mark.integration)]


# --- blob store ----------------------------------------------------------------------------------


@dataclass
class BlobHarness:
    store: BlobStore
    bucket: str
    arrange_mid_stream_failure: Callable[[str, int], Callable[[], None]]
    """(name, after_bytes) -> trigger(); call trigger() once ``after_bytes`` were read."""


@pytest.fixture(params=IMPLEMENTATIONS)
def blob_harness(request: pytest.FixtureRequest) -> BlobHarness:
    if request.param == "fake":
        fake = FakeBlobStore()

        def arrange_fake(name: str, after_bytes: int) -> Callable[[], None]:
            fake.fail_reads_after[name] = after_bytes
            return lambda: None

        return BlobHarness(fake, "contract-bucket", arrange_fake)

    from google.cloud import storage

    from shared.adapters.gcs import GcsBlobStore

    bucket = request.getfixturevalue("gcs_bucket")
    stack = request.getfixturevalue("emulators")
    # Small ranged reads so a stream spans several requests (the break happens between two).
    real = GcsBlobStore(project=stack.project, chunk_size=256 * 1024)

    def arrange_real(name: str, after_bytes: int) -> Callable[[], None]:
        def trigger() -> None:
            storage.Client(project=stack.project).bucket(bucket).blob(name).delete()

        return trigger

    return BlobHarness(real, bucket, arrange_real)


# --- job store -----------------------------------------------------------------------------------


@pytest.fixture(params=IMPLEMENTATIONS)
def job_store(request: pytest.FixtureRequest) -> JobStore:
    if request.param == "fake":
        return FakeJobStore()
    from shared.adapters.firestore import FirestoreJobStore

    stack = request.getfixturevalue("emulators")
    jobs, effects = request.getfixturevalue("firestore_collections")
    return FirestoreJobStore(project=stack.project, jobs_collection=jobs, effects_collection=effects)


# --- publisher -----------------------------------------------------------------------------------


@dataclass
class Received:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


@dataclass
class PublisherHarness:
    publisher: Publisher
    received: Callable[[], list[Received]]
    """Everything delivered to a subscriber so far (real: pulled from the emulator)."""
    break_next_publish: Callable[[], None]
    """Make the next publish fail on the server side."""
    repair: Callable[[], None]
    """Undo break_next_publish."""
    closers: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture(params=IMPLEMENTATIONS)
def publisher_harness(request: pytest.FixtureRequest) -> Any:
    if request.param == "fake":
        fake = FakePublisher()

        def received_fake() -> list[Received]:
            return [Received(encode_body(e), dict(e.attributes), e.ordering_key) for e in fake.published]

        def break_fake() -> None:
            fake.failures.fail_next("publish", RuntimeError("topic not found (injected)"))

        yield PublisherHarness(fake, received_fake, break_fake, lambda: None)
        return

    from shared.adapters.pubsub import PubSubPublisher

    stack = request.getfixturevalue("emulators")
    topic_name = unique_name("topic")
    handle: TopicHandle = create_topic(stack, topic_name, ordered=True)
    real = PubSubPublisher(handle.topic_path, timeout_seconds=10)
    collected: list[Received] = []

    def received_real() -> list[Received]:
        for message in pull(stack, handle.subscription_path):
            collected.append(Received(message["data"], dict(message["attributes"]), message["orderingKey"]))
        return list(collected)

    def break_real() -> None:
        delete_topic(stack, handle.topic_path)

    def repair_real() -> None:
        # Recreating the topic detaches the old subscription: attach a new one for what follows.
        nonlocal handle
        handle = create_topic(stack, topic_name, subscription=unique_name("sub"), ordered=True)

    yield PublisherHarness(real, received_real, break_real, repair_real)
    real.close()


def _outgoing(event_id: str, ordering_key: str = "job-1", **attributes: str) -> OutgoingEvent:
    attrs = {"type": "job.succeeded", "job_id": ordering_key, "event_id": event_id, **attributes}
    return OutgoingEvent(
        event_id=event_id,
        event_type="job.succeeded",
        data={"event_id": event_id, "type": "job.succeeded", "nested": {"list": [1, 2]}},
        attributes=attrs,
        ordering_key=ordering_key,
    )


@pytest.fixture
def make_event() -> Callable[..., OutgoingEvent]:
    """``make_event(event_id, ordering_key="job-1", **attributes)``: a small sftpilot-shaped event."""
    return _outgoing
