"""The upload trigger against the real emulators and the local Vertex-compatible tuning server.

Objects are uploaded to fake-gcs-server, turned into the CloudEvent the local bridge delivers
(:func:`deploy.local.bridge.notification_to_cloudevent`, the same shape Eventarc sends) and
POSTed to ``on_dataset_uploaded`` served in-process by functions-framework; records land in the
Firestore emulator, events on a Pub/Sub emulator topic, jobs on the tuning server (tiny Llama,
``--quota 1``). Jobs are counted on the server by their ``sftpilot-key`` label.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import functions_framework
import jsonschema
import pytest
from google.cloud import storage

import shared.wiring as wiring
from deploy.local.bridge import notification_to_cloudevent
from deploy.local.stack import LocalStack
from deploy.local.testing import TopicHandle, pull
from deploy.local.tuning_server.testing import RunningTuningServer, start_tuning_server
from shared.adapters.firestore import FirestoreJobStore
from shared.adapters.gcs import GcsBlobStore
from shared.adapters.pubsub import PubSubPublisher
from shared.adapters.vertex import VertexTuningBackend
from shared.events import load_schema
from shared.intake import IntakeOutcomeKind, IntakeStep, handle_upload
from shared.ports import JobQuery
from shared.records import JobRecord, record_key, to_rfc3339, utcnow
from shared.settings import Settings
from shared.states import JobStatus
from shared.upload_event import parse_upload_event


class InstanceKilled(BaseException):
    """The instance dies: no ``except Exception`` in the code under test sees it."""


pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "us-central1"
DEPLOYMENT = "sftpilot-it"


def examples(n: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": f"What is {i} plus {i}?"}]},
                    {"role": "model", "parts": [{"text": f"{i} plus {i} is {2 * i}."}]},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


@pytest.fixture
def tuning_server(emulators: LocalStack, tmp_path: Path) -> Iterator[RunningTuningServer]:
    """A fresh server per test (starts in < 1 s) so the one-job quota starts empty."""
    server = start_tuning_server(
        tmp_path / "tuning-state",
        model_map={"gemini-2.5-flash": "tiny-llama"},
        project=emulators.project,
        location=LOCATION,
        quota=1,
    )
    yield server
    server.stop()


@dataclass
class Stack:
    emulators: LocalStack
    settings: Settings
    topic: TopicHandle
    server: RunningTuningServer

    @property
    def blobs(self) -> GcsBlobStore:
        return GcsBlobStore(project=self.settings.project)

    @property
    def jobs(self) -> FirestoreJobStore:
        return FirestoreJobStore(
            project=self.settings.project,
            jobs_collection=self.settings.jobs_collection,
            effects_collection=self.settings.effects_collection,
        )

    @property
    def tuning(self) -> VertexTuningBackend:
        return VertexTuningBackend(self.settings.project, LOCATION, base_url=self.server.url)

    def upload(self, name: str, data: bytes) -> dict:
        """Upload an object and return the CloudEvent (structured mode) the bridge would deliver."""
        blob = storage.Client(project=self.settings.project).bucket(self.settings.bucket).blob(name)
        blob.upload_from_string(data, content_type="application/jsonl")
        blob.reload()
        resource = dict(blob._properties)
        attributes = {
            "eventType": "OBJECT_FINALIZE",
            "bucketId": self.settings.bucket,
            "objectId": name,
            "objectGeneration": str(blob.generation),
            "eventTime": to_rfc3339(utcnow()) or "",
        }
        request = notification_to_cloudevent(f"msg-{blob.generation}", attributes, json.dumps(resource).encode())
        assert request is not None
        event = {k[len("ce-") :]: v for k, v in request.headers.items() if k.startswith("ce-")}
        return {**event, "datacontenttype": "application/json", "data": request.data}

    def client(self):
        app = functions_framework.create_app("on_dataset_uploaded", str(ROOT / "functions/intake.py"), "cloudevent")
        return app.test_client()

    def post(self, event: dict, client=None) -> int:
        client = client or self.client()
        response = client.post("/", data=json.dumps(event), content_type="application/cloudevents+json")
        return response.status_code

    def record(self, event: dict) -> JobRecord | None:
        data = event["data"]
        return self.jobs.get(record_key(data["bucket"], data["name"], data["generation"]))

    def records(self) -> list[JobRecord]:
        return self.jobs.query(JobQuery(limit=500)).records

    def jobs_for(self, record_id: str) -> list:
        return list(self.tuning.list_jobs(labels={"sftpilot-key": record_id}))

    def all_jobs(self) -> list:
        return list(self.tuning.list_jobs())

    def messages(self) -> list[dict]:
        return pull(self.emulators, self.topic.subscription_path)

    def handle(self, event: dict, **kwargs):
        """Call the domain directly with the real adapters (for crash injection)."""
        upload = parse_upload_event({k: v for k, v in event.items() if k != "data"}, event["data"])
        return handle_upload(
            upload,
            blobs=self.blobs,
            jobs=self.jobs,
            publisher=PubSubPublisher(topic_path=self.settings.events_topic_path),
            tuning=self.tuning,
            settings=self.settings,
            **kwargs,
        )


@pytest.fixture
def stack(
    emulators: LocalStack,
    gcs_bucket: str,
    pubsub_topic: TopicHandle,
    firestore_collections: tuple[str, str],
    tuning_server: RunningTuningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    jobs_collection, effects_collection = firestore_collections
    env = {
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "SFTPILOT_BUCKET": gcs_bucket,
        "SFTPILOT_EVENTS_TOPIC": pubsub_topic.topic_path,
        "SFTPILOT_JOBS_COLLECTION": jobs_collection,
        "SFTPILOT_EFFECTS_COLLECTION": effects_collection,
        "SFTPILOT_TUNING_BASE_URL": tuning_server.url,
        "SFTPILOT_TUNING_LOCATION": LOCATION,
        "SFTPILOT_DEPLOYMENT": DEPLOYMENT,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wiring.reset_services_cache()
    yield Stack(emulators, Settings.from_env(env), pubsub_topic, tuning_server)
    wiring.reset_services_cache()


def test_upload_creates_a_record_a_report_and_one_labelled_job(stack: Stack):
    event = stack.upload("datasets/math/v1.jsonl", examples(20))
    assert stack.post(event) == 200

    record = stack.record(event)
    assert record is not None
    assert record.status in {JobStatus.PENDING, JobStatus.RUNNING}
    [job] = stack.jobs_for(record.id)
    assert job.name == record.tuning_job
    assert job.labels["sftpilot-lineage"] == "math" and job.labels["managed-by"] == DEPLOYMENT
    report = json.loads(
        stack.blobs.read_bytes(stack.settings.bucket, f"reports/math/v1/{event['data']['generation']}/validation.json")
    )
    assert report["valid"] is True and report["training"]["stats"]["examples"] == 20
    assert record.validation.report_uri.endswith("/validation.json")

    # the report object is written under reports/: its own event is ignored
    report_event = stack.upload(f"reports/math/v1/{event['data']['generation']}/copy.json", json.dumps(report).encode())
    assert stack.post(report_event) == 200
    assert len(stack.records()) == 1 and len(stack.all_jobs()) == 1


def test_hundred_concurrent_deliveries_make_one_record_and_one_job(stack: Stack):
    event = stack.upload("datasets/math/v1.jsonl", examples(50))
    statuses: list[int] = []
    lock = threading.Lock()
    app_client = stack.client()  # create_app is not thread-safe; one app, requests in parallel
    start = threading.Barrier(100, timeout=60)

    def deliver() -> None:
        start.wait()
        code = stack.post(event, app_client)
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=deliver) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert len(statuses) == 100 and set(statuses) <= {200, 500}
    assert 200 in statuses
    [record] = stack.records()
    assert len(stack.jobs_for(record.id)) == 1
    assert len(stack.all_jobs()) == 1
    # the redeliveries the platform makes for the 500s change nothing
    assert stack.post(event) == 200
    assert len(stack.all_jobs()) == 1 and stack.record(event).tuning_job == stack.all_jobs()[0].name


def test_crash_after_create_before_record_update_still_yields_one_job(stack: Stack):
    event = stack.upload("datasets/math/v1.jsonl", examples(20))

    def crash(step: IntakeStep) -> None:
        if step is IntakeStep.JOB_CREATED:
            raise InstanceKilled("instance killed after tunings.tune returned")

    with pytest.raises(InstanceKilled):
        stack.handle(event, after_step=crash)
    orphan = stack.record(event)
    assert orphan.status is JobStatus.SUBMITTING and orphan.tuning_job is None
    assert len(stack.jobs_for(orphan.id)) == 1

    later = lambda: utcnow() + timedelta(seconds=stack.settings.lease_seconds + 1)  # noqa: E731
    outcome = stack.handle(event, clock=later)
    assert outcome.kind is IntakeOutcomeKind.SUBMITTED
    [job] = stack.jobs_for(orphan.id)
    assert stack.record(event).tuning_job == job.name
    assert len(stack.all_jobs()) == 1


def test_invalid_dataset_is_rejected_reported_and_announced_without_a_job(stack: Stack):
    bad = examples(20) + b'{"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]}\n'
    event = stack.upload("datasets/math/broken.jsonl", bad)
    assert stack.post(event) == 200

    record = stack.record(event)
    assert record.status is JobStatus.REJECTED
    report_name = f"reports/math/broken/{event['data']['generation']}/validation.json"
    report = json.loads(stack.blobs.read_bytes(stack.settings.bucket, report_name))
    assert report["valid"] is False
    [message] = stack.messages()
    body = json.loads(message["data"])
    jsonschema.Draft202012Validator(load_schema("dataset.rejected")).validate(body)
    assert message["attributes"]["type"] == "dataset.rejected" and message["attributes"]["job_id"] == record.id
    assert body["report_uri"] == f"gs://{stack.settings.bucket}/{report_name}"
    assert body["errors"][0]["line"] == 21
    assert stack.all_jobs() == []
    assert not stack.record(event).has_pending_outbox


def test_quota_full_queues_the_second_upload(stack: Stack):
    first = stack.upload("datasets/math/v1.jsonl", examples(20))
    second = stack.upload("datasets/math/v2.jsonl", examples(24))
    assert stack.post(first) == 200
    assert stack.post(second) == 200

    assert stack.record(first).tuning_job is not None
    queued = stack.record(second)
    assert queued.status is JobStatus.QUEUED and queued.tuning_job is None and queued.lease is None
    assert len(stack.all_jobs()) == 1
    assert stack.messages() == []
