"""The poller against real emulators (Firestore, Pub/Sub, fake-gcs-server) and the local tuning server.

Jobs are created through the real submission path (``submit_tuning_job`` -> google-genai ->
the local Vertex-compatible server, training the tiny Llama) and announced on a real topic;
every pulled message is checked against its JSON Schema. The two-poller race uses the fake
tuning backend (only Firestore and Pub/Sub matter there, and the emulator's lock timeouts
would make a slow backend pointless).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jsonschema
import pytest
from google.cloud import storage

from deploy.local.stack import LocalStack
from deploy.local.testing import TopicHandle, pull
from deploy.local.tuning_server.testing import RunningTuningServer, start_tuning_server
from shared.adapters.fakes import FakeTuningBackend
from shared.adapters.firestore import FirestoreJobStore
from shared.adapters.pubsub import PubSubPublisher
from shared.adapters.vertex import VertexTuningBackend
from shared.events import load_schema
from shared.jobs_service import cancel_job
from shared.poller import PollOptions, PollStep, run_poll
from shared.ports import TuningBackend, TuningJobSpec
from shared.records import DatasetRef, JobRecord, new_record, utcnow
from shared.states import JobStatus, TuningState
from shared.submission import submit_tuning_job
from shared.tuning_view import tuning_view

pytestmark = pytest.mark.integration

LOCATION = "us-central1"
GOOD_LINES = [
    {
        "contents": [
            {"role": "user", "parts": [{"text": f"What is {i} plus {i}?"}]},
            {"role": "model", "parts": [{"text": f"{i} plus {i} is {2 * i}. — Acme Math"}]},
        ]
    }
    for i in range(16)
]


@pytest.fixture(scope="module")
def tuning_server(emulators: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTuningServer]:
    """The local tuning server (tiny Llama for gemini-2.5-flash), reading datasets from fake-gcs-server."""
    state = tmp_path_factory.mktemp("poller-tuning") / "state"
    server = start_tuning_server(
        state, model_map={"gemini-2.5-flash": "tiny-llama"}, project=emulators.project, location=LOCATION, quota=8
    )
    yield server
    server.stop()


@dataclass
class Stack:
    emulators: LocalStack
    bucket: str
    topic: TopicHandle
    jobs: FirestoreJobStore
    publisher: PubSubPublisher
    tuning: TuningBackend

    def poll(self, owner: str = "poller-it", after_step: Callable[[PollStep, str], None] | None = None, **options):
        return run_poll(
            jobs=self.jobs,
            tuning=self.tuning,
            publisher=self.publisher,
            clock=utcnow,
            options=PollOptions(**{"concurrency": 8, **options}),
            owner=owner,
            after_step=after_step,
        )

    def upload(self, name: str, lines: list[object] | str) -> DatasetRef:
        body = lines if isinstance(lines, str) else "\n".join(json.dumps(line) for line in lines) + "\n"
        blob = storage.Client(project=self.emulators.project).bucket(self.bucket).blob(name)
        blob.upload_from_string(body, content_type="application/jsonl")
        blob.reload()
        return DatasetRef(self.bucket, name, int(blob.generation), name.split("/")[1])

    def submitted(self, ref: DatasetRef, **config: object) -> JobRecord:
        """A record taken through the real submission path (job created on the tuning server)."""
        record = new_record(ref, utcnow())
        record = record.with_changes(utcnow(), config={"base_model": "gemini-2.5-flash", "epochs": 1, **config})
        assert self.jobs.create(record)
        stored = submit_tuning_job(
            record.id, jobs=self.jobs, tuning=self.tuning, deployment="sftpilot-it", clock=utcnow, owner="intake-it"
        )
        assert stored.tuning_job, stored
        return stored

    def poll_until_terminal(self, job_id: str, timeout: float = 240.0) -> JobRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            summary = self.poll()
            assert not summary.errors, summary.to_dict()
            record = self.jobs.get(job_id)
            assert record is not None
            if record.status.is_terminal:
                return record
            time.sleep(1.0)
        pytest.fail(f"job {job_id} did not end within {timeout} s: {self.jobs.get(job_id)}")

    def messages(self, expected: int, timeout: float = 20.0) -> list[dict]:
        """Pull until ``expected`` messages arrived, then once more to catch any duplicate."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += pull(self.emulators, self.topic.subscription_path)
            if len(got) < expected:
                time.sleep(0.2)
        time.sleep(1.0)
        got += pull(self.emulators, self.topic.subscription_path)
        return got


