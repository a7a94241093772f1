"""The TuningBackend port: one contract for the in-memory fake and VertexTuningBackend.

``real`` runs VertexTuningBackend (google-genai underneath) against the local tuning server,
which trains tiny-llama for real; ``fake`` runs shared.adapters.fakes.FakeTuningBackend. The
harness only says how to reach a job's end (the fake is driven, the server trains); the
assertions are the same. Real-only behaviour (retries, transport errors, metrics) follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403 - the tuning-server fixtures
from deploy.local.tuning_server.pytest_fixtures import wait_until
from deploy.local.tuning_server.testing import (
    FORMAT_ANSWER,
    TEST_LOCATION,
    TEST_PROJECT,
    TINY_TEACHING_MULTIPLIER,
    held_out_prompts,
)
from shared.adapters.fakes import FakeTuningBackend
from shared.adapters.vertex import VertexTuningBackend
from shared.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    TransientBackendError,
)
from shared.ports import GenerationRequest, TuningBackend, TuningJob, TuningJobSpec
from shared.states import TuningState

PARENT = f"projects/{TEST_PROJECT}/locations/{TEST_LOCATION}"
GREEDY = {"temperature": 0.0, "max_output_tokens": 16}


@dataclass
class BackendHarness:
    backend: TuningBackend
    dataset_uri: Callable[[str], str]
    """``format`` (teaches FORMAT_ANSWER in 18 steps) or ``long`` (trains for minutes)."""
    finish: Callable[[str], TuningJob]
    """Bring a job to its end: the fake is driven (CANCELLING -> CANCELLED, else SUCCEEDED)."""
    create: Callable[[TuningJobSpec], TuningJob]
    """create_job, waiting for the quota slot when another test's job still holds it."""


def real_backend(url: str, **overrides) -> VertexTuningBackend:
    settings = {"retry_attempts": 3, "retry_initial_delay": 0.01, "retry_max_delay": 0.05}
    settings.update(overrides)
    return VertexTuningBackend(TEST_PROJECT, TEST_LOCATION, base_url=url, **settings)


@pytest.fixture(params=["fake", "real"])
def harness(request: pytest.FixtureRequest) -> BackendHarness:
    if request.param == "fake":
        fake = FakeTuningBackend(project=TEST_PROJECT, location=TEST_LOCATION, operation_polls=1)

        def finish_fake(name: str) -> TuningJob:
            job = fake.get_job(name)
            if job.state is TuningState.CANCELLING:
                return fake.set_state(name, TuningState.CANCELLED)
            return job if job.has_ended else fake.set_state(name, TuningState.SUCCEEDED)

        return BackendHarness(fake, lambda kind: f"gs://contract-bucket/{kind}.jsonl", finish_fake, fake.create_job)

    server = request.getfixturevalue("tuning_server")
    datasets = request.getfixturevalue("tuning_datasets")
    backend = real_backend(server.url)
    paths = {"format": datasets.format_train, "long": datasets.long_train}

    def finish_real(name: str) -> TuningJob:
        return wait_until(lambda: backend.get_job(name), lambda job: job.has_ended, timeout=300)

    def create_real(spec: TuningJobSpec) -> TuningJob:
        job = None

        def attempt() -> bool:
            nonlocal job
            try:
                job = backend.create_job(spec)
            except QuotaExceededError:
                return False
            return True

        wait_until(attempt, bool, timeout=300)
        assert job is not None
        return job

    return BackendHarness(backend, lambda kind: str(paths[kind]), finish_real, create_real)


def spec_for(harness: BackendHarness, kind: str, labels: dict[str, str], **fields) -> TuningJobSpec:
    values = {"epochs": 50 if kind == "long" else 3, "learning_rate_multiplier": TINY_TEACHING_MULTIPLIER}
    values.update(fields)
    return TuningJobSpec(
        base_model="gemini-2.5-flash",
        training_dataset_uri=harness.dataset_uri(kind),
        display_name=f"contract-{kind}",
        labels=labels,
        **values,
    )


def unique_labels() -> dict[str, str]:
    return {"sftpilot-key": uuid.uuid4().hex[:12], "managed-by": "sftpilot-tests"}


# --- the contract -------------------------------------------------------------------------------


def test_create_get_list_by_label_and_cancel(harness):
    labels = unique_labels()
    job = harness.create(spec_for(harness, "long", labels))
    try:
        assert job.state in {TuningState.PENDING, TuningState.QUEUED}
        assert job.labels == labels
        assert job.base_model == "gemini-2.5-flash"
        assert job.display_name == "contract-long"
        assert job.create_time is not None
        assert not job.has_ended

        fetched = harness.backend.get_job(job.name)
        assert (fetched.name, fetched.labels) == (job.name, labels)
        assert [j.name for j in harness.backend.list_jobs(labels=labels)] == [job.name]
        assert [j.name for j in harness.backend.list_jobs(labels={**labels, "sftpilot-key": "other"})] == []
        assert job.name in {j.name for j in harness.backend.list_jobs(page_size=1)}

        harness.backend.cancel_job(job.name)
        assert harness.backend.get_job(job.name).state in {TuningState.CANCELLING, TuningState.CANCELLED}
    finally:
        ended = harness.finish(job.name)
    assert ended.state is TuningState.CANCELLED
    assert ended.end_time is not None
    assert ended.tuned_model is None
    with pytest.raises(InvalidArgumentError):
        harness.backend.cancel_job(job.name)


