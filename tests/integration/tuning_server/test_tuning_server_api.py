"""The tuning server's request handling in-process (no sockets, no training): validation,
paging, filters, queueing, fault scripts and the restart policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy.local.tuning_server.app import TuningApp
from deploy.local.tuning_server.config import QuotaMode, ServerConfig, VersionedDelete
from deploy.local.tuning_server.filters import matches, parse_filter
from deploy.local.tuning_server.resources import StoredEndpoint, StoredModel
from deploy.local.tuning_server.server import TuningServer
from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import ApiError
from shared.adapters.vertex import VertexTuningBackend
from shared.cleanup import OperationWait, RetirementTarget, TargetStatus, retire_model

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
    assert call(app, "GET", f"/v1/{PARENT}/operations/5")[0] == 404  # only operations the server started
    assert call(app, "GET", f"/v1/{PARENT}/endpoints") == (200, {"endpoints": []})


# --- undeploy and deletes: operations and refusals as on Vertex ---------------------------------
# Undeploy and deletes on the tuning server behave like Vertex where the cleanup depends on it.
#
# In-process (no sockets, no training): models and endpoints are put in the store as a finished
# job would leave them. What is checked, each from the REST reference:
#
# * undeploy/delete answer a google.longrunning Operation that stays ``done: false`` for
#  ``operation_polls`` polls; the change happens when it finishes;
# * deleting a deployed model or an endpoint with deployed models -> 400 FAILED_PRECONDITION
#  (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete);
# * undeploying a model that carries traffic while others stay on the endpoint needs a
#  ``trafficSplit`` that takes it away
#  (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/undeployModel);
# * ``DELETE models/ID@1`` is refused or accepted per ``versioned_model_delete`` (undocumented:
#  both ways are tested).

T = "2026-01-01T00:00:00Z"


def seed(app: TuningApp, model_id: str, endpoint_id: str, deployed_model_id: str, *, shared: bool = False) -> None:
    """A model deployed on an endpoint (appended to the endpoint when ``shared``)."""
    endpoint_name = f"{PARENT}/endpoints/{endpoint_id}"
    model = StoredModel(
        model_id=model_id,
        name=f"{PARENT}/models/{model_id}",
        display_name=model_id,
        description="",
        labels={"managed-by": "sftpilot"},
        job_name=f"{PARENT}/tuningJobs/{model_id}",
        base_model="gemini-2.5-flash",
        local_model="tiny-llama",
        checkpoints=[{"checkpoint_id": "1", "epoch": 1, "step": 1, "adapter_dir": f"adapters/{model_id}"}],
        deployments=[{"endpoint": endpoint_name, "deployed_model_id": deployed_model_id, "checkpoint_id": "1"}],
        create_time=T,
        update_time=T,
    )
    app.store.save_model(model)
    deployment = {
        "deployed_model_id": deployed_model_id,
        "model": f"{model.name}@1",
        "checkpoint_id": "1",
        "create_time": T,
    }
    endpoint = app.store.endpoints.get(endpoint_id) if shared else None
    if endpoint is None:
        endpoint = StoredEndpoint(endpoint_id, endpoint_name, endpoint_id, {}, [], T, T)
    endpoint.deployed_models.append(deployment)
    app.store.save_endpoint(endpoint)


def poll(app: TuningApp, operation: dict) -> dict:
    status, answer = call(app, "GET", f"/v1/{operation['name']}")
    assert status == 200
    return answer


@pytest.fixture
def slow(tmp_path: Path) -> TuningApp:
    app = make_app(tmp_path / "state", operation_polls=2)
    seed(app, "m1", "e1", "d1")
    return app


def test_operations_stay_running_for_the_configured_polls_then_apply(slow):
    status, operation = call(slow, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", {"deployedModelId": "d1"})
    assert status == 200 and operation["done"] is False and "/operations/" in operation["name"]
    assert operation["metadata"]["@type"].endswith("UndeployModelOperationMetadata")
    # still deployed while the operation runs: deleting the model is refused as on Vertex
    status, error = call(slow, "DELETE", f"/v1/{PARENT}/models/m1")
    assert (status, error["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert poll(slow, operation)["done"] is False
    assert poll(slow, operation)["done"] is False
    done = poll(slow, operation)
    assert done["done"] is True and "error" not in done and "response" in done
    assert call(slow, "GET", f"/v1/{PARENT}/models/m1")[1]["deployedModels"] == []

    status, deleting = call(slow, "DELETE", f"/v1/{PARENT}/models/m1")
    assert status == 200 and deleting["done"] is False
    assert call(slow, "GET", f"/v1/{PARENT}/models/m1")[0] == 200  # not gone until the operation ends
    for _ in range(3):
        answer = poll(slow, deleting)
    assert answer["done"] is True
    assert call(slow, "GET", f"/v1/{PARENT}/models/m1")[0] == 404


def test_zero_polls_answers_done_operations(tmp_path):
    app = make_app(tmp_path / "state", operation_polls=0)
    seed(app, "m1", "e1", "d1")
    status, operation = call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", {"deployedModelId": "d1"})
    assert status == 200 and operation["done"] is True
    assert call(app, "DELETE", f"/v1/{PARENT}/endpoints/e1")[1]["done"] is True
    assert call(app, "GET", f"/v1/{PARENT}/endpoints/e1")[0] == 404


def test_deleting_an_endpoint_with_deployed_models_is_a_failed_precondition(slow):
    status, error = call(slow, "DELETE", f"/v1/{PARENT}/endpoints/e1")
    assert (status, error["error"]["code"], error["error"]["status"]) == (400, 400, "FAILED_PRECONDITION")
    assert "undeploy" in error["error"]["message"]


@pytest.mark.parametrize("mode", list(VersionedDelete))
def test_a_versioned_model_name_on_delete(tmp_path, mode):
    app = make_app(tmp_path / "state", operation_polls=0, versioned_model_delete=mode)
    seed(app, "m1", "e1", "d1")
    call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", {"deployedModelId": "d1"})
    status, answer = call(app, "DELETE", f"/v1/{PARENT}/models/m1@1")
    if mode is VersionedDelete.REJECT:
        assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
        assert "without a version" in answer["error"]["message"]
        assert call(app, "GET", f"/v1/{PARENT}/models/m1")[0] == 200
    else:
        assert status == 200 and answer["done"] is True
        assert call(app, "GET", f"/v1/{PARENT}/models/m1")[0] == 404


def test_undeploying_a_model_with_traffic_from_a_shared_endpoint_needs_a_traffic_split(tmp_path):
    app = make_app(tmp_path / "state", operation_polls=0)
    seed(app, "m1", "e1", "d1")
    seed(app, "m2", "e1", "d2", shared=True)
    assert call(app, "GET", f"/v1/{PARENT}/endpoints/e1")[1]["trafficSplit"] == {"d1": 100}

    status, error = call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", {"deployedModelId": "d1"})
    assert (status, error["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert "trafficSplit" in error["error"]["message"]
    bad = {"deployedModelId": "d1", "trafficSplit": {"d1": 50, "d2": 50}}
    assert call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", bad)[0] == 400
    unknown = {"deployedModelId": "d1", "trafficSplit": {"d9": 100}}
    assert call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", unknown)[0] == 400

    good = {"deployedModelId": "d1", "trafficSplit": {"d2": 100}}
    status, operation = call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", good)
    assert status == 200 and operation["done"] is True
    endpoint = call(app, "GET", f"/v1/{PARENT}/endpoints/e1")[1]
    assert [d["id"] for d in endpoint["deployedModels"]] == ["d2"] and endpoint["trafficSplit"] == {"d2": 100}
    # a model without traffic leaves without a split; the last one leaves an empty endpoint
    status, _ = call(app, "POST", f"/v1/{PARENT}/endpoints/e1:undeployModel", {"deployedModelId": "d2"})
    assert status == 200
    assert "trafficSplit" not in call(app, "GET", f"/v1/{PARENT}/endpoints/e1")[1]


def test_the_cleanup_retires_a_model_from_a_shared_endpoint_through_the_real_adapter(tmp_path):
    """VertexTuningBackend + shared.cleanup against the strict server (HTTP, operations running)."""
    server = TuningServer(make_app(tmp_path / "state", operation_polls=2, port=0).config)
    seed(server.app, "m1", "e1", "d1")
    seed(server.app, "m2", "e1", "d2", shared=True)
    server.start_background()
    try:
        backend = VertexTuningBackend("p", "us-central1", base_url=server.url)
        target = RetirementTarget("job1", f"{PARENT}/models/m1@1", (f"{PARENT}/endpoints/e1",), datetime.now(UTC))
        outcome = retire_model(
            target,
            tuning=backend,
            managed_by="sftpilot",
            dry_run=False,
            sleep=lambda s: None,
            wait=OperationWait(polls=5, interval_seconds=0.0),
        )
    finally:
        server.shutdown()
    assert outcome.status is TargetStatus.RETIRED, outcome
    assert "m1" not in server.app.store.models
    endpoint = server.app.store.endpoints["e1"]  # kept: it still serves m2, with all the traffic
    assert endpoint.traffic == {"d2": 100}