@pytest.fixture
def stack(
    emulators: LocalStack,
    gcs_bucket: str,
    pubsub_topic: TopicHandle,
    firestore_collections: tuple[str, str],
    tuning_server: RunningTuningServer,
) -> Stack:
    jobs_collection, effects_collection = firestore_collections
    return Stack(
        emulators=emulators,
        bucket=gcs_bucket,
        topic=pubsub_topic,
        jobs=FirestoreJobStore(
            project=emulators.project, jobs_collection=jobs_collection, effects_collection=effects_collection
        ),
        publisher=PubSubPublisher(topic_path=pubsub_topic.topic_path),
        tuning=VertexTuningBackend(emulators.project, LOCATION, base_url=tuning_server.url),
    )


def _valid(message: dict) -> dict:
    """The decoded body, after checking it against its schema and the attributes against it."""
    body = json.loads(message["data"])
    jsonschema.Draft202012Validator(load_schema(message["attributes"]["type"])).validate(body)
    for name in ("type", "job_id", "lineage", "state", "schema_version"):
        assert message["attributes"][name] == body[name]
    return body


# --- with the local tuning server -----------------------------------------------------------------


def test_job_trains_to_succeeded_and_one_job_succeeded_is_published(stack: Stack):
    ref = stack.upload("datasets/math/v1.jsonl", GOOD_LINES)
    record = stack.submitted(ref)

    final = stack.poll_until_terminal(record.id)

    assert final.status is JobStatus.SUCCEEDED, final.error
    assert final.tuning is not None
    assert final.tuning.state == "JOB_STATE_SUCCEEDED"
    assert final.tuning.tuned_model and final.tuning.endpoint
    assert final.tuning.end_time is not None
    assert final.history[-1].status is JobStatus.SUCCEEDED
    assert not final.has_pending_outbox
    (message,) = stack.messages(1)
    body = _valid(message)
    assert (body["type"], body["event_id"]) == ("job.succeeded", f"{record.id}:SUCCEEDED")
    assert body["tuned_model"] == final.tuning.tuned_model
    assert body["tuning_job"] == record.tuning_job
    assert message["attributes"]["lineage"] == "math"

    assert stack.poll().to_dict()["published"] == 0
    assert stack.messages(0, timeout=0) == []


def test_cancelled_job_publishes_one_job_cancelled(stack: Stack):
    ref = stack.upload("datasets/math/cancel-me.jsonl", GOOD_LINES)
    record = stack.submitted(ref, epochs=50)  # long enough that the cancel lands first
    result = cancel_job(record.id, principal="ops@acme.test", jobs=stack.jobs, tuning=stack.tuning, clock=utcnow)
    assert result.called_backend and result.record.status is JobStatus.CANCELLING

    final = stack.poll_until_terminal(record.id)

    assert final.status is JobStatus.CANCELLED
    (message,) = stack.messages(1)
    body = _valid(message)
    assert (body["type"], body["event_id"], body["state"]) == ("job.cancelled", f"{record.id}:CANCELLED", "CANCELLED")