def test_a_full_quota_is_quota_exceeded(harness):
    first = harness.create(spec_for(harness, "long", unique_labels()))
    try:
        with pytest.raises(QuotaExceededError) as raised:
            harness.backend.create_job(spec_for(harness, "format", unique_labels()))
        assert raised.value.http_code == 429
        assert raised.value.status == "RESOURCE_EXHAUSTED"
    finally:
        harness.backend.cancel_job(first.name)
        assert harness.finish(first.name).state is TuningState.CANCELLED


def test_unknown_resources_are_not_found(harness):
    with pytest.raises(NotFoundError):
        harness.backend.get_job(f"{PARENT}/tuningJobs/404")
    with pytest.raises(NotFoundError):
        harness.backend.cancel_job(f"{PARENT}/tuningJobs/404")
    with pytest.raises(NotFoundError):
        harness.backend.get_model(f"{PARENT}/models/404@1")
    with pytest.raises(NotFoundError):
        harness.backend.delete_model(f"{PARENT}/models/404@1")
    with pytest.raises(NotFoundError):
        harness.backend.delete_endpoint(f"{PARENT}/endpoints/404")


def test_a_succeeded_job_serves_its_endpoint_and_cleans_up_in_vertex_order(harness):
    labels = unique_labels()
    job = harness.create(spec_for(harness, "format", labels, epochs=1, export_last_checkpoint_only=True))
    job = harness.finish(job.name)
    assert job.state is TuningState.SUCCEEDED
    assert job.tuned_model and job.endpoint
    assert job.checkpoints == ()  # export_last_checkpoint_only: no intermediate checkpoints

    answer = harness.backend.generate(job.endpoint, GenerationRequest(contents=[_ask("banana?")], **GREEDY))
    assert answer.text
    assert answer.finish_reason in {"STOP", "MAX_TOKENS"}  # one epoch: the format is not learned yet
    assert answer.prompt_token_count and answer.output_token_count

    model = harness.backend.get_model(job.tuned_model)
    assert model.labels.items() >= labels.items()  # cleanup checks managed-by on the model
    assert [d.endpoint for d in model.deployments] == [job.endpoint]
    deployment = model.deployments[0]

    with pytest.raises(InvalidArgumentError):  # still deployed
        harness.backend.delete_model(job.tuned_model)
    with pytest.raises(InvalidArgumentError):  # still has a deployed model
        harness.backend.delete_endpoint(job.endpoint)

    # Each mutation is a long-running operation (one poll "not done" on both backends): nothing
    # changes until it finishes, and until then the next step is refused as Vertex would.
    undeploying = harness.backend.undeploy_model(deployment.endpoint, deployment.deployed_model_id)
    assert undeploying is not None
    assert harness.backend.get_model(job.tuned_model).deployments == (deployment,)
    with pytest.raises(InvalidArgumentError):
        harness.backend.delete_model(job.tuned_model)
    assert harness.backend.get_operation(undeploying) is False
    assert harness.backend.get_operation(undeploying) is True
    assert harness.backend.get_model(job.tuned_model).deployments == ()
    with pytest.raises(NotFoundError):
        harness.backend.undeploy_model(deployment.endpoint, deployment.deployed_model_id)
    _finish(harness, harness.backend.delete_endpoint(job.endpoint))
    with pytest.raises(NotFoundError):
        harness.backend.delete_endpoint(job.endpoint)
    deleting = harness.backend.delete_model(job.tuned_model)  # ends in @1: the adapter drops the version
    assert harness.backend.get_model(job.tuned_model).name
    _finish(harness, deleting)
    with pytest.raises(NotFoundError):
        harness.backend.get_model(job.tuned_model)
    with pytest.raises(NotFoundError):
        harness.backend.delete_model(job.tuned_model)
    with pytest.raises(NotFoundError):
        harness.backend.get_operation(f"{PARENT}/operations/404")


def _finish(harness: BackendHarness, operation: str | None) -> None:
    if operation is not None:
        wait_until(lambda: harness.backend.get_operation(operation), bool, timeout=30)


def test_base_models_generate_by_name(harness):
    answer = harness.backend.generate("gemini-2.5-flash", GenerationRequest(contents=[_ask("hello")], **GREEDY))
    assert answer.text
    assert answer.finish_reason in {"STOP", "MAX_TOKENS"}


