"""The deployed ``on_tuning_completed`` entry point, in-process through functions-framework.

Requests are the real delivery formats kept in ``tests/events/``: the structured CloudEvent
Eventarc posts for a Pub/Sub message, and the raw push envelope the Pub/Sub emulator posts
(functions-framework converts it into the same CloudEvent).
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest
from helpers import T0

import shared.logs as logs
import shared.wiring as wiring
from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.errors import PublishError
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, JobRecord
from shared.settings import Settings
from shared.states import JobStatus, TuningState
from shared.tuning_config import TuningConfig
from shared.tuning_view import tuning_view

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "tests" / "events"
BUCKET = "sftpilot-test-bucket"
DEPLOYMENT = "sftpilot-test"
V2_ID = "3d5baddf7e3d66c56b4f67d1e1328891"  # the job of pubsub_job_succeeded.json
V3_ID = "388e27808538d7a5f2840544fb9a8928"  # the job of pubsub_job_failed.json
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def fixture(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


class Fakes:
    def __init__(self) -> None:
        self.jobs = FakeJobStore()
        self.tuning = FakeTuningBackend(quota=10)
        self.tuning.responder = lambda endpoint, request: "Hi there! — Acme Support"
        self.blobs = FakeBlobStore()
        self.publisher = FakePublisher()
        self.cfg = TuningConfig.from_dict(
            {
                "smoke_test": {"prompts": [{"prompt": "Reset my password?", "contains": "Acme Support"}]},
                "cleanup": {"enabled": True, "keep_last": 1},
            }
        ).to_dict()

    def seed(self, job_id: str, n: int, *, end: TuningState = TuningState.SUCCEEDED, smoke: dict | None = None) -> str:
        """A record of lineage support-bot whose tuning job ended ``end``; returns its model (if any)."""
        job = self.tuning.create_job(
            TuningJobSpec(
                "gemini-2.5-flash",
                f"gs://{BUCKET}/datasets/support-bot/v{n}.jsonl",
                f"v{n}",
                labels={"managed-by": DEPLOYMENT},
            )
        )
        ended = self.tuning.set_state(job.name, end)
        status = {TuningState.SUCCEEDED: JobStatus.SUCCEEDED, TuningState.FAILED: JobStatus.FAILED}[end]
        record = JobRecord(
            id=job_id,
            dataset=DatasetRef(BUCKET, f"datasets/support-bot/v{n}.jsonl", 1763719200123456 + n, "support-bot"),
            status=status,
            created_at=T0 + timedelta(hours=n),
            updated_at=T0 + timedelta(hours=n),
            config=self.cfg,
            tuning_job=job.name,
            tuning=tuning_view(ended),
            smoke_test=smoke,
            error={"code": "E_TUNING_FAILED", "message": "Training data is malformed"}
            if end is TuningState.FAILED
            else None,
        )
        assert self.jobs.create(record)
        return str(ended.tuned_model)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def log_lines(monkeypatch):
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logs.configure("INFO", stream=None)


def _client(monkeypatch, fakes: Fakes):
    settings = Settings.from_env(
        {"GOOGLE_CLOUD_PROJECT": "sftpilot-test", "SFTPILOT_BUCKET": BUCKET, "SFTPILOT_DEPLOYMENT": DEPLOYMENT}
    )
    services = wiring.Services(settings=settings, clock=lambda: T0 + timedelta(days=1))
    for port in ("jobs", "tuning", "blobs", "publisher"):
        services.__dict__[port] = getattr(fakes, port)
    wiring.install_services(services)
    source = str(ROOT / "functions" / "completion.py")
    return functions_framework.create_app("on_tuning_completed", source, "cloudevent").test_client()


def test_job_succeeded_smoke_tests_and_retires_the_superseded_model(monkeypatch, fakes, log_lines):
    v1_model = fakes.seed("v1-job", 1, smoke={"passed": True})
    v2_model = fakes.seed(V2_ID, 2)
    client = _client(monkeypatch, fakes)

    response = client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED)

    assert response.status_code == 200
    stored = fakes.jobs.get(V2_ID)
    assert stored is not None and stored.smoke_test is not None and stored.smoke_test.passed is True
    assert [e.event_type for e in fakes.publisher.published] == ["smoke_test.passed", "model.deleted"]
    assert v1_model not in fakes.tuning.models and v2_model in fakes.tuning.models
    [handled] = [line for line in log_lines() if line["message"] == "completion handled"]
    assert (handled["outcome"], handled["job_id"], handled["retired_models"]) == ("DONE", V2_ID, [v1_model])

    # Pub/Sub redelivers the same message: acknowledged, nothing runs twice.
    calls = dict(fakes.tuning.calls)
    again = client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED)
    assert again.status_code == 200
    assert dict(fakes.tuning.calls) == calls
    assert len(fakes.publisher.published) == 2
    assert log_lines()[-1]["outcome"] == "DUPLICATE"


def test_the_raw_push_envelope_of_the_emulator_works_the_same(monkeypatch, fakes):
    fakes.seed(V2_ID, 2)
    client = _client(monkeypatch, fakes)
    response = client.post(
        "/projects/sftpilot-test/topics/sftpilot-events", json=fixture("pubsub_push_job_succeeded.json")
    )
    assert response.status_code == 200
    assert [e.event_type for e in fakes.publisher.published] == ["smoke_test.passed"]


def test_our_own_events_on_the_topic_are_ignored_with_a_log_line(monkeypatch, fakes, log_lines):
    fakes.seed(V2_ID, 2)
    client = _client(monkeypatch, fakes)
    response = client.post("/", json=fixture("pubsub_smoke_test_passed.json"), headers=STRUCTURED)
    assert response.status_code == 200
    assert fakes.tuning.calls["generate"] == 0 and fakes.publisher.published == []
    [line] = [line for line in log_lines() if line["message"].startswith("event ignored")]
    assert (line["event_type"], line["job_id"]) == ("smoke_test.passed", V2_ID)


def test_a_message_that_is_not_an_sftpilot_event_is_acknowledged_with_an_error_log(monkeypatch, fakes, log_lines):
    client = _client(monkeypatch, fakes)
    response = client.post("/", json=fixture("pubsub_not_an_sftpilot_event.json"), headers=STRUCTURED)
    assert response.status_code == 200
    [line] = [line for line in log_lines() if line["severity"] == "ERROR"]
    assert line["error"]["code"] == "E_EVENT_PARSE"
    assert line["error"]["field"] == "message.data"
    assert line["cloud_event_id"] == "13579246804"


def test_job_failed_records_the_reason_and_publishes_nothing(monkeypatch, fakes):
    v1_model = fakes.seed("v1-job", 1, smoke={"passed": True})
    fakes.seed(V3_ID, 3, end=TuningState.FAILED)
    client = _client(monkeypatch, fakes)
    response = client.post("/", json=fixture("pubsub_job_failed.json"), headers=STRUCTURED)
    assert response.status_code == 200
    stored = fakes.jobs.get(V3_ID)
    assert stored is not None and stored.cleanup is not None
    assert stored.cleanup.skipped.startswith("job FAILED: Training data is malformed")
    assert fakes.publisher.published == []
    assert v1_model in fakes.tuning.models


def test_a_claim_held_by_another_invocation_answers_500_for_redelivery(monkeypatch, fakes, log_lines):
    fakes.seed(V2_ID, 2)
    fakes.jobs.acquire_effect(f"{V2_ID}:SUCCEEDED:smoke_test", "other-instance", 600, T0 + timedelta(days=1))
    client = _client(monkeypatch, fakes)
    response = client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED)
    assert response.status_code == 500
    assert fakes.tuning.calls["generate"] == 0
    [line] = [line for line in log_lines() if line["severity"] == "WARNING"]
    assert line["code"] == "E_CLAIM_IN_PROGRESS"


def test_a_retryable_failure_answers_500_and_the_redelivery_finishes(monkeypatch, fakes):
    fakes.seed(V2_ID, 2)
    fakes.publisher.failures.fail_next("publish", PublishError("t", "x", "deadline exceeded"))
    client = _client(monkeypatch, fakes)
    assert client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED).status_code == 500
    assert client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED).status_code == 200
    assert [e.event_type for e in fakes.publisher.published] == ["smoke_test.passed"]
    assert fakes.tuning.calls["generate"] == 1


def test_a_fatal_failure_is_acknowledged_with_an_error_log(monkeypatch, fakes, log_lines):
    fakes.seed(V2_ID, 2)
    fakes.jobs.failures.fail_next("get", ValueError("corrupt record"))
    client = _client(monkeypatch, fakes)
    response = client.post("/", json=fixture("pubsub_job_succeeded.json"), headers=STRUCTURED)
    assert response.status_code == 200
    [line] = [line for line in log_lines() if line["severity"] == "ERROR"]
    assert line["message"] == "completion failed; acknowledged (not retryable)"
    assert line["error"] == "ValueError: corrupt record"