def test_failing_dataset_publishes_one_job_failed_with_the_error(stack: Stack):
    ref = stack.upload(
        "datasets/math/broken.jsonl", '{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}\nnot json\n'
    )
    record = stack.submitted(ref)

    final = stack.poll_until_terminal(record.id)

    assert final.status is JobStatus.FAILED
    assert final.error is not None and final.error.code == "E_TUNING_JOB_FAILED"
    assert final.tuning.error["message"] == final.error.message
    (message,) = stack.messages(1)
    body = _valid(message)
    assert (body["type"], body["event_id"]) == ("job.failed", f"{record.id}:FAILED")
    assert body["error"]["message"] == final.error.message
    assert "line 1" in body["error"]["message"]  # the server names the bad line


def test_crash_after_commit_before_publish_is_published_by_the_next_run_once(
    stack: Stack, tuning_server: RunningTuningServer
):
    ref = stack.upload("datasets/math/expire-me.jsonl", GOOD_LINES)
    record = stack.submitted(ref, epochs=50)
    tuning_server.control("/__jobstate", {"name": record.tuning_job, "state": "JOB_STATE_EXPIRED"})

    class Crash(BaseException):
        pass

    def crash_after_commit(step: PollStep, job_id: str) -> None:
        if step is PollStep.COMMITTED:
            raise Crash(job_id)

    with pytest.raises(Crash):
        stack.poll(owner="poller-dies", after_step=crash_after_commit)
    committed = stack.jobs.get(record.id)
    assert committed is not None and committed.status is JobStatus.EXPIRED and committed.has_pending_outbox
    assert stack.messages(0, timeout=0) == []

    assert stack.poll(owner="poller-next").published == 1
    assert stack.poll(owner="poller-after").published == 0
    (message,) = stack.messages(1)
    assert _valid(message)["event_id"] == f"{record.id}:EXPIRED"
    stored = stack.jobs.get(record.id)
    assert stored is not None and not stored.has_pending_outbox


# --- two pollers at once (fake tuning backend, real Firestore and Pub/Sub) ---------------------------


def test_two_concurrent_pollers_over_50_jobs_publish_one_event_each(stack: Stack):
    tuning = FakeTuningBackend(quota=100, latency_seconds=0.005)
    stack.tuning = tuning
    records = []
    for i in range(50):
        ref = DatasetRef(stack.bucket, f"datasets/race/d{i:02d}.jsonl", 1000 + i, "race")
        rec = new_record(ref, utcnow())
        job = tuning.create_job(
            TuningJobSpec("gemini-2.5-flash", ref.gcs_uri, f"d{i}", labels={"sftpilot-key": rec.id})
        )
        tuning.set_state(job.name, TuningState.RUNNING)
        rec = rec.transition(JobStatus.SUBMITTING, utcnow()).transition(
            JobStatus.PENDING, utcnow(), tuning_job=job.name
        )
        rec = rec.transition(JobStatus.RUNNING, utcnow(), tuning=tuning_view(tuning.get_job(job.name)))
        assert stack.jobs.create(rec)
        records.append(rec)
    tuning.complete_all(TuningState.SUCCEEDED)

    start = threading.Barrier(2)
    summaries = []

    def poller(owner: str) -> None:
        start.wait()
        summaries.append(stack.poll(owner=owner, concurrency=4))

    threads = [threading.Thread(target=poller, args=(f"poller-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert len(summaries) == 2
    leftovers = stack.poll(owner="poller-sweep")  # picks up anything a failed publish left behind
    messages = stack.messages(50)
    ids = [_valid(m)["event_id"] for m in messages]
    assert sorted(ids) == sorted(f"{r.id}:SUCCEEDED" for r in records)  # each once, none missing
    assert sum(s.changed for s in summaries) == 50
    assert sum(s.published for s in [*summaries, leftovers]) == 50
    for rec in records:
        stored = stack.jobs.get(rec.id)
        assert stored is not None and stored.status is JobStatus.SUCCEEDED and not stored.has_pending_outbox
        assert [h.status for h in stored.history].count(JobStatus.SUCCEEDED) == 1