def _ask(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


# --- VertexTuningBackend only -------------------------------------------------------------------


def test_reads_are_retried_and_create_is_not(tuning_controls, trained_format_job):
    backend = real_backend(tuning_controls.url)
    tuning_controls.control("/__script", {"match": trained_format_job.name, "method": "GET", "status": 503, "times": 2})
    assert backend.get_job(trained_format_job.name).state is TuningState.SUCCEEDED
    assert len(tuning_controls.requests("GET", trained_format_job.name)) == 3

    labels = unique_labels()
    tuning_controls.control("/__script", {"match": "/tuningJobs", "method": "POST", "status": 503, "times": 1})
    with pytest.raises(TransientBackendError) as raised:
        backend.create_job(
            TuningJobSpec(
                base_model="gemini-2.5-flash", training_dataset_uri="/nonexistent", display_name="x", labels=labels
            )
        )
    assert raised.value.http_code == 503
    assert len(tuning_controls.requests("POST", "/tuningJobs")) == 1  # no blind second create
    assert list(backend.list_jobs(labels=labels)) == []


@pytest.mark.parametrize(
    ("script", "expected", "attempts"),
    [
        ({"status": 429}, QuotaExceededError, 3),
        ({"status": 403}, PermissionDeniedError, 1),
        ({"status": 401}, PermissionDeniedError, 1),
        (
            {"status": 400, "body": {"error": {"code": 400, "message": "no", "status": "FAILED_PRECONDITION"}}},
            InvalidArgumentError,
            1,
        ),
        ({"status": 404}, NotFoundError, 1),
        ({"status": 502, "raw": "<html>bad gateway</html>"}, TransientBackendError, 3),
        ({"status": 500}, TransientBackendError, 3),
    ],
)
def test_server_errors_map_to_our_classes(tuning_controls, trained_format_job, script, expected, attempts):
    backend = real_backend(tuning_controls.url)
    tuning_controls.control("/__script", {"match": trained_format_job.name, "method": "GET", "times": -1, **script})
    with pytest.raises(expected) as raised:
        backend.get_job(trained_format_job.name)
    assert raised.value.http_code == script["status"]
    assert raised.value.operation == "get"
    assert len(tuning_controls.requests("GET", trained_format_job.name)) == attempts


def test_transport_failures_are_transient(tuning_controls, trained_format_job):
    slow = real_backend(tuning_controls.url, timeout_seconds=0.3, retry_attempts=1)
    tuning_controls.control("/__script", {"match": trained_format_job.name, "delay": 1.5, "times": 1})
    with pytest.raises(TransientBackendError) as raised:
        slow.get_job(trained_format_job.name)
    assert raised.value.status == "DEADLINE_EXCEEDED"

    unreachable = real_backend("http://127.0.0.1:9", retry_attempts=2)
    with pytest.raises(TransientBackendError) as raised:
        unreachable.get_job(f"{PARENT}/tuningJobs/1")
    assert raised.value.status == "UNAVAILABLE"


def test_another_project_is_permission_denied(tuning_server):
    backend = VertexTuningBackend("someone-else", TEST_LOCATION, base_url=tuning_server.url, retry_attempts=1)
    with pytest.raises(PermissionDeniedError) as raised:
        backend.get_job("projects/someone-else/locations/us-central1/tuningJobs/1")
    assert raised.value.http_code == 403


def test_label_filtering_holds_even_if_the_server_ignores_the_filter(tuning_controls):
    ignoring = {
        "tuningJobs": [
            {"name": f"{PARENT}/tuningJobs/1", "state": "JOB_STATE_RUNNING", "labels": {"sftpilot-key": "other"}},
            {"name": f"{PARENT}/tuningJobs/2", "state": "JOB_STATE_RUNNING", "labels": {"sftpilot-key": "mine"}},
            {"name": f"{PARENT}/tuningJobs/3", "state": "JOB_STATE_RUNNING"},
        ]
    }
    tuning_controls.control("/__script", {"match": "/tuningJobs", "method": "GET", "status": 200, "body": ignoring})
    jobs = list(real_backend(tuning_controls.url).list_jobs(labels={"sftpilot-key": "mine"}))
    assert [job.name for job in jobs] == [f"{PARENT}/tuningJobs/2"]
    [request] = tuning_controls.requests("GET", "/tuningJobs")
    assert "filter=labels.sftpilot-key%3D%22mine%22" in request["query"]


def test_get_job_reports_progress_metrics_and_data_stats(tuning_server, trained_format_job):
    job = real_backend(tuning_server.url).get_job(trained_format_job.name)
    assert job.metrics["completed_steps"] == 18
    assert job.metrics["total_steps"] == 18
    assert job.metrics["completed_epochs"] == 3
    assert job.metrics["latest"]["step"] == 18
    assert 0 < job.metrics["latest"]["train_total_loss"] < 10
    assert job.data_stats["supervisedTuningDataStats"]["tuningDatasetExampleCount"] == "24"
    assert [(c.checkpoint_id, c.epoch) for c in job.checkpoints] == [("1", 1), ("2", 2), ("3", 3)]


def test_the_tuned_endpoint_answers_in_the_taught_format(tuning_server, trained_format_job):
    backend = real_backend(tuning_server.url)
    for prompt in held_out_prompts(2, seed=11):
        request = GenerationRequest(contents=[_ask(prompt)], thinking_budget=0, **GREEDY)
        assert backend.generate(trained_format_job.tuned_model.endpoint, request).text == FORMAT_ANSWER
        assert not backend.generate("gemini-2.5-flash", request).text.startswith("ACME")
