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


# --- names outside Latin-1, bad messages (issue 14) -------------------------------------------


def test_a_cjk_and_emoji_name_is_percent_encoded_in_headers_and_exact_in_the_data():
    from urllib.parse import unquote

    name = "datasets/faq/サポート 😀%.jsonl"
    request = notification_to_cloudevent(
        "3", {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": name}, json.dumps({"generation": 1}).encode()
    )

    subject = request.headers["ce-subject"]
    subject.encode("ascii")  # every header value is plain ASCII, so any HTTP client can send it
    assert " " not in subject and '"' not in subject
    assert unquote(subject) == f"objects/{name}"  # the binding's decoding gives the name back
    assert request.data["name"] == name


def test_header_encoding_keeps_printable_ascii_and_escapes_space_quote_and_percent():
    from deploy.local.bridge import encode_header_value

    assert encode_header_value("a-b_c/d.e~!") == "a-b_c/d.e~!"
    assert encode_header_value('a "b" 5%') == "a%20%22b%22%205%25"
    assert encode_header_value("é") == "%C3%A9"


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class _Session:
    def __init__(self, status_code: int = 204) -> None:
        self.status_code = status_code
        self.sent: list[dict[str, str]] = []

    def post(self, url, data, headers, timeout):
        for value in headers.values():
            value.encode("latin-1")  # what http.client does: a non-Latin-1 header raises here
        self.sent.append(headers)
        return _Response(self.status_code)


def _bridge(session, parked):
    from deploy.local.bridge import NotificationBridge

    bridge = NotificationBridge(
        "projects/p/subscriptions/s",
        "http://127.0.0.1:1/",
        dead_letter=lambda message_id, attributes, data, reason: parked.append((message_id, reason)),
    )
    bridge._session = session
    return bridge


def test_a_corrupt_message_is_dead_lettered_and_acked_and_the_next_one_is_delivered():
    parked: list[tuple[str, str]] = []
    session = _Session()
    bridge = _bridge(session, parked)
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "datasets/x/絵.jsonl"}

    assert bridge.deliver("1", attributes, b"{not json") is True
    assert bridge.deliver("2", attributes, b"[1, 2]") is True
    assert bridge.deliver("3", attributes, b'{"generation": 4}') is True

    assert [message_id for message_id, _ in parked] == ["1", "2"]
    assert "JSONDecodeError" in parked[0][1]
    assert len(session.sent) == 1 and session.sent[0]["ce-subject"] == "objects/datasets/x/%E7%B5%B5.jsonl"
    assert bridge.dead_lettered == 2 and bridge.delivered == 1


def test_a_failing_dead_letter_sink_leaves_the_message_for_redelivery():
    from deploy.local.bridge import NotificationBridge

    def broken_sink(*_args):
        raise RuntimeError("pubsub down")

    bridge = NotificationBridge("projects/p/subscriptions/s", "http://127.0.0.1:1/", dead_letter=broken_sink)

    assert bridge.deliver("1", {"eventType": "OBJECT_FINALIZE"}, b"{oops") is False


def test_a_non_2xx_answer_is_nacked_not_dead_lettered():
    parked: list[tuple[str, str]] = []
    bridge = _bridge(_Session(status_code=500), parked)

    ok = bridge.deliver("1", {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "o.jsonl"}, b"{}")

    assert ok is False and parked == [] and bridge.failed == 1
