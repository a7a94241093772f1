"""The jobs API domain (routing, validation, auth, cancel) on fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.jobs_api import Authenticator, JobsApi
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, JobRecord, new_record, utcnow
from shared.states import JobStatus

TOKEN = "s3cret"
AUTH = f"Bearer {TOKEN}"


def _store_record(
    jobs: FakeJobStore,
    name: str,
    status: JobStatus,
    *,
    lineage: str = "faq",
    minutes_ago: int = 0,
    tuning_job: str | None = None,
) -> JobRecord:
    created = utcnow() - timedelta(minutes=minutes_ago)
    rec = new_record(DatasetRef("bkt", f"datasets/{lineage}/{name}.jsonl", 1, lineage), created)
    path = {
        JobStatus.QUEUED: [JobStatus.QUEUED],
        JobStatus.RUNNING: [JobStatus.SUBMITTING, JobStatus.RUNNING],
        JobStatus.SUCCEEDED: [JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.SUCCEEDED],
        JobStatus.REJECTED: [JobStatus.REJECTED],
    }[status]
    for step in path:
        rec = rec.transition(step, created)
    if tuning_job:
        rec = rec.with_changes(created, tuning_job=tuning_job)
    assert jobs.create(rec)
    return rec


@pytest.fixture
def ports():
    jobs, tuning = FakeJobStore(), FakeTuningBackend(quota=5)
    api = JobsApi(jobs=jobs, tuning=lambda: tuning, clock=utcnow, auth=Authenticator(static_token=TOKEN))
    return api, jobs, tuning


def test_healthz_needs_no_token(ports):
    api, _, _ = ports
    assert api.handle("GET", "/healthz", {}, None).body == {"status": "ok"}


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_missing_or_wrong_token_is_401_with_error_shape(ports, header):
    api, _, _ = ports
    response = api.handle("GET", "/jobs", {}, header)
    assert response.status == 401
    assert response.body["error"]["code"] == "E_UNAUTHENTICATED"
    assert set(response.body["error"]) == {"code", "message", "status", "details"}


def test_list_is_newest_first_and_pages(ports):
    api, jobs, _ = ports
    for i in range(5):
        _store_record(jobs, f"v{i}", JobStatus.QUEUED, minutes_ago=10 - i)
    first = api.handle("GET", "/jobs", {"limit": "2"}, AUTH)
    assert first.status == 200
    names = [j["dataset"] for j in first.body["jobs"]]
    assert names == ["gs://bkt/datasets/faq/v4.jsonl#1", "gs://bkt/datasets/faq/v3.jsonl#1"]
    token = first.body["next_page_token"]
    seen = list(names)
    while token:
        page = api.handle("GET", "/jobs", {"limit": "2", "page_token": token}, AUTH)
        seen += [j["dataset"] for j in page.body["jobs"]]
        token = page.body["next_page_token"]
    assert len(seen) == 5 and len(set(seen)) == 5


def test_list_filters_by_state_and_lineage(ports):
    api, jobs, _ = ports
    _store_record(jobs, "a", JobStatus.QUEUED, lineage="faq")
    _store_record(jobs, "b", JobStatus.REJECTED, lineage="faq")
    _store_record(jobs, "c", JobStatus.QUEUED, lineage="other")
    body = api.handle("GET", "/jobs", {"state": "queued", "lineage": "faq"}, AUTH).body
    assert [(j["status"], j["lineage"]) for j in body["jobs"]] == [("QUEUED", "faq")]
    assert set(body["jobs"][0]) >= {"id", "status", "lineage", "dataset", "tuning_job", "updated_at"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"state": "DONE"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"dataset": "s3://x/y"}, "dataset"),
        ({"lineage": "../etc"}, "lineage"),
        ({"page_token": "!!"}, "page_token"),
        ({"page_token": "bm90LWEtbnVtYmVy"}, "page_token"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(ports, params, parameter):
    api, _, _ = ports
    response = api.handle("GET", "/jobs", params, AUTH)
    assert response.status == 400
    assert response.body["error"]["details"]["parameter"] == parameter


def test_get_unknown_is_404_and_malformed_id_is_400(ports):
    api, _, _ = ports
    assert api.handle("GET", "/jobs/" + "0" * 32, {}, AUTH).status == 404
    assert api.handle("GET", "/jobs/not-an-id", {}, AUTH).status == 400


def test_get_returns_full_record(ports):
    api, jobs, _ = ports
    rec = _store_record(jobs, "a", JobStatus.QUEUED)
    body = api.handle("GET", f"/jobs/{rec.id}", {}, AUTH).body
    assert body["id"] == rec.id
    assert [h["status"] for h in body["history"]] == ["RECEIVED", "QUEUED"]


def test_wrong_method_and_unknown_route(ports):
    api, _, _ = ports
    assert api.handle("POST", "/jobs", {}, AUTH).status == 405
    assert api.handle("GET", "/nope", {}, AUTH).status == 404


def test_cancel_queued_job_ends_it_with_an_event_and_records_who(ports):
    api, jobs, tuning = ports
    rec = _store_record(jobs, "a", JobStatus.QUEUED)
    response = api.handle("POST", f"/jobs/{rec.id}:cancel", {}, AUTH)
    assert response.status == 200
    stored = jobs.get(rec.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    assert stored.cancel_request is not None and stored.cancel_request.by == "local-token"
    assert [e.event_type for e in stored.outbox] == ["job.cancelled"]
    assert tuning.calls["cancel_job"] == 0


def test_cancel_running_job_calls_backend_and_moves_to_cancelling(ports):
    api, jobs, tuning = ports
    job = tuning.create_job(TuningJobSpec("gemini-2.5-flash", "gs://bkt/d.jsonl", "d"))
    rec = _store_record(jobs, "a", JobStatus.RUNNING, tuning_job=job.name)
    assert api.handle("POST", f"/jobs/{rec.id}:cancel", {}, AUTH).body["called_backend"] is True
    assert tuning.get_job(job.name).state.value == "JOB_STATE_CANCELLING"
    stored = jobs.get(rec.id)
    assert stored is not None and stored.status is JobStatus.CANCELLING
    again = api.handle("POST", f"/jobs/{rec.id}:cancel", {}, AUTH)
    assert again.status == 200 and again.body["called_backend"] is False


def test_cancel_of_ended_job_is_409_and_changes_nothing(ports):
    api, jobs, _ = ports
    rec = _store_record(jobs, "a", JobStatus.SUCCEEDED, tuning_job="projects/p/locations/l/tuningJobs/1")
    response = api.handle("POST", f"/jobs/{rec.id}:cancel", {}, AUTH)
    assert response.status == 409
    assert jobs.get(rec.id) == rec


def test_oidc_principal_not_on_allow_list_cannot_cancel(ports):
    _, jobs, tuning = ports
    verifier_calls = []

    def verifier(token, audience):
        verifier_calls.append((token, audience))
        if token != "good":
            raise ValueError("bad signature")
        return {"email": "reader@example.com"}

    api = JobsApi(
        jobs=jobs,
        tuning=lambda: tuning,
        clock=utcnow,
        auth=Authenticator(
            audience="https://api, 32555940559.apps.googleusercontent.com",
            cancel_principals=("ops@example.com",),
            verifier=verifier,
        ),
    )
    rec = _store_record(jobs, "a", JobStatus.QUEUED)
    assert api.handle("GET", "/jobs", {}, "Bearer good").status == 200
    assert api.handle("GET", "/jobs", {}, "Bearer forged").status == 401
    forbidden = api.handle("POST", f"/jobs/{rec.id}:cancel", {}, "Bearer good")
    assert forbidden.status == 403
    assert verifier_calls[0] == ("good", ["https://api", "32555940559.apps.googleusercontent.com"])
    stored = jobs.get(rec.id)
    assert stored is not None and stored.status is JobStatus.QUEUED


def test_store_outage_is_503_not_a_traceback(ports):
    from shared.errors import StoreUnavailableError

    api, jobs, _ = ports
    jobs.failures.fail_next("query", StoreUnavailableError("query", "deadline exceeded"))
    response = api.handle("GET", "/jobs", {}, AUTH)
    assert response.status == 503
    assert "Traceback" not in str(response.body)
