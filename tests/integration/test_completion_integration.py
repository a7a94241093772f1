"""Smoke tests and retirement through the full local pipeline (real processes, no fakes).

One :class:`~deploy.local.stack.LocalStack` runs the Pub/Sub, Firestore and GCS emulators, the
Vertex-compatible tuning server (``gemini-2.5-flash`` -> the tiny random Llama, one epoch) and
the four functions of ``functions/main.py`` wired as in GCP: uploads reach the intake through
the notification bridge, the scheduler loop polls, and the events topic is pushed to
``on_tuning_completed``. The test only uploads files and watches Firestore, the tuning server
and an observer subscription on the events topic.

The tiny model answers with replacement characters, so a prompt with no check passes (its
answer is non-empty) and a ``contains`` check fails: that is how the tuning.yaml steers the
verdicts below.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import jsonschema
import pytest
from google.cloud import storage

from deploy.local.stack import LocalStack, StackComponents
from deploy.local.testing import pull
from shared.adapters.firestore import FirestoreJobStore
from shared.adapters.pubsub import PubSubPublisher
from shared.adapters.vertex import VertexTuningBackend
from shared.errors import NotFoundError
from shared.events import load_schema
from shared.ports import OutgoingEvent, TuningJobSpec
from shared.records import DatasetRef, JobRecord, record_key
from shared.states import JobStatus

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LINEAGE = "support-bot"
OBSERVER = "completion-it-observer"
T = TypeVar("T")

PASSING_CONFIG = """\
epochs: 1
smoke_test:
  prompts:
    - prompt: "What is 3 plus 3?"
      max_chars: 100000
  max_output_tokens: 8
cleanup:
  enabled: true
  keep_last: 1
