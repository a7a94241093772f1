"""The local stack delivers events to functions exactly as GCP does (real emulators, real processes).

Uses a test-only functions source (recorder_functions.py) served by functions-framework with
the same four target names as functions/main.py, so what is asserted here is the wiring: the
GCS notification bridge (Eventarc), the push subscription (Pub/Sub trigger, retries, dead
letters), the scheduler loop and the environment the functions and users get.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from deploy.local.processes import pid_matches
from deploy.local.stack import FunctionTargets, LocalStack, StackComponents
from deploy.local.testing import pull
from shared.events import EventType, build_event, encode_body

pytestmark = pytest.mark.integration

RECORDER = Path(__file__).with_name("recorder_functions.py")


@pytest.fixture(scope="module")
def recorder_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recorded")


@pytest.fixture(scope="module")
def wired(tmp_path_factory, recorder_dir):
    """Emulators + the four (recording) functions + bridge + push subscription + scheduler."""
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"),
        project="wiring-test",
        components=StackComponents.EMULATORS | StackComponents.FUNCTIONS,
        functions=FunctionTargets(source=RECORDER),
        function_env={"RECORDER_DIR": str(recorder_dir)},
        poll_interval=1.0,
        retry_backoff=(0.5, 1.0),
    )
    with stack:
        saved = dict(os.environ)
        os.environ.update(stack.env())
        try:
            yield stack
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _recorded(recorder_dir: Path, target: str) -> list[dict]:
    path = recorder_dir / f"{target}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_upload_reaches_the_upload_function_as_an_eventarc_cloudevent(wired, recorder_dir):
    from google.cloud import storage

    blob = storage.Client().bucket(wired.bucket).blob("datasets/faq/v1.jsonl")
    blob.upload_from_string(b'{"contents": []}\n', content_type="application/jsonl")

    deliveries = _wait_until(
        lambda: [d for d in _recorded(recorder_dir, "on_dataset_uploaded") if d["data"]["name"] == blob.name]
    )

    assert len(deliveries) == 1
    attributes, data = deliveries[0]["attributes"], deliveries[0]["data"]
    assert attributes["specversion"] == "1.0"
    assert attributes["type"] == "google.cloud.storage.object.v1.finalized"
    assert attributes["source"] == f"//storage.googleapis.com/projects/_/buckets/{wired.bucket}"
    assert attributes["subject"] == "objects/datasets/faq/v1.jsonl"
    assert attributes["id"]
    assert attributes["time"].startswith("20")
    assert data["bucket"] == wired.bucket
    assert data["name"] == "datasets/faq/v1.jsonl"
    assert data["generation"] == str(blob.generation)
    assert data["size"] == "17"
    assert data["contentType"] == "application/jsonl"


def test_a_failed_upload_delivery_is_redelivered_with_the_same_event_id(wired, recorder_dir):
    from google.cloud import storage

    blob = storage.Client().bucket(wired.bucket).blob("datasets/faq/fail-once.jsonl")
    blob.upload_from_string(b"{}\n")

    def two_deliveries():
        got = [d for d in _recorded(recorder_dir, "on_dataset_uploaded") if d["data"]["name"] == blob.name]
        return got if len(got) >= 2 else None

    deliveries = _wait_until(two_deliveries)

    assert deliveries, "the failed delivery was not retried"
    first, second = deliveries[:2]
    assert first["attributes"]["id"] == second["attributes"]["id"]
    assert first["data"]["generation"] == second["data"]["generation"] == str(blob.generation)


def test_events_topic_messages_reach_the_completion_function_as_message_published(wired, recorder_dir):
    from shared.adapters.pubsub import PubSubPublisher

    event = build_event(EventType.JOB_SUCCEEDED, job_id="k-wiring", lineage="faq", state="SUCCEEDED", data={"x": 1})
    publisher = PubSubPublisher(wired.events_topic_path)
    try:
        message_id = publisher.publish(event)
    finally:
        publisher.close()

    deliveries = _wait_until(
        lambda: [d for d in _recorded(recorder_dir, "on_tuning_completed") if d["key"] == message_id]
    )

    assert len(deliveries) == 1
    got = deliveries[0]
    assert got["attributes"]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert got["attributes"]["source"] == f"//pubsub.googleapis.com/{wired.events_topic_path}"
    assert got["message_attributes"] == event.attributes
    assert got["message_data"] == encode_body(event).decode()


def test_a_completion_event_that_keeps_failing_ends_in_the_dead_letter_topic(wired, recorder_dir):
    from shared.adapters.pubsub import PubSubPublisher

    event = build_event(EventType.JOB_FAILED, job_id="k-poison", lineage="faq", state="FAILED", data={})
    poisoned = type(event)(
        event.event_id, event.event_type, event.data, {**event.attributes, "fail": "always"}, event.ordering_key
    )
    publisher = PubSubPublisher(wired.events_topic_path)
    try:
        message_id = publisher.publish(poisoned)
    finally:
        publisher.close()

    dead = _wait_until(
        lambda: [
            m
            for m in pull(wired, wired.subscription_path("sftpilot-dead-letters-keep"))
            if m["attributes"].get("job_id") == "k-poison"
        ],
        timeout=60,
    )

    assert dead, "the poisoned event never reached the dead-letter topic"
    assert dead[0]["data"] == encode_body(poisoned)
    attempts = [d for d in _recorded(recorder_dir, "on_tuning_completed") if d["key"] == message_id]
    assert len(attempts) == 5


def test_the_scheduler_posts_to_the_poll_function_like_cloud_scheduler(wired, recorder_dir):
    polls = _wait_until(lambda: (p := _recorded(recorder_dir, "poll_tuning_jobs")) and len(p) >= 2 and p)

    assert polls, "the poll function was not called twice"
    assert polls[0]["method"] == "POST"
    assert polls[0]["headers"]["X-Cloudscheduler"] == "true"
    assert polls[0]["headers"]["User-Agent"] == "Google-Cloud-Scheduler"


def test_functions_and_users_get_the_same_stack_environment(wired, recorder_dir):
    env = wired.env()
    for key in (
        "GOOGLE_CLOUD_PROJECT",
        "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "FIRESTORE_EMULATOR_HOST",
        "SFTPILOT_BUCKET",
        "SFTPILOT_EVENTS_TOPIC",
        "SFTPILOT_API_URL",
        "SFTPILOT_API_TOKEN",
    ):
        assert env[key], key
    assert env["SFTPILOT_EVENTS_TOPIC"] == f"projects/{env['GOOGLE_CLOUD_PROJECT']}/topics/sftpilot-events"

    polls = _wait_until(lambda: _recorded(recorder_dir, "poll_tuning_jobs"))
    function_env = polls[0]["env"]
    for key in ("GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "SFTPILOT_BUCKET"):
        assert function_env[key] == env[key]
    assert function_env["SFTPILOT_API_TOKEN"] == env["SFTPILOT_API_TOKEN"]

    api = env["SFTPILOT_API_URL"]
    authorized = requests.get(f"{api}/jobs", headers={"Authorization": f"Bearer {env['SFTPILOT_API_TOKEN']}"})
    anonymous = requests.get(f"{api}/jobs")
    assert authorized.status_code == 200
    assert anonymous.status_code == 401


def test_stop_leaves_no_process_behind(tmp_path):
    stack = LocalStack(
        tmp_path,
        project="stop-test",
        components=StackComponents.EMULATORS | StackComponents.FUNCTIONS,
        functions=FunctionTargets(source=RECORDER, poll=None, completion=None, upload=None),
        function_env={"RECORDER_DIR": str(tmp_path)},
    )
    stack.start()
    started = [(row.name, row.pid) for row in stack.status()]
    records = {p.stem: p.read_text().split() for p in (tmp_path / "pids").glob("*.pid")}
    assert {name for name, _ in started} == {"pubsub", "firestore", "gcs", "fn-api"}
    assert (tmp_path / "stack.json").exists()

    stack.stop()

    for name, pid in started:
        pid_text, start_time = records[name]
        assert int(pid_text) == pid
        assert not pid_matches(pid, start_time), f"{name} (pid {pid}) survived stop()"
    assert not list((tmp_path / "pids").glob("*.pid"))
    assert not (tmp_path / "stack.json").exists()


def test_reset_firestore_deletes_every_document(wired):
    from google.cloud import firestore

    client = firestore.Client(project=wired.project)
    client.collection("jobs").document("a").set({"x": 1})
    client.collection("effects").document("b").set({"y": 2})

    wired.reset_firestore()

    assert not client.collection("jobs").document("a").get().exists
    assert not client.collection("effects").document("b").get().exists


def test_a_cjk_and_emoji_upload_is_delivered_and_a_killed_bridge_comes_back(wired, recorder_dir):
    import signal

    from google.cloud import storage

    bucket = storage.Client().bucket(wired.bucket)

    def delivered(name: str) -> list[dict]:
        return [d for d in _recorded(recorder_dir, "on_dataset_uploaded") if d["data"]["name"] == name]

    first = "datasets/faq/サポート-😀.jsonl"
    bucket.blob(first).upload_from_string(b"{}\n")
    assert _wait_until(lambda: delivered(first)), "a non-Latin-1 object name never reached the upload function"

    bridge = wired._processes["bridge"]
    os.kill(bridge.pid, signal.SIGKILL)
    assert _wait_until(lambda: not bridge.alive(), timeout=10)
    messages = wired.supervise()
    assert len(messages) == 1 and messages[0].startswith("bridge exited with code")
    assert bridge.alive()

    second = "datasets/faq/再起動.jsonl"
    bucket.blob(second).upload_from_string(b"{}\n")
    # The bridge pulls synchronously, so nothing is leased to the killed process's stream: the
    # restarted bridge gets the next message at once (with a streaming pull it took ~3 min here).
    assert _wait_until(lambda: delivered(second), timeout=120), "the restarted bridge delivers nothing"


def test_a_dead_emulator_stops_the_stack_with_its_reason(tmp_path):
    import signal

    from deploy.local.processes import ComponentDiedError

    with LocalStack(tmp_path / "s", project="died-test", components=StackComponents.EMULATORS) as stack:
        pubsub = stack._processes["pubsub"]
        os.kill(pubsub.pid, signal.SIGKILL)
        assert _wait_until(lambda: not pubsub.alive(), timeout=10)
        with pytest.raises(ComponentDiedError) as caught:
            stack.supervise()
    assert caught.value.component == "pubsub"
    assert "cannot be restarted" in str(caught.value)


def test_a_corrupt_notification_is_dead_lettered_and_the_bridge_keeps_delivering(wired, recorder_dir):
    from google.cloud import pubsub_v1, storage

    publisher = pubsub_v1.PublisherClient()
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": wired.bucket, "objectId": "datasets/faq/corrupt.jsonl"}
    publisher.publish(wired.notifications_topic_path, b"{corrupt", **attributes).result(timeout=30)

    dead = _wait_until(
        lambda: [
            m
            for m in pull(wired, wired.subscription_path("sftpilot-dead-letters-keep"))
            if m["attributes"].get("objectId") == "datasets/faq/corrupt.jsonl"
        ],
        timeout=60,
    )
    assert dead, "the corrupt notification never reached the dead-letter topic"
    assert dead[0]["data"] == b"{corrupt"
    assert "JSONDecodeError" in dead[0]["attributes"]["bridge_error"]
    assert wired._processes["bridge"].alive()

    after = "datasets/faq/after-corrupt.jsonl"
    storage.Client().bucket(wired.bucket).blob(after).upload_from_string(b"{}\n")
    assert _wait_until(
        lambda: [d for d in _recorded(recorder_dir, "on_dataset_uploaded") if d["data"]["name"] == after], timeout=60
    )
