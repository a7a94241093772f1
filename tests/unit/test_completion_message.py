"""Parsing the Pub/Sub CloudEvent that carries an sftpilot event: what arrives vs what we expect."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, parse_completion_event
from shared.errors import EventParseError

EVENTS = Path(__file__).resolve().parents[1] / "events"
NOT_JSON = base64.b64encode(b"hello").decode()
CE = {"type": PUBSUB_MESSAGE_PUBLISHED, "id": "7", "source": "//pubsub.googleapis.com/projects/p/topics/t"}


def _data(body: object, attributes: dict | None = None, raw: str | None = None) -> dict:
    encoded = raw if raw is not None else base64.b64encode(json.dumps(body).encode()).decode()
    return {"message": {"data": encoded, "attributes": attributes or {}, "messageId": "7"}}


def test_the_eventarc_fixture_parses_into_a_typed_message():
    fixture = json.loads((EVENTS / "pubsub_job_succeeded.json").read_text())
    attributes = {k: v for k, v in fixture.items() if k != "data"}
    message = parse_completion_event(attributes, fixture["data"])
    assert message.is_handled
    assert (message.event_type, message.job_id, message.lineage, message.state) == (
        "job.succeeded",
        "3d5baddf7e3d66c56b4f67d1e1328891",
        "support-bot",
        "SUCCEEDED",
    )
    assert message.event_id == "3d5baddf7e3d66c56b4f67d1e1328891:SUCCEEDED"
    assert message.body["tuned_model"].endswith("/models/882@1")
    assert message.message_id == "13579246801"
    assert message.publish_time == datetime(2026, 11, 21, 10, 42, 1, 34000, tzinfo=UTC)
    assert message.subscription.startswith("projects/sftpilot-test/subscriptions/")
    assert message.cloud_event_source == "//pubsub.googleapis.com/projects/sftpilot-test/topics/sftpilot-events"


def test_the_emulator_push_envelope_has_the_same_message():
    push = json.loads((EVENTS / "pubsub_push_job_succeeded.json").read_text())
    fixture = json.loads((EVENTS / "pubsub_job_succeeded.json").read_text())
    # functions-framework turns the push body into {"message": ...} (no subscription).
    from_push = parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED}, {"message": push["message"]})
    from_eventarc = parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED}, fixture["data"])
    assert from_push.body == from_eventarc.body
    assert from_push.subscription == ""


def test_our_other_events_parse_as_not_handled():
    fixture = json.loads((EVENTS / "pubsub_smoke_test_passed.json").read_text())
    message = parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED}, fixture["data"])
    assert (message.event_type, message.is_handled) == ("smoke_test.passed", False)


def test_an_unhandled_type_needs_nothing_but_its_type():
    message = parse_completion_event(CE, _data({"type": "something.else"}))
    assert (message.is_handled, message.job_id, message.event_id) == (False, "", "")


def test_attributes_win_over_the_body():
    message = parse_completion_event(
        CE, _data({"type": "job.failed", "job_id": "body", "event_id": "e"}, {"type": "job.failed", "job_id": "attr"})
    )
    assert message.job_id == "attr"


@pytest.mark.parametrize(
    ("attributes", "data", "field", "expected"),
    [
        ({"type": "google.cloud.storage.object.v1.finalized"}, {}, "type", PUBSUB_MESSAGE_PUBLISHED),
        (CE, ["not", "an", "object"], "data", "a JSON object"),
        (CE, {"subscription": "s"}, "data.message", "a JSON object"),
        (CE, {"message": {"data": ""}}, "message.data", "a non-empty base64 string"),
        (CE, _data(None, raw="%%% not base64 %%%"), "message.data", "base64-encoded JSON"),
        (
            CE,
            _data(None, raw=base64.b64encode(b"hello").decode()),
            "message.data",
            "base64-encoded JSON (an sftpilot event)",
        ),
        (CE, _data([1, 2]), "message.data", "a JSON object (an sftpilot event)"),
        (CE, _data({"job_id": "k"}), "message.data.type", "a non-empty string"),
        (CE, _data({"type": "job.succeeded", "event_id": "e"}), "message.data.job_id", "a non-empty string"),
        (CE, _data({"type": "job.succeeded", "job_id": 5, "event_id": "e"}), "message.data.job_id", "a string"),
        (CE, {"message": {"data": "e30=", "attributes": ["x"]}}, "message.attributes", "a JSON object"),
    ],
)
def test_bad_shapes_name_the_field_what_was_expected_and_what_arrived(attributes, data, field, expected):
    with pytest.raises(EventParseError) as caught:
        parse_completion_event(attributes, data)
    assert (caught.value.field, caught.value.expected) == (field, expected)
    assert caught.value.code == "E_EVENT_PARSE"