"""
FAILING_CONFIG = PASSING_CONFIG.replace("max_chars: 100000", 'contains: ["— Acme Support"]')


def dataset(n: int, version: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": f"v{version}: what is {i} plus {i}?"}]},
                    {"role": "model", "parts": [{"text": f"{i} plus {i} is {2 * i}."}]},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 240.0, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Pipeline:
    stack: LocalStack
    jobs: FirestoreJobStore
    tuning: VertexTuningBackend
    events: list[dict[str, Any]] = field(default_factory=list)

    def upload(self, name: str, body: bytes | str) -> DatasetRef:
        blob = storage.Client(project=self.stack.project).bucket(self.stack.bucket).blob(name)
        blob.upload_from_string(body, content_type="application/jsonl" if name.endswith(".jsonl") else "text/yaml")
        blob.reload()
        return DatasetRef(self.stack.bucket, name, int(blob.generation), LINEAGE)

    def record(self, ref: DatasetRef) -> JobRecord | None:
        return self.jobs.get(record_key(ref.bucket, ref.name, ref.generation))

    def tested(self, ref: DatasetRef) -> JobRecord:
        """Wait until the completion function recorded the smoke test (and any cleanup) of ``ref``."""

        def done() -> JobRecord | None:
            record = self.record(ref)
            if record is not None and record.status.is_terminal and record.status is not JobStatus.SUCCEEDED:
                pytest.fail(f"{ref.name} ended {record.status.value}: {record.error}")
            if record is None or not record.smoke_test or "passed" not in record.smoke_test.to_dict():
                return None
            cleanup = record.cleanup.to_dict() if record.cleanup else {}
            finished = "run" in cleanup or "skipped" in cleanup or not record.config.cleanup["enabled"]
            return record if finished and not record.has_pending_outbox else None

        return wait_for(f"the smoke test of {ref.name}", done)

    def collect(self) -> list[dict[str, Any]]:
        for message in pull(self.stack, self.stack.subscription_path(OBSERVER)):
            self.events.append(
                {"data": json.loads(message["data"]), "attributes": message["attributes"], "raw": message["data"]}
            )
        return self.events

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.collect() if e["attributes"].get("type") == event_type]

    def tuning_requests(self, contains: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.stack.tuning_url}/__requests", timeout=30) as response:
            logged: list[dict[str, Any]] = json.loads(response.read())["requests"]
        return [r for r in logged if contains in r["path"]]

    def endpoint_exists(self, endpoint: str) -> bool:
        request = urllib.request.Request(
            f"{self.stack.tuning_url}/v1/{endpoint}", headers={"Authorization": "Bearer local"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def model_exists(self, model: str) -> bool:
        try:
            self.tuning.get_model(model)
        except NotFoundError:
            return False
        return True

    def function_log(self) -> list[dict[str, Any]]:
        path = self.stack.state_dir / "logs" / "fn-completion.log"
        lines = []
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    stack = LocalStack(
        tmp_path_factory.mktemp("completion-stack"),
        project="completion-it",
        components=StackComponents.FULL,
        model_map={"gemini-2.5-flash": "tiny-llama"},
        quota=4,
        poll_interval=1.0,
        retry_backoff=(0.5, 2.0),
    )
    with stack:
        saved = dict(os.environ)
        os.environ.update(stack.env())
        try:
            request = urllib.request.Request(
                f"http://{stack.pubsub_host}/v1/{stack.subscription_path(OBSERVER)}",
                data=json.dumps({"topic": stack.events_topic_path, "ackDeadlineSeconds": 60}).encode(),
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=30).close()
            tuning_url = stack.tuning_url
            assert tuning_url is not None
            yield Pipeline(
                stack=stack,
                jobs=FirestoreJobStore(project=stack.project),
                tuning=VertexTuningBackend(project=stack.project, location=stack.location, base_url=tuning_url),
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _endpoints(record: JobRecord) -> list[str]:
    tuning = record.tuning.to_dict() if record.tuning else {}
    return sorted({tuning["endpoint"], *(c["endpoint"] for c in tuning.get("checkpoints", []) if c.get("endpoint"))})


def _model(record: JobRecord) -> str:
    return str(record.tuning.tuned_model)


def _foreign_model(pipe: Pipeline, training_uri: str) -> str:
    """A model tuned in the same project by someone else: no managed-by label."""
    job = pipe.tuning.create_job(TuningJobSpec("gemini-2.5-flash", training_uri, "hand-made", epochs=1))
    finished = wait_for("the foreign tuning job", lambda: (j := pipe.tuning.get_job(job.name)).has_ended and j)
    assert finished.tuned_model, finished
    return finished.tuned_model


def _seed_record_pointing_at(pipe: Pipeline, model: str, older_than: JobRecord) -> JobRecord:
    """An older passing record of the lineage whose model lacks our label (e.g. adopted by hand)."""
    ref = DatasetRef(pipe.stack.bucket, f"datasets/{LINEAGE}/v0-manual.jsonl", 1, LINEAGE)
    # A plain datetime: Firestore hands back DatetimeWithNanoseconds, whose .replace() it cannot encode.
    now = datetime.fromtimestamp(older_than.created_at.timestamp() - 365 * 86400, tz=UTC)
    record = JobRecord(
        id=record_key(ref.bucket, ref.name, ref.generation),
        dataset=ref,
        status=JobStatus.SUCCEEDED,
        created_at=now,
        updated_at=now,
        tuning={"tuned_model": model, "endpoint": None, "checkpoints": []},
        smoke_test={"passed": True},
    )
    assert pipe.jobs.create(record)
    return record


def _validate(event: dict[str, Any]) -> None:
    schema = load_schema(event["attributes"]["type"])
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event["data"])


def test_v2_retires_v1_a_failing_v3_keeps_v2_foreign_models_stay_redelivery_is_a_no_op(pipeline: Pipeline):
    pipe = pipeline
    pipe.upload(f"datasets/{LINEAGE}/tuning.yaml", PASSING_CONFIG)

    # v1: tuned, smoke test passes, nothing to retire yet.
    v1_ref = pipe.upload(f"datasets/{LINEAGE}/v1.jsonl", dataset(16, 1))
    v1 = pipe.tested(v1_ref)
    assert v1.smoke_test is not None and v1.smoke_test.passed is True, v1.smoke_test
    assert v1.smoke_test.prompts[0]["response"]
    assert pipe.model_exists(_model(v1))
    report = storage.Client().bucket(pipe.stack.bucket).blob(f"reports/{v1_ref.reports_prefix}/smoke_test.json")
    assert json.loads(report.download_as_bytes())["passed"] is True

    # A model sftpilot did not make, and an old lineage record that points at it.
    foreign = _foreign_model(pipe, v1_ref.gcs_uri)
    manual = _seed_record_pointing_at(pipe, foreign, older_than=v1)

    # v2 passes: v1's model and endpoints are deleted, the foreign model is refused.
    v2_ref = pipe.upload(f"datasets/{LINEAGE}/v2.jsonl", dataset(16, 2))
    v2 = pipe.tested(v2_ref)
    assert v2.smoke_test is not None and v2.smoke_test.passed is True
    assert not pipe.model_exists(_model(v1))
    assert not any(pipe.endpoint_exists(e) for e in _endpoints(v1))
    assert pipe.model_exists(_model(v2)) and all(pipe.endpoint_exists(e) for e in _endpoints(v2))
    assert pipe.model_exists(foreign)
    run = v2.cleanup.run
    statuses = {t["job_id"]: t["status"] for t in run["targets"]}
    assert statuses == {v1.id: "retired", manual.id: "not_managed"}
    retired = pipe.record(v1_ref)
    assert retired is not None and retired.cleanup.retired_by == v2.id

    deleted = wait_for("model.deleted", lambda: pipe.of_type("model.deleted"), timeout=30)
    assert [(e["data"]["model"], e["data"]["superseded_by"]) for e in deleted] == [(_model(v1), v2.id)]
    assert sorted(deleted[0]["data"]["endpoints"]) == _endpoints(v1)

    # v3 fails its (stricter) smoke test: v2 stays.
    pipe.upload(f"datasets/{LINEAGE}/tuning.yaml", FAILING_CONFIG)
    v3_ref = pipe.upload(f"datasets/{LINEAGE}/v3.jsonl", dataset(16, 3))
    v3 = pipe.tested(v3_ref)
    assert v3.smoke_test is not None and v3.smoke_test.passed is False
    assert v3.smoke_test.reasons == ["prompt 1 on tuned: contains: missing '— Acme Support'"]
    assert pipe.model_exists(_model(v2))
    failed = wait_for("smoke_test.failed", lambda: pipe.of_type("smoke_test.failed"), timeout=30)
    assert [e["data"]["job_id"] for e in failed] == [v3.id]

    # Every event of the run follows its schema; one smoke_test event per job, one model.deleted.
    events = pipe.collect()
    for event in events:
        _validate(event)
    smoke_ids = [e["data"]["event_id"] for e in events if e["attributes"]["type"].startswith("smoke_test.")]
    assert sorted(smoke_ids) == sorted(f"{r.id}:smoke_test" for r in (v1, v2, v3))
    assert len(pipe.of_type("model.deleted")) == 1

    # Pub/Sub redelivers v2's job.succeeded: the function acknowledges it and runs nothing.
    [succeeded] = [e for e in events if e["data"]["event_id"] == f"{v2.id}:SUCCEEDED"]
    prompts_before = len(pipe.tuning_requests(":generateContent"))
    deletes_before = len([r for r in pipe.tuning_requests("/") if r["method"] == "DELETE"])
    PubSubPublisher(pipe.stack.events_topic_path).publish(
        OutgoingEvent(
            event_id=succeeded["data"]["event_id"],
            event_type="job.succeeded",
            data=succeeded["data"],
            attributes=succeeded["attributes"],
            ordering_key=v2.id,
        )
    )

    def handled_again() -> list[dict[str, Any]]:
        return [
            line
            for line in pipe.function_log()
            if line.get("message") == "completion handled"
            and line.get("event_id") == f"{v2.id}:SUCCEEDED"
            and line.get("outcome") == "DUPLICATE"
        ]

    wait_for("the redelivered job.succeeded to be handled", handled_again, timeout=60)
    assert len(pipe.tuning_requests(":generateContent")) == prompts_before
    assert len([r for r in pipe.tuning_requests("/") if r["method"] == "DELETE"]) == deletes_before
    time.sleep(1.0)
    redelivered = [e for e in pipe.collect() if e["data"]["event_id"] == f"{v2.id}:SUCCEEDED"]
    assert len(redelivered) == 2  # the original and our redelivery; nothing else was published
    assert len(pipe.of_type("model.deleted")) == 1
    assert len([e for e in pipe.collect() if e["attributes"]["type"].startswith("smoke_test.")]) == 3
    assert pipe.record(v2_ref) == v2

    # Our own smoke_test.* / model.deleted events came back through the push subscription: ignored.
    ignored = {
        line["event_type"] for line in pipe.function_log() if line.get("message", "").startswith("event ignored")
    }
    assert ignored >= {"smoke_test.passed", "smoke_test.failed", "model.deleted"}
