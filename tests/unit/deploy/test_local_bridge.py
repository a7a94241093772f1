"""The bridge turns a fake-gcs-server notification into the CloudEvent Eventarc would deliver."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.local.bridge import notification_to_cloudevent

EVENTS = Path(__file__).parents[2] / "events"


def _notification():
    return json.loads((EVENTS / "gcs_notification_finalize_fake_gcs.json").read_text())


def test_finalize_notification_becomes_an_eventarc_finalized_cloudevent():
    note = _notification()

    request = notification_to_cloudevent(note["message_id"], note["attributes"], json.dumps(note["data"]).encode())

    bucket, name = note["data"]["bucket"], note["data"]["name"]
    generation = note["attributes"]["objectGeneration"]
    assert request.headers["ce-specversion"] == "1.0"
    assert request.headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert request.headers["ce-source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    assert request.headers["ce-subject"] == f"objects/{name}"
    assert request.headers["ce-id"] == note["message_id"]
    assert request.headers["ce-time"] == note["data"]["updated"]
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.data["generation"] == generation
    assert request.data["size"] == note["data"]["size"]
    assert request.data["metageneration"] == "1"
    assert request.data["id"] == f"{bucket}/{name}/{generation}"
    assert json.loads(request.body) == request.data


def test_numeric_generation_and_size_are_sent_as_strings_like_the_json_api():
    request = notification_to_cloudevent(
        "9",
        {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "datasets/x/a.jsonl"},
        b'{"name": "datasets/x/a.jsonl", "bucket": "b", "generation": 17, "size": 3}',
    )

    assert request.data["generation"] == "17"
    assert request.data["size"] == "3"


def test_generation_falls_back_to_the_notification_attribute():
    request = notification_to_cloudevent(
        "9",
        {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "o.jsonl", "objectGeneration": "5"},
        b"{}",
    )

    assert request.data == {
        "bucket": "b",
        "name": "o.jsonl",
        "generation": "5",
        "metageneration": "1",
        "id": "b/o.jsonl/5",
    }


def test_unknown_notification_kinds_are_not_forwarded():
    assert notification_to_cloudevent("1", {"eventType": "SOMETHING_ELSE"}, b"{}") is None
