"""The deployed ``on_dataset_uploaded`` entry point, in-process through functions-framework, on fakes.

Real CloudEvent payloads come from ``tests/events/``; the app is built from the source file
exactly as ``functions-framework --source functions/intake.py`` would serve it.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest

import shared.wiring as wiring
from shared import logs
from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.errors import TransientBackendError
from shared.records import from_rfc3339
from shared.settings import Settings
from shared.states import JobStatus

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "tests" / "events"
BUCKET = "sftpilot-test-bucket"
STRUCTURED = "application/cloudevents+json"


def fixture(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def dataset_bytes(n: int = 20) -> bytes:
    return b"".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": f"question {i}"}]},
                    {"role": "model", "parts": [{"text": f"answer {i}"}]},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


class Stack:
    def __init__(self, monkeypatch) -> None:
        self.blobs, self.jobs = FakeBlobStore(), FakeJobStore()
        self.publisher, self.tuning = FakePublisher(), FakeTuningBackend(quota=3)
        event_time = from_rfc3339(fixture("gcs_finalized_dataset.json")["time"])
        services = wiring.Services(
            settings=Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": BUCKET}),
            clock=lambda: event_time + timedelta(seconds=5),
        )
        services.__dict__.update(blobs=self.blobs, jobs=self.jobs, publisher=self.publisher, tuning=self.tuning)
        wiring.install_services(services)
        app = functions_framework.create_app("on_dataset_uploaded", str(ROOT / "functions/intake.py"), "cloudevent")
        self.client = app.test_client()

    def post(self, body: dict):
        return self.client.post("/", data=json.dumps(body), content_type=STRUCTURED)

    def dataset_event(self, data: bytes) -> dict:
        """The dataset fixture, pointing at the generation we just stored under its name."""
        body = fixture("gcs_finalized_dataset.json")
        generation = self.blobs.put(BUCKET, body["data"]["name"], data)
        body["data"]["generation"] = str(generation)
        body["data"]["size"] = str(len(data))
        return body


@pytest.fixture
def stack(monkeypatch) -> Stack:
    return Stack(monkeypatch)


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.configure("INFO", None)


def test_dataset_event_creates_one_record_and_one_job(stack):
    body = stack.dataset_event(dataset_bytes())
    response = stack.post(body)
    assert response.status_code == 200
    [record] = stack.jobs.all()
    assert record.status is JobStatus.PENDING
    assert record.event_id == body["id"]
    assert list(stack.tuning.jobs) == [record.tuning_job]
    assert stack.post(body).status_code == 200  # redelivery: acknowledged, nothing new
    assert len(stack.tuning.jobs) == 1 and len(stack.jobs.all()) == 1


def test_binary_mode_delivery_is_understood_too(stack):
    body = stack.dataset_event(dataset_bytes())
    headers = {f"ce-{k}": v for k, v in body.items() if k not in {"data", "datacontenttype"}}
    response = stack.client.post("/", data=json.dumps(body["data"]), headers=headers, content_type="application/json")
    assert response.status_code == 200
    assert len(stack.tuning.jobs) == 1


@pytest.mark.parametrize(
    "name",
    [
        "gcs_finalized_report.json",
        "gcs_finalized_non_jsonl.json",
        "gcs_finalized_folder.json",
        "gcs_finalized_validation_set.json",
        "gcs_deleted_dataset.json",
    ],
)
def test_objects_that_are_not_datasets_are_acknowledged_without_work(stack, log_lines, name):
    response = stack.post(fixture(name))
    assert response.status_code == 200
    assert stack.jobs.all() == [] and stack.jobs.writes == 0
    assert sum(stack.tuning.calls.values()) == 0
    [line] = [entry for entry in log_lines() if entry.get("outcome") == "IGNORED"]
    assert line["severity"] == "INFO" and line["reason"]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("malformed_missing_generation.json", "data.generation"),
        ("malformed_generation_not_a_number.json", "data.generation"),
        ("malformed_data_not_an_object.json", "data"),
        ("malformed_bucket_mismatch.json", "data.bucket"),
    ],
)
def test_malformed_events_are_logged_and_acknowledged(stack, log_lines, name, field):
    response = stack.post(fixture(name))
    assert response.status_code == 200  # redelivering a malformed event cannot help
    assert stack.jobs.all() == []
    [line] = [entry for entry in log_lines() if entry["severity"] == "ERROR"]
    assert line["error_code"] == "E_EVENT_PARSE"
    assert repr(field) in line["error"]
    assert line["event_id"] == fixture(name)["id"]


def test_invalid_dataset_is_acknowledged_after_rejecting_it(stack):
    response = stack.post(stack.dataset_event(b'{"messages": [{"role": "user", "content": "hi"}]}\n'))
    assert response.status_code == 200
    [record] = stack.jobs.all()
    assert record.status is JobStatus.REJECTED
    assert [e.event_type for e in stack.publisher.published] == ["dataset.rejected"]


def test_retryable_failure_answers_500_and_the_redelivery_finishes(stack, log_lines):
    body = stack.dataset_event(dataset_bytes())
    stack.tuning.failures.fail_next("create_job", TransientBackendError("create_job", 503, "unavailable"))
    assert stack.post(body).status_code == 500
    assert any(entry.get("error_code") == "E_BACKEND_TRANSIENT" for entry in log_lines())
    assert stack.post(body).status_code == 200
    assert len(stack.tuning.jobs) == 1
    assert stack.jobs.all()[0].status is JobStatus.PENDING


def test_fatal_unexpected_failure_is_logged_and_acknowledged(stack, log_lines):
    body = stack.dataset_event(dataset_bytes())
    stack.jobs.failures.fail_next("create", ValueError("corrupt document"))
    assert stack.post(body).status_code == 200
    errors = [entry for entry in log_lines() if entry["severity"] == "ERROR"]
    assert errors and errors[-1]["error_code"] == "E_INTERNAL"
    assert "corrupt document" in errors[-1]["error"]


def test_invalid_settings_refuse_the_event_so_it_waits_for_the_fix(monkeypatch, log_lines):
    wiring.reset_services_cache()
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    monkeypatch.setenv("SFTPILOT_BUCKET", "Not A Bucket")
    app = functions_framework.create_app("on_dataset_uploaded", str(ROOT / "functions/intake.py"), "cloudevent")
    response = app.test_client().post(
        "/", data=json.dumps(fixture("gcs_finalized_dataset.json")), content_type=STRUCTURED
    )
    assert response.status_code == 500  # redelivered later instead of dropped
    errors = [entry for entry in log_lines() if entry["severity"] == "ERROR"]
    assert [entry["error_code"] for entry in errors] == ["E_SETTINGS"]
    assert "SFTPILOT_BUCKET" in errors[0]["error"]
    wiring.reset_services_cache()
