"""The jobs API on the real Firestore emulator, and the CLI through its real entry point.

* ``JobsApi`` + ``FirestoreJobStore``: filters, paging with real page tokens, forged tokens,
  cancel of a queued job (transaction + outbox on the emulator).
* ``sftpilot jobs ...`` as a subprocess against the real ``jobs_api`` app served over HTTP
  with the Firestore emulator behind it.
* ``sftpilot events tail`` as a subprocess: receives an event published by the real Pub/Sub
  adapter, then deletes its temporary subscription.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest
from google.cloud import pubsub_v1
from werkzeug.serving import make_server

import shared.wiring as wiring
from shared.adapters.fakes import FakeTuningBackend
from shared.adapters.firestore import FirestoreJobStore
from shared.adapters.pubsub import PubSubPublisher
from shared.events import EventType, build_event
from shared.jobs_api import Authenticator, JobsApi
from shared.records import DatasetRef, new_record, utcnow
from shared.settings import Settings
from shared.states import JobStatus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SFTPILOT = [str(Path(sys.executable).with_name("sftpilot"))]
"""The installed console script (the real entry point users run)."""
TOKEN = "integration-token"


@pytest.fixture
def store(emulators, firestore_collections) -> FirestoreJobStore:
    jobs, effects = firestore_collections
    return FirestoreJobStore(project=emulators.project, jobs_collection=jobs, effects_collection=effects)


def _seed(store: FirestoreJobStore, count: int, lineage: str, status: JobStatus) -> list[str]:
    ids = []
    base = utcnow() - timedelta(hours=1)
    for i in range(count):
        created = base + timedelta(seconds=i)
        record = new_record(DatasetRef("bkt", f"datasets/{lineage}/v{i}.jsonl", 100 + i, lineage), created)
        record = record.transition(status, created)
        assert store.create(record)
        ids.append(record.id)
    return ids


def test_api_lists_pages_filters_and_cancels_on_firestore(store):
    queued = _seed(store, 5, "faq", JobStatus.QUEUED)
    _seed(store, 2, "other", JobStatus.REJECTED)
    tuning = FakeTuningBackend()
    api = JobsApi(jobs=store, tuning=lambda: tuning, clock=utcnow, auth=Authenticator(static_token=TOKEN))
    auth = f"Bearer {TOKEN}"

    seen, token = [], None
    while True:
        params = {"lineage": "faq", "state": "QUEUED", "limit": "2", **({"page_token": token} if token else {})}
        page = api.handle("GET", "/jobs", params, auth)
        assert page.status == 200, page.body
        seen += [job["id"] for job in page.body["jobs"]]
        token = page.body["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(queued)), "newest first, every record once"

    forged = api.handle("GET", "/jobs", {"page_token": "bm90LWEtdG9rZW4"}, auth)
    assert forged.status == 400 and forged.body["error"]["details"]["parameter"] == "page_token"

    cancelled = api.handle("POST", f"/jobs/{queued[0]}:cancel", {}, auth)
    assert cancelled.status == 200 and cancelled.body["job"]["status"] == "CANCELLED"
    record = store.get(queued[0])
    assert record is not None and record.cancel_request is not None
    assert [entry.event_type for entry in record.outbox] == ["job.cancelled"]
    again = api.handle("POST", f"/jobs/{queued[0]}:cancel", {}, auth)
    assert again.status == 409


@pytest.fixture
def served_api(emulators, store, monkeypatch):
    services = wiring.Services(
        settings=Settings.from_env(
            {"GOOGLE_CLOUD_PROJECT": emulators.project, "SFTPILOT_BUCKET": "bkt", "SFTPILOT_API_TOKEN": TOKEN}
        )
    )
    services.__dict__["jobs"] = store
    services.__dict__["tuning"] = FakeTuningBackend()
    wiring.install_services(services)
    app = functions_framework.create_app("jobs_api", str(ROOT / "functions/jobs_api.py"), "http")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SFTPILOT, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_cli_lists_and_shows_through_the_real_entry_point(store, served_api):
    [job_id] = _seed(store, 1, "faq", JobStatus.QUEUED)
    env = {**os.environ, "SFTPILOT_API_URL": served_api, "SFTPILOT_API_TOKEN": TOKEN}
    listed = _cli("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["id"] == job_id and row["status"] == "QUEUED" and row["dataset"].endswith("v0.jsonl#100")
    shown = _cli("jobs", "show", job_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"Job {job_id}  QUEUED" in shown.stdout and "History:" in shown.stdout
    missing = _cli("jobs", "show", "f" * 32, env=env)
    assert missing.returncode == 1 and "E_RECORD_NOT_FOUND" in missing.stderr


def test_events_tail_prints_a_real_event_and_deletes_its_subscription(emulators, pubsub_topic):
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "SFTPILOT_EVENTS_TOPIC": pubsub_topic.topic_path,
        "PUBSUB_EMULATOR_HOST": emulators.pubsub_host,
    }
    tail = subprocess.Popen(
        [*SFTPILOT, "events", "tail", "--type", "job.succeeded", "--max-events", "1", "--timeout", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert tail.stderr is not None
        first = tail.stderr.readline()
        assert first.startswith("tailing "), first
        subscription = first.split(" via ")[1].split()[0]
        publisher = PubSubPublisher(pubsub_topic.topic_path)
        try:
            # A type the filter excludes first (the emulator ignores filters: the CLI must not print it).
            publisher.publish(build_event(EventType.JOB_FAILED, job_id="j0", lineage="faq", state="FAILED", data={}))
            publisher.publish(
                build_event(EventType.JOB_SUCCEEDED, job_id="j1", lineage="faq", state="SUCCEEDED", data={"x": 1})
            )
        finally:
            publisher.close()
        out, err = tail.communicate(timeout=90)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    [line] = out.strip().splitlines()
    event = json.loads(line)
    assert event["attributes"]["type"] == "job.succeeded" and event["data"]["job_id"] == "j1"
    assert f"deleted {subscription}" in err
    remaining = pubsub_v1.PublisherClient().list_topic_subscriptions(request={"topic": pubsub_topic.topic_path})
    assert subscription not in list(remaining)


def test_upload_validates_first_and_puts_config_and_validation_set_before_the_dataset(
    emulators, gcs_bucket, tmp_path, monkeypatch
):
    from click.testing import CliRunner
    from google.cloud import storage

    from shared.cli.main import main

    monkeypatch.setenv("SFTPILOT_BUCKET", gcs_bucket)
    bot = ROOT / "examples" / "datasets" / "support-bot"
    broken = ROOT / "examples" / "datasets" / "broken-faq" / "faq.jsonl"
    bucket = storage.Client(project=emulators.project).bucket(gcs_bucket)

    refused = CliRunner().invoke(main, ["upload", str(broken), "--lineage", "faq"])
    assert refused.exit_code == 1 and "not uploaded" in refused.output
    assert list(bucket.list_blobs()) == [], "bad data never reaches the bucket without --force"

    done = CliRunner().invoke(
        main,
        [
            "upload",
            str(bot / "v1.jsonl"),
            "--lineage",
            "support-bot",
            "--validation",
            str(bot / "v1.validation.jsonl"),
            "--config",
            str(bot / "tuning.yaml"),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.output[done.output.index("{") :])
    blobs = {b.name: b for b in bucket.list_blobs()}
    assert set(blobs) == {
        "datasets/support-bot/tuning.yaml",
        "datasets/support-bot/v1.validation.jsonl",
        "datasets/support-bot/v1.jsonl",
    }
    training = blobs["datasets/support-bot/v1.jsonl"]
    assert result["uri"] == f"gs://{gcs_bucket}/datasets/support-bot/v1.jsonl#{training.generation}"
    assert all(blob.generation < training.generation for blob in blobs.values() if blob is not training)

    traversal = CliRunner().invoke(main, ["upload", str(bot / "v1.jsonl"), "--lineage", "../reports"])
    assert traversal.exit_code == 2 and "lineage" in traversal.output


def test_events_dead_letters_shows_and_replays_to_the_original_topic(emulators, pubsub_topic):
    """A message dead-lettered from a subscription of the events topic is shown, then replayed."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    project = emulators.project
    dead_topic = publisher.topic_path(project, f"dead-{pubsub_topic.topic_path.rsplit('/', 1)[1]}")
    publisher.create_topic(request={"name": dead_topic})
    hold = subscriber.subscription_path(project, dead_topic.rsplit("/", 1)[1] + "-hold")
    subscriber.create_subscription(request={"name": hold, "topic": dead_topic})
    source = subscriber.subscription_path(project, dead_topic.rsplit("/", 1)[1] + "-completion")
    subscriber.create_subscription(request={"name": source, "topic": pubsub_topic.topic_path})
    event = build_event(EventType.JOB_SUCCEEDED, job_id="j9", lineage="faq", state="SUCCEEDED", data={})
    # What Pub/Sub forwards after max delivery attempts: the message plus its bookkeeping attributes.
    publisher.publish(
        dead_topic,
        json.dumps(event.data).encode(),
        **event.attributes,
        CloudPubSubDeadLetterSourceSubscription=source,
        CloudPubSubDeadLetterSourceDeliveryCount="10",
    ).result(timeout=30)
    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": project, "PUBSUB_EMULATOR_HOST": emulators.pubsub_host}
    shown = _cli("events", "dead-letters", "--subscription", hold, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.strip().splitlines()
    assert json.loads(line)["source"] == source and json.loads(line)["data"]["job_id"] == "j9"
    replayed = _cli("events", "dead-letters", "--subscription", hold, "--replay", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 of 1" in replayed.stderr
    back = subscriber.pull(request={"subscription": source, "max_messages": 10}, timeout=30)
    [message] = back.received_messages
    assert json.loads(message.message.data)["job_id"] == "j9"
    assert "CloudPubSubDeadLetterSourceSubscription" not in message.message.attributes
    assert message.message.attributes["type"] == "job.succeeded"
    empty = _cli("events", "dead-letters", "--subscription", hold, env=env)
    assert "showed 0 dead-lettered" in empty.stderr
