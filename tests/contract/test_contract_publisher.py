"""Publisher contract: FakePublisher and PubSubPublisher (Pub/Sub emulator) behave the same."""

from __future__ import annotations

import json
import time

import pytest

from shared.errors import PublishError
from shared.events import encode_body


def _wait_for(harness, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    got = harness.received()
    while len(got) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        got = harness.received()
    return got


def test_publish_returns_an_id_and_delivers_body_attributes_and_key(publisher_harness, make_event):
    event = make_event("job-1:SUCCEEDED", ordering_key="job-1", lineage="faq")

    message_id = publisher_harness.publisher.publish(event)

    assert isinstance(message_id, str)
    assert message_id
    (got,) = _wait_for(publisher_harness, 1)
    assert got.data == encode_body(event)
    assert json.loads(got.data)["nested"] == {"list": [1, 2]}
    assert got.attributes == event.attributes
    assert got.ordering_key == "job-1"


def test_events_with_one_ordering_key_arrive_in_publish_order(publisher_harness, make_event):
    ids = [f"job-7:step-{i}" for i in range(6)]
    for event_id in ids:
        publisher_harness.publisher.publish(make_event(event_id, ordering_key="job-7"))

    got = _wait_for(publisher_harness, len(ids))

    assert [g.attributes["event_id"] for g in got] == ids


def test_a_publish_the_server_rejected_raises_and_the_key_recovers(publisher_harness, make_event):
    publisher_harness.break_next_publish()
    with pytest.raises(PublishError) as err:
        publisher_harness.publisher.publish(make_event("job-2:FAILED", ordering_key="job-2"))
    assert err.value.event_id == "job-2:FAILED"

    publisher_harness.repair()
    publisher_harness.publisher.publish(make_event("job-2:FAILED", ordering_key="job-2"))

    got = _wait_for(publisher_harness, 1)
    assert [g.attributes["event_id"] for g in got] == ["job-2:FAILED"]
