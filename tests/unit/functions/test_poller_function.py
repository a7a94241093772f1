"""The deployed ``poll_tuning_jobs`` entry point, in-process through functions-framework, on fakes."""

from __future__ import annotations

from pathlib import Path

import functions_framework
import pytest

import shared.wiring as wiring
from shared.adapters.fakes import FakeJobStore, FakePublisher, FakeTuningBackend
from shared.errors import StoreUnavailableError
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, new_record, utcnow
from shared.settings import Settings
from shared.states import JobStatus, TuningState

ROOT = Path(__file__).resolve().parents[3]
SUMMARY_KEYS = {"checked", "changed", "published", "submitted", "adopted", "vanished", "stalled", "errors"}


class Fakes:
    def __init__(self) -> None:
        self.jobs = FakeJobStore()
        self.tuning = FakeTuningBackend(quota=10)
        self.publisher = FakePublisher()


def _client(monkeypatch, fakes: Fakes):
    services = wiring.Services(settings=Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": "bkt"}))
    services.__dict__["jobs"] = fakes.jobs
    services.__dict__["tuning"] = fakes.tuning
    services.__dict__["publisher"] = fakes.publisher
    wiring.install_services(services)
    return functions_framework.create_app("poll_tuning_jobs", str(ROOT / "functions/poller.py"), "http").test_client()


def _running_job(fakes: Fakes) -> str:
    rec = new_record(DatasetRef("bkt", "datasets/faq/a.jsonl", 5, "faq"), utcnow())
    job = fakes.tuning.create_job(TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, "faq-a"))
    rec = rec.transition(JobStatus.SUBMITTING, utcnow()).transition(JobStatus.PENDING, utcnow(), tuning_job=job.name)
    fakes.jobs.create(rec)
    fakes.tuning.set_state(job.name, TuningState.SUCCEEDED)
    return rec.id


def test_a_scheduler_call_reconciles_and_returns_the_summary(monkeypatch):
    fakes = Fakes()
    job_id = _running_job(fakes)
    client = _client(monkeypatch, fakes)

    response = client.post("/", headers={"Content-Type": "application/json"}, data="{}")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert set(body) >= SUMMARY_KEYS
    assert (body["checked"], body["changed"], body["published"], body["errors"]) == (1, 1, 1, [])
    assert body["owner"].startswith("poller-")
    assert [e.event_id for e in fakes.publisher.published] == [f"{job_id}:SUCCEEDED"]
    stored = fakes.jobs.get(job_id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED

    again = client.post("/").get_json()
    assert (again["checked"], again["published"]) == (0, 0)
    assert len(fakes.publisher.published) == 1


def test_record_level_errors_are_in_a_200_summary(monkeypatch):
    fakes = Fakes()
    job_id = _running_job(fakes)
    fakes.publisher.failures.fail_next("publish", RuntimeError("pubsub unavailable"))
    body = _client(monkeypatch, fakes).post("/").get_json()
    assert body["changed"] == 1
    assert [(e["job_id"], e["operation"], e["code"]) for e in body["errors"]] == [(job_id, "publish", "E_PUBLISH")]


def test_unreachable_store_answers_500_with_a_clear_error(monkeypatch):
    fakes = Fakes()
    fakes.jobs.failures.fail_next("query", StoreUnavailableError("query", "deadline exceeded"))
    response = _client(monkeypatch, fakes).post("/")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "E_STORE_UNAVAILABLE"
    assert "deadline exceeded" in body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_missing_settings_answer_500_naming_the_setting(monkeypatch):
    for name in ("GOOGLE_CLOUD_PROJECT", "SFTPILOT_PROJECT", "SFTPILOT_BUCKET", "SFTPILOT_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    wiring.reset_services_cache()
    app = functions_framework.create_app("poll_tuning_jobs", str(ROOT / "functions/poller.py"), "http")
    response = app.test_client().post("/")
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "E_SETTINGS"
    assert "GOOGLE_CLOUD_PROJECT" in error["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_both_scheduler_methods_are_accepted(monkeypatch, method):
    response = _client(monkeypatch, Fakes()).open("/", method=method)
    assert response.status_code == 200
    assert response.get_json()["checked"] == 0
