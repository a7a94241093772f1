"""VertexTuningBackend against a scripted stand-in for the google-genai client.

What is checked here is the adapter's own logic: request mapping, the retry policy (create is
never retried), error mapping, raw parsing and label filtering. The wire-level behaviour with
the real SDK is in tests/contract/tuning/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from shared.adapters.vertex import (
    VertexTuningBackend,
    job_from_wire,
    label_filter,
    map_backend_error,
    parse_time,
)
from shared.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    TransientBackendError,
    is_retryable,
)
from shared.ports import GenerationRequest, TuningJobSpec
from shared.states import TuningState

JOB_NAME = "projects/p/locations/us-central1/tuningJobs/42"


def api_error(code: int, status: str, message: str = "boom") -> genai_errors.APIError:
    body = {"error": {"code": code, "message": message, "status": status}}
    if code >= 500:
        return genai_errors.ServerError(code, body)
    return genai_errors.ClientError(code, body)


@dataclass
class RawAnswer:
    body: str


@dataclass
class Script:
    """Answers (or exceptions) handed out in order; records every call."""

    answers: list[Any] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def next(self, *call: Any) -> Any:
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeApiClient:
    def __init__(self, script: Script) -> None:
        self.script = script

    def request(self, method: str, path: str, body: dict[str, Any]) -> RawAnswer:
        answer = self.script.next(method, path, body)
        return RawAnswer(json.dumps(answer))


class FakeTunings:
    def __init__(self, script: Script) -> None:
        self.script = script

    def tune(self, *, base_model, training_dataset, config):
        return self.script.next("tune", base_model, training_dataset, config)

    def list(self, *, config):
        return self.script.next("list", config)

    def get(self, *, name):
        return self.script.next("get", name)

    def cancel(self, *, name):
        return self.script.next("cancel", name)


class FakeModels:
    def __init__(self, script: Script) -> None:
        self.script = script

    def generate_content(self, *, model, contents, config):
        return self.script.next("generate_content", model, contents, config)

    def delete(self, *, model):
        return self.script.next("delete", model)


class FakeClient:
    def __init__(self) -> None:
        self.script = Script()
        self.tunings = FakeTunings(self.script)
        self.models = FakeModels(self.script)
        self._api_client = FakeApiClient(self.script)


@dataclass
class FakePager:
    page: list[types.TuningJob]
    config: dict[str, Any]


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def backend(client: FakeClient, sleeps: list[float]) -> VertexTuningBackend:
    return VertexTuningBackend(
        "p", "us-central1", client=client, retry_attempts=4, retry_initial_delay=0.5, sleep=sleeps.append
    )


def sdk_job(name: str, state: str = "JOB_STATE_RUNNING", labels: dict[str, str] | None = None) -> types.TuningJob:
    return types.TuningJob(name=name, state=state, base_model="gemini-2.5-flash", labels=labels)


# --- create -------------------------------------------------------------------------------------


def test_create_maps_every_spec_field_to_the_sdk_call(backend, client):
    client.script.answers = [sdk_job(JOB_NAME, "JOB_STATE_PENDING", {"sftpilot-key": "k"})]
    spec = TuningJobSpec(
        base_model="gemini-2.5-flash",
        training_dataset_uri="gs://b/datasets/faq/v1.jsonl",
        display_name="faq-v1",
        validation_dataset_uri="gs://b/datasets/faq/v1.validation.jsonl",
        description="weekly retune",
        epochs=3,
        adapter_size=4,
        learning_rate_multiplier=0.5,
        export_last_checkpoint_only=True,
        labels={"sftpilot-key": "k", "managed-by": "sftpilot"},
        kms_key_name="projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
        service_account="tuner@p.iam.gserviceaccount.com",
    )

    job = backend.create_job(spec)

    (_, base_model, dataset, config) = client.script.calls[0]
    assert base_model == "gemini-2.5-flash"
    assert dataset.gcs_uri == "gs://b/datasets/faq/v1.jsonl"
    assert config.tuned_model_display_name == "faq-v1"
    assert config.description == "weekly retune"
    assert config.validation_dataset.gcs_uri == "gs://b/datasets/faq/v1.validation.jsonl"
    assert config.epoch_count == 3
    assert config.adapter_size == types.AdapterSize.ADAPTER_SIZE_FOUR
    assert config.learning_rate_multiplier == 0.5
    assert config.export_last_checkpoint_only is True
    assert config.labels == {"sftpilot-key": "k", "managed-by": "sftpilot"}
    assert config.encryption_spec.kms_key_name == "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    assert config.http_options.extra_body == {"serviceAccount": "tuner@p.iam.gserviceaccount.com"}
    assert job.name == JOB_NAME
    assert job.state is TuningState.PENDING
    assert job.labels == {"sftpilot-key": "k"}


def test_create_leaves_optional_fields_unset(backend, client):
    client.script.answers = [sdk_job(JOB_NAME, "JOB_STATE_PENDING")]
    backend.create_job(
        TuningJobSpec(base_model="gemini-2.5-flash", training_dataset_uri="gs://b/t.jsonl", display_name="t")
    )
    config = client.script.calls[0][3]
    assert config.validation_dataset is None
    assert config.epoch_count is None
    assert config.adapter_size is None
    assert config.encryption_spec is None
    assert config.http_options is None
    assert config.labels is None


def test_create_rejects_an_adapter_size_vertex_does_not_have_without_calling(backend, client):
    spec = TuningJobSpec(
        base_model="gemini-2.5-flash", training_dataset_uri="gs://b/t.jsonl", display_name="t", adapter_size=3
    )
    with pytest.raises(InvalidArgumentError, match="adapter_size 3"):
        backend.create_job(spec)
    assert client.script.calls == []


@pytest.mark.parametrize(
    "failure",
    [api_error(503, "UNAVAILABLE"), api_error(429, "RESOURCE_EXHAUSTED"), httpx2.ReadTimeout("slow")],
)
def test_create_is_never_retried(backend, client, sleeps, failure):
    client.script.answers = [failure, sdk_job(JOB_NAME)]
    with pytest.raises((TransientBackendError, QuotaExceededError)):
        backend.create_job(
            TuningJobSpec(base_model="gemini-2.5-flash", training_dataset_uri="gs://b/t.jsonl", display_name="t")
        )
    assert len(client.script.calls) == 1
    assert sleeps == []


# --- retries ------------------------------------------------------------------------------------


def test_get_retries_transient_failures_with_backoff_then_succeeds(backend, client, sleeps):
    client.script.answers = [
        api_error(503, "UNAVAILABLE"),
        httpx2.ConnectError("refused"),
        {"name": JOB_NAME, "state": "JOB_STATE_RUNNING"},
    ]
    job = backend.get_job(JOB_NAME)
    assert job.state is TuningState.RUNNING
    assert [call[:2] for call in client.script.calls] == [("get", JOB_NAME)] * 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_get_gives_up_after_the_configured_attempts(backend, client, sleeps):
    client.script.answers = [api_error(500, "INTERNAL")] * 4
    with pytest.raises(TransientBackendError) as raised:
        backend.get_job(JOB_NAME)
    assert len(client.script.calls) == 4
    assert len(sleeps) == 3
    assert raised.value.http_code == 500
    assert raised.value.operation == "get"


def test_get_does_not_retry_not_found(backend, client, sleeps):
    client.script.answers = [api_error(404, "NOT_FOUND", "TuningJob not found")]
    with pytest.raises(NotFoundError, match="TuningJob not found"):
        backend.get_job(JOB_NAME)
    assert len(client.script.calls) == 1
    assert sleeps == []


def test_cancel_is_retried(backend, client, sleeps):
    client.script.answers = [api_error(503, "UNAVAILABLE"), None]
    backend.cancel_job(JOB_NAME)
    assert [call[0] for call in client.script.calls] == ["cancel", "cancel"]
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.delete_model("projects/p/locations/us-central1/models/7@1"),
        lambda b: b.delete_endpoint("endpoints/1"),
        lambda b: b.undeploy_model("endpoints/1", "11"),
        lambda b: b.get_operation("projects/p/locations/us-central1/operations/9"),
        lambda b: b.get_model("projects/p/locations/us-central1/models/7@1"),
        lambda b: b.get_endpoint("endpoints/1"),
        lambda b: b.generate("endpoints/1", GenerationRequest(contents=[])),
    ],
)
def test_smoke_test_and_cleanup_calls_are_sent_once_their_caller_retries(backend, client, sleeps, call):
    # One retry layer: shared.retry in the smoke test and the cleanup; never a second one here.
    client.script.answers = [api_error(503, "UNAVAILABLE"), {}]
    with pytest.raises(TransientBackendError):
        call(backend)
    assert len(client.script.calls) == 1
    assert sleeps == []


def test_delete_model_sends_the_unversioned_name_and_returns_the_running_operation(backend, client):
    operation = "projects/p/locations/us-central1/operations/5"
    client.script.answers = [{"name": operation, "done": False}]
    assert backend.delete_model("projects/p/locations/us-central1/models/7@1") == operation
    assert client.script.calls[0][:2] == ("delete", "projects/p/locations/us-central1/models/7")


# --- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (429, "RESOURCE_EXHAUSTED", QuotaExceededError),
        (400, "INVALID_ARGUMENT", InvalidArgumentError),
        (400, "FAILED_PRECONDITION", InvalidArgumentError),
        (401, "UNAUTHENTICATED", PermissionDeniedError),
        (403, "PERMISSION_DENIED", PermissionDeniedError),
        (404, "NOT_FOUND", NotFoundError),
        (408, "DEADLINE_EXCEEDED", TransientBackendError),
        (500, "INTERNAL", TransientBackendError),
        (502, "Bad Gateway", TransientBackendError),
        (503, "UNAVAILABLE", TransientBackendError),
        (504, "DEADLINE_EXCEEDED", TransientBackendError),
    ],
)
def test_api_errors_map_to_our_classes(code, status, expected):
    mapped = map_backend_error("get", api_error(code, status, "why"))
    assert type(mapped) is expected
    assert mapped.http_code == code
    assert mapped.status == status
    assert mapped.message == "why"
    assert is_retryable(mapped) == (expected in (TransientBackendError, QuotaExceededError))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (httpx2.ConnectError("connection refused"), "UNAVAILABLE"),
        (httpx2.ReadTimeout("read timed out"), "DEADLINE_EXCEEDED"),
        (ConnectionResetError("reset"), "UNAVAILABLE"),
    ],
)
def test_transport_errors_are_transient(error, status):
    mapped = map_backend_error("list", error)
    assert isinstance(mapped, TransientBackendError)
    assert mapped.status == status
    assert mapped.http_code == 0


def test_unrelated_exceptions_are_not_swallowed(backend, client):
    client.script.answers = [KeyError("bug")]
    with pytest.raises(KeyError):
        backend.get_job(JOB_NAME)
    assert map_backend_error("get", KeyError("bug")) is None


# --- parsing ------------------------------------------------------------------------------------


def test_job_from_wire_reads_int64_strings_nanoseconds_checkpoints_errors_and_metrics():
    job = job_from_wire(
        {
            "name": JOB_NAME,
            "state": "job_state_succeeded",
            "baseModel": "gemini-2.5-flash",
            "tunedModelDisplayName": "faq",
            "createTime": "2025-06-01T10:00:00.123456789Z",
            "endTime": "2025-06-01T11:00:00+02:00",
            "tunedModel": {
                "model": "projects/p/locations/us-central1/models/456@1",
                "endpoint": "projects/p/locations/us-central1/endpoints/123",
                "checkpoints": [
                    {
                        "checkpointId": "1",
                        "epoch": "1",
                        "step": "5",
                        "endpoint": "projects/p/locations/us-central1/endpoints/124",
                    },
                    {
                        "checkpointId": "2",
                        "epoch": "2",
                        "step": "10",
                        "endpoint": "projects/p/locations/us-central1/endpoints/123",
                    },
                ],
            },
            "tuningDataStats": {"supervisedTuningDataStats": {"tuningDatasetExampleCount": "100"}},
            "tuningJobMetadata": {"completedEpochCount": "2", "completedStepCount": "10"},
            "trainingMetrics": {"totalStepCount": "10", "latest": {"step": 10, "train_total_loss": 0.25}},
            "labels": {"sftpilot-key": "k"},
        }
    )
    assert job.state is TuningState.SUCCEEDED and job.has_ended
    assert job.create_time == datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert job.end_time == datetime(2025, 6, 1, 9, 0, 0, tzinfo=UTC)
    assert job.tuned_model == "projects/p/locations/us-central1/models/456@1"
    assert job.endpoint == "projects/p/locations/us-central1/endpoints/123"
    assert [(c.checkpoint_id, c.epoch, c.step) for c in job.checkpoints] == [("1", 1, 5), ("2", 2, 10)]
    assert job.checkpoints[0].endpoint.endswith("/endpoints/124")
    assert job.data_stats == {"supervisedTuningDataStats": {"tuningDatasetExampleCount": "100"}}
    assert job.metrics == {
        "completed_steps": 10,
        "completed_epochs": 2,
        "total_steps": 10,
        "latest": {"step": 10, "train_total_loss": 0.25},
    }


def test_failed_job_carries_the_rpc_error():
    job = job_from_wire({"name": JOB_NAME, "state": "JOB_STATE_FAILED", "error": {"code": 3, "message": "bad line 7"}})
    assert (job.error_code, job.error_message) == (3, "bad line 7")
    assert job.metrics is None
    assert job_from_wire({}).state is TuningState.UNSPECIFIED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-06-01T10:00:00Z", datetime(2025, 6, 1, 10, tzinfo=UTC)),
        ("2025-06-01T10:00:00.5Z", datetime(2025, 6, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_time(raw, expected):
    assert parse_time(raw) == expected


# --- list ---------------------------------------------------------------------------------------


def test_list_filters_by_label_on_the_server_and_again_client_side_and_pages_lazily(backend, client):
    first = FakePager(
        page=[
            sdk_job("projects/p/locations/l/tuningJobs/1", labels={"sftpilot-key": "abc"}),
            sdk_job("projects/p/locations/l/tuningJobs/2"),
        ],
        config={"page_size": 2, "page_token": "next"},
    )
    second = FakePager(
        page=[sdk_job("projects/p/locations/l/tuningJobs/3", labels={"sftpilot-key": "abc"})], config={"page_token": ""}
    )
    client.script.answers = [first, second]

    jobs = backend.list_jobs(labels={"sftpilot-key": "abc"}, page_size=2)
    assert client.script.calls == []  # nothing fetched before iteration
    assert next(jobs).name.endswith("/1")
    assert len(client.script.calls) == 1
    # job 2 lacks the label (a server ignoring the filter): skipped
    assert [job.name[-1] for job in jobs] == ["3"]

    configs = [call[1] for call in client.script.calls]
    assert [c.filter for c in configs] == ['labels.sftpilot-key="abc"'] * 2
    assert [c.page_token for c in configs] == [None, "next"]
    assert configs[0].page_size == 2


def test_list_retries_a_failed_page(backend, client, sleeps):
    client.script.answers = [api_error(503, "UNAVAILABLE"), FakePager(page=[sdk_job("n/1")], config={})]
    assert [job.name for job in backend.list_jobs()] == ["n/1"]
    assert client.script.calls[1][1].filter is None
    assert len(sleeps) == 1


def test_label_filter_quotes_values():
    assert label_filter({"b": 'x"y', "a": "1"}) == 'labels.a="1" AND labels.b="x\\"y"'


# --- generate -----------------------------------------------------------------------------------


def generate_response(parts: list[dict[str, Any]], reason: str = "STOP") -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": reason}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3},
        }
    )


def test_generate_sends_sampling_settings_and_thinking_budget_zero(backend, client):
    client.script.answers = [generate_response([{"text": "pondering", "thought": True}, {"text": "ANSWER: 4"}])]
    request = GenerationRequest(
        contents=[{"role": "user", "parts": [{"text": "2+2?"}]}],
        system_instruction="Be terse.",
        temperature=0.2,
        top_p=0.9,
        top_k=20,
        max_output_tokens=32,
        timeout_seconds=5,
    )
    result = backend.generate("endpoints/123", request)

    (_, model, contents, config) = client.script.calls[0]
    assert model == "projects/p/locations/us-central1/endpoints/123"
    assert contents == request.contents
    assert (config.temperature, config.top_p, config.top_k, config.max_output_tokens) == (0.2, 0.9, 20, 32)
    assert config.system_instruction == "Be terse."
    assert config.thinking_config.thinking_budget == 0
    assert config.http_options.timeout == 5000
    assert result.text == "ANSWER: 4"
    assert (result.finish_reason, result.prompt_token_count, result.output_token_count) == ("STOP", 7, 3)


def test_generate_omits_thinking_config_when_budget_is_none(backend, client):
    client.script.answers = [generate_response([{"text": "hi"}], reason="MAX_TOKENS")]
    result = backend.generate("gemini-2.5-flash", GenerationRequest(contents=[], thinking_budget=None))
    (_, model, _, config) = client.script.calls[0]
    assert model == "gemini-2.5-flash"
    assert config.thinking_config is None
    assert result.finish_reason == "MAX_TOKENS"


# --- models and endpoints -----------------------------------------------------------------------


def test_get_model_reads_labels_and_deployments(backend, client):
    client.script.answers = [
        {
            "name": "projects/p/locations/us-central1/models/456",
            "labels": {"managed-by": "sftpilot"},
            "deployedModels": [
                {"endpoint": "projects/p/locations/us-central1/endpoints/1", "deployedModelId": "11"},
                {"endpoint": "projects/p/locations/us-central1/endpoints/2", "deployedModelId": "22"},
            ],
            "createTime": "2025-06-01T10:00:00Z",
        }
    ]
    info = backend.get_model("projects/p/locations/us-central1/models/456@1")
    assert client.script.calls[0][:2] == ("get", "projects/p/locations/us-central1/models/456@1")
    assert info.labels == {"managed-by": "sftpilot"}
    assert [(d.endpoint[-1], d.deployed_model_id) for d in info.deployments] == [("1", "11"), ("2", "22")]
    assert info.create_time == datetime(2025, 6, 1, 10, tzinfo=UTC)


def test_undeploy_returns_its_operation_and_polling_reads_done(backend, client, sleeps):
    operation = "projects/p/locations/us-central1/operations/9"
    client.script.answers = [{"name": operation, "done": False}, {"name": operation}, {"name": operation, "done": True}]
    assert backend.undeploy_model("projects/p/locations/us-central1/endpoints/1", "11") == operation
    assert client.script.calls[0] == (
        "post",
        "projects/p/locations/us-central1/endpoints/1:undeployModel",
        {"deployedModelId": "11"},
    )
    assert backend.get_operation(operation) is False
    assert backend.get_operation(operation) is True
    assert [c[:2] for c in client.script.calls[1:]] == [("get", operation), ("get", operation)]
    assert sleeps == []


def test_undeploy_sends_the_traffic_split_in_the_same_request(backend, client):
    client.script.answers = [{"name": "projects/p/locations/l/operations/1", "done": True}]
    assert backend.undeploy_model("endpoints/1", "11", {"22": 70, "33": 30}) is None
    assert client.script.calls[0][2] == {"deployedModelId": "11", "trafficSplit": {"22": 70, "33": 30}}


def test_get_endpoint_reads_deployed_ids_and_traffic(backend, client):
    client.script.answers = [
        {
            "name": "projects/p/locations/us-central1/endpoints/1",
            "deployedModels": [{"id": "11"}, {"id": "22"}],
            "trafficSplit": {"11": 80, "22": "20"},
        }
    ]
    info = backend.get_endpoint("endpoints/1")
    assert info.deployed_model_ids == ("11", "22")
    assert info.traffic_split == {"11": 80, "22": 20}


def test_a_failed_operation_raises_its_mapped_error(backend, client):
    client.script.answers = [
        {"name": "projects/p/locations/l/operations/9", "done": True, "error": {"code": 9, "message": "still deployed"}}
    ]
    with pytest.raises(InvalidArgumentError, match="still deployed"):
        backend.delete_endpoint("endpoints/1")
    assert client.script.calls[0][:2] == ("delete", "projects/p/locations/us-central1/endpoints/1")


def test_undeploy_of_a_vanished_deployment_is_not_found(backend, client):
    client.script.answers = [api_error(404, "NOT_FOUND", "Deployed model 11 not found")]
    with pytest.raises(NotFoundError):
        backend.undeploy_model("projects/p/locations/us-central1/endpoints/1", "11")


# --- client construction -------------------------------------------------------------------------


def test_local_base_url_uses_a_fixed_token_and_v1():
    backend = VertexTuningBackend("p", "us-central1", base_url="http://127.0.0.1:9")
    api_client = backend.client._api_client
    assert api_client._http_options.base_url == "http://127.0.0.1:9"
    assert api_client._http_options.api_version == "v1"
    assert api_client._credentials.token == "local"
    assert (api_client.project, api_client.location) == ("p", "us-central1")


def test_project_and_location_are_required():
    with pytest.raises(InvalidArgumentError):
        VertexTuningBackend("", "us-central1")


def test_generate_sends_a_thinking_level_without_a_budget(backend, client):
    client.script.answers = [generate_response([{"text": "hi"}])]
    backend.generate("gemini-3-pro-preview", GenerationRequest(contents=[], thinking_budget=None, thinking_level="LOW"))
    (_, _, _, config) = client.script.calls[0]
    assert config.thinking_config.thinking_level.value == "LOW"
    assert config.thinking_config.thinking_budget is None


def test_job_from_wire_reads_the_quota_sub_state_and_the_root_base_of_a_continuous_tuning_job():
    job = job_from_wire(
        {
            "name": JOB_NAME,
            "state": "JOB_STATE_PENDING",
            "tuningJobState": "TUNING_JOB_STATE_WAITING_FOR_QUOTA",
            "preTunedModel": {"tunedModelName": "projects/p/locations/l/models/7", "baseModel": "gemini-2.5-pro"},
        }
    )
    assert (job.detail_state, job.base_model) == ("TUNING_JOB_STATE_WAITING_FOR_QUOTA", "gemini-2.5-pro")
    assert job_from_wire({"name": JOB_NAME, "state": "JOB_STATE_RUNNING"}).detail_state is None
