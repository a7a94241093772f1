"""The tuning server's request handling in-process (no sockets, no training): validation,
paging, filters, queueing, fault scripts and the restart policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.local.tuning_server.app import TuningApp
from deploy.local.tuning_server.config import QuotaMode, ServerConfig
from deploy.local.tuning_server.filters import matches, parse_filter
from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import ApiError

PARENT = "projects/p/locations/us-central1"
AUTH = {"Authorization": "Bearer t"}


def make_app(state_dir: Path, **overrides) -> TuningApp:
    settings = {"project": "p", "location": "us-central1", "model_map": {"gemini-2.5-flash": "tiny-llama"}}
    settings.update(overrides)
    return TuningApp(ServerConfig(state_dir=state_dir, **settings))  # the scheduler is not started


def call(app: TuningApp, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    raw = json.dumps(body).encode() if body is not None else b""
    response = app.handle(method, path, AUTH if headers is None else headers, raw)
    return response.status, json.loads(response.body or b"{}")


def create(app: TuningApp, labels: dict | None = None, dataset: str = "/no/such/file.jsonl", **extra):
    body = {"baseModel": "gemini-2.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": dataset}, **extra}
    if labels:
        body["labels"] = labels
    return call(app, "POST", f"/v1/{PARENT}/tuningJobs", body)


@pytest.fixture
def app(tmp_path: Path) -> TuningApp:
    return make_app(tmp_path / "state", quota=100)


def test_create_validates_and_answers_google_errors(app):
    status, body = create(app, supervisedTuningSpec={"hyperParameters": {"adapterSize": "ADAPTER_SIZE_THREE"}})
    assert status == 400  # the spec without a dataset URI
    status, body = call(
        app,
        "POST",
        f"/v1/{PARENT}/tuningJobs",
        {
            "baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {
                "trainingDatasetUri": "gs://b/t.jsonl",
                "hyperParameters": {"adapterSize": "ADAPTER_SIZE_THREE"},
            },
        },
    )
    assert status == 400
    assert body == {"error": {"code": 400, "message": body["error"]["message"], "status": "INVALID_ARGUMENT"}}
    assert "ADAPTER_SIZE_THREE" in body["error"]["message"]

    for bad in (
        {"preTunedModel": {"tunedModelName": f"{PARENT}/models/1"}},
        {"distillationSpec": {}},
        {"tunedModelDisplayName": "x" * 129},
        {"encryptionSpec": {}},
    ):
        status, body = create(app, **bad)
        assert status == 400, bad
    status, body = call(app, "POST", f"/v1/{PARENT}/tuningJobs", None)
    assert status == 400  # empty body: no baseModel
    response = app.handle("POST", f"/v1/{PARENT}/tuningJobs", AUTH, b"{not json")
    assert response.status == 400
    assert not app.store.jobs  # nothing was created by bad requests


def test_adapter_sizes_map_to_lora_ranks_and_defaults_apply(app):
    status, job = create(
        app,
        dataset="gs://b/t.jsonl",
        supervisedTuningSpec={
            "trainingDatasetUri": "gs://b/t.jsonl",
            "hyperParameters": {"adapterSize": "ADAPTER_SIZE_SIXTEEN"},
        },
    )
    assert status == 200
    stored = app.store.jobs[job["name"].rsplit("/", 1)[-1]].training
    assert (stored.lora_rank, stored.epochs, stored.learning_rate_multiplier) == (16, 3, 1.0)
    assert stored.local_model == "tiny-llama"
    status, job = create(app, dataset="gs://b/t.jsonl", baseModel="gemini-2.0-flash-001")
    stored = app.store.jobs[job["name"].rsplit("/", 1)[-1]].training
    assert (stored.lora_rank, stored.local_model) == (8, "smollm2-135m")  # unmapped gemini-* -> default model


def test_unknown_routes_projects_and_credentials(app):
    assert call(app, "GET", "/v1/projects/p/locations/us-central1/nothingHere")[0] == 404
    assert call(app, "GET", "/v2/projects/p/locations/us-central1/tuningJobs")[0] == 404
    assert call(app, "GET", f"/v1/{PARENT}/tuningJobs", headers={})[0] == 401
    assert call(app, "GET", f"/v1/{PARENT}/tuningJobs", headers={"x-goog-api-key": "k"})[0] == 200
    assert call(app, "GET", "/v1/projects/q/locations/us-central1/tuningJobs")[0] == 403
    assert call(app, "GET", "/v1/projects/p/locations/europe-west4/tuningJobs")[0] == 400
    assert call(app, "GET", "/v1beta1/projects/p/locations/us-central1/tuningJobs")[0] == 200
    assert call(app, "GET", "/healthz", headers={}) == (200, {"status": "ok"})


def test_paging_is_stable_newest_first_and_tokens_are_checked(app):
    names = [create(app, {"i": str(i)}, dataset="gs://b/t.jsonl")[1]["name"] for i in range(5)]
    seen, token = [], ""
    while True:
        status, page = call(app, "GET", f"/v1/{PARENT}/tuningJobs?pageSize=2&pageToken={token}")
        assert status == 200
        seen += [job["name"] for job in page["tuningJobs"]]
        if len(seen) == 2:
            create(app, {"i": "late"}, dataset="gs://b/t.jsonl")  # a job created mid-listing
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert seen == list(reversed(names))  # the newer job does not shift later pages
    assert call(app, "GET", f"/v1/{PARENT}/tuningJobs?pageToken=garbage")[0] == 400
    assert call(app, "GET", f"/v1/{PARENT}/tuningJobs?pageSize=x")[0] == 400


def test_filters_support_labels_state_and_refuse_what_they_cannot_do():
    job = {"labels": {"team": "ml", "run": "r1"}, "state": "JOB_STATE_RUNNING", "baseModel": "gemini-2.5-flash"}
    assert matches(parse_filter('labels.team="ml" AND labels.run=r1'), job)
    assert matches(parse_filter("labels.team:* state!=JOB_STATE_FAILED"), job)
    assert not matches(parse_filter('labels.team="ops"'), job)
    assert not matches(parse_filter("labels.missing:*"), job)
    assert matches(parse_filter('base_model="gemini-2.5-flash"'), job)
    for bad in ("labels.a=1 OR labels.b=2", "(labels.a=1)", "weird_field=1", "labels.=x", "labels.a"):
        with pytest.raises(ApiError) as raised:
            parse_filter(bad)
        assert raised.value.http_status == 400


def test_reject_mode_refuses_and_queue_mode_queues_then_promotes(tmp_path):
    reject = make_app(tmp_path / "reject", quota=1)
    assert create(reject, dataset="gs://b/t.jsonl")[0] == 200
    status, body = create(reject, dataset="gs://b/t.jsonl")
    assert (status, body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")

    queue = make_app(tmp_path / "queue", quota=1, quota_mode=QuotaMode.QUEUE)
    first = create(queue, dataset="/missing/first.jsonl")[1]
    second = create(queue, dataset="/missing/second.jsonl")[1]
    assert first["state"] == "JOB_STATE_PENDING"
    assert (second["state"], second["tuningJobState"]) == ("JOB_STATE_PENDING", "TUNING_JOB_STATE_WAITING_FOR_QUOTA")
    third = create(queue, dataset="/missing/third.jsonl")[1]
    assert third["tuningJobState"] == "TUNING_JOB_STATE_WAITING_FOR_QUOTA"  # behind the second, not ahead
    queue.runner._schedule_once()
    held = queue.store.jobs[second["name"].rsplit("/", 1)[-1]]
    assert (held.state, held.tuning_job_state) == ("JOB_STATE_PENDING", "TUNING_JOB_STATE_WAITING_FOR_QUOTA")
    queue.runner.force_state(first["name"].rsplit("/", 1)[-1], "JOB_STATE_FAILED", {"code": 13, "message": "x"})
    queue.runner._schedule_once()  # what the scheduler thread does on every wake-up
    assert held.tuning_job_state != "TUNING_JOB_STATE_WAITING_FOR_QUOTA"  # the slot went to the oldest
    last = queue.store.jobs[third["name"].rsplit("/", 1)[-1]]
    assert last.tuning_job_state == "TUNING_JOB_STATE_WAITING_FOR_QUOTA"
    queue.runner.stop()


def test_cancel_rules(app):
    job = create(app, dataset="gs://b/t.jsonl")[1]
    assert call(app, "POST", f"/v1/{job['name']}:cancel")[0] == 200
    status, ended = call(app, "GET", f"/v1/{job['name']}")
    assert (ended["state"], ended["error"]["code"]) == ("JOB_STATE_CANCELLED", 1)
    status, body = call(app, "POST", f"/v1/{job['name']}:cancel")
    assert (status, body["error"]["status"]) == (400, "FAILED_PRECONDITION")


def test_fault_scripts_answer_then_expire_and_are_logged(app):
    assert (
        call(app, "POST", "/__script", {"match": "/tuningJobs", "method": "GET", "status": 503, "times": 2})[0] == 200
    )
    answers = [call(app, "GET", f"/v1/{PARENT}/tuningJobs")[0] for _ in range(3)]
    assert answers == [503, 503, 200]
    _, logged = call(app, "GET", "/__requests")
    assert [r["method"] for r in logged["requests"]] == ["GET"] * 3
    assert call(app, "POST", "/__script", {"match": "(", "regex": True})[0] == 400
    call(app, "POST", "/__reset", {"state": False})
    assert call(app, "GET", "/__requests")[1] == {"requests": []}


def test_restart_policy(tmp_path):
    state_dir = tmp_path / "state"
    first = make_app(state_dir, quota=10)
    ids = [create(first, dataset="gs://b/t.jsonl")[1]["name"].rsplit("/", 1)[-1] for _ in range(4)]
    running, cancelling, exhausted, queued = (first.store.jobs[i] for i in ids)
    for job, state, attempt in (
        (running, "JOB_STATE_RUNNING", 1),
        (cancelling, "JOB_STATE_CANCELLING", 1),
        (exhausted, "JOB_STATE_RUNNING", 4),
        (queued, "JOB_STATE_PENDING", 0),
    ):
        job.state = state
        job.attempt = attempt
        job.completed_steps = 7
        job.step_metrics = [{"step": 7, "train_total_loss": 1.0}]
        first.store.save_job(job)

    restarted = make_app(state_dir, quota=10, max_restarts=3)  # a new process on the same state dir
    restarted.runner._recover()
    jobs = restarted.store.jobs
    assert jobs[running.job_id].state == "JOB_STATE_RUNNING"  # never backwards: trained again from scratch
    assert (jobs[running.job_id].completed_steps, jobs[running.job_id].step_metrics) == (0, [])
    assert jobs[cancelling.job_id].state == "JOB_STATE_CANCELLED"
    assert jobs[exhausted.job_id].state == "JOB_STATE_FAILED"
    assert "4 server restarts" in jobs[exhausted.job_id].error["message"]
    assert jobs[queued.job_id].state == "JOB_STATE_PENDING"
    # and it is all on disk
    assert StateStore(state_dir).jobs[cancelling.job_id].state == "JOB_STATE_CANCELLED"


def test_models_and_endpoints_404_and_operations(app):
    assert call(app, "GET", f"/v1/{PARENT}/models/1@1")[0] == 404
    assert call(app, "GET", f"/v1/{PARENT}/models/1@2")[0] == 404
    assert call(app, "DELETE", f"/v1/{PARENT}/endpoints/1")[0] == 404
    assert call(app, "POST", f"/v1/{PARENT}/endpoints/1:undeployModel", {"deployedModelId": "2"})[0] == 404
    assert call(app, "POST", f"/v1/{PARENT}/endpoints/1:generateContent", {"contents": []})[0] == 404
    assert call(app, "GET", f"/v1/{PARENT}/operations/5") == (200, {"name": f"{PARENT}/operations/5", "done": True})
    assert call(app, "GET", f"/v1/{PARENT}/endpoints") == (200, {"endpoints": []})
