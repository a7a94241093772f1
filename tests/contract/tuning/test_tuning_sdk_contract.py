"""The local tuning server through the real google-genai client: every call sftpilot makes.

If one of these fails, google-genai (or sftpilot's adapter) would not work against the
server the way it works against Vertex AI.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors, types

from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403 - the tuning-server fixtures
from deploy.local.tuning_server.pytest_fixtures import TRAINED_JOB_LABELS, create_when_quota_frees, wait_until
from deploy.local.tuning_server.testing import FORMAT_ANSWER, TEST_LOCATION, TEST_PROJECT, held_out_prompts

PARENT = f"projects/{TEST_PROJECT}/locations/{TEST_LOCATION}"


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "parts": [{"text": prompt}]}]


def raw_request(server, method: str, path: str, body: dict | None = None, token: str | None = "t"):
    """(status, parsed JSON) of a plain HTTP call, for what the SDK cannot express."""
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def start_long_job(client, datasets, **config):
    """A job that would train for minutes (400 examples x 50 epochs) unless cancelled."""
    return create_when_quota_frees(
        lambda: client.tunings.tune(
            base_model="gemini-2.5-flash",
            training_dataset=types.TuningDataset(gcs_uri=str(datasets.long_train)),
            config=types.CreateTuningJobConfig(epoch_count=50, **config),
        )
    )


def cancel_and_wait(client, name: str) -> types.TuningJob:
    try:
        client.tunings.cancel(name=name)
    except errors.ClientError as error:  # already ended
        assert error.status == "FAILED_PRECONDITION"
    return wait_until(lambda: client.tunings.get(name=name), lambda j: j.has_ended, timeout=120)


# --- create / get / cancel ------------------------------------------------------------------------


def test_tune_echoes_the_job_and_cancel_of_a_pending_job_ends_it(genai_client, tuning_datasets, tuning_controls):
    run = uuid.uuid4().hex[:8]
    job = start_long_job(
        genai_client,
        tuning_datasets,
        tuned_model_display_name="contract-echo",
        description="echo test",
        validation_dataset=types.TuningValidationDataset(gcs_uri=str(tuning_datasets.format_validation)),
        adapter_size=types.AdapterSize.ADAPTER_SIZE_FOUR,
        learning_rate_multiplier=0.5,
        export_last_checkpoint_only=True,
        labels={"run": run, "managed-by": "sftpilot-tests"},
        encryption_spec=types.EncryptionSpec(kms_key_name=f"{PARENT}/keyRings/r/cryptoKeys/k"),
        http_options=types.HttpOptions(extra_body={"serviceAccount": "tuner@p.iam.gserviceaccount.com"}),
    )
    try:
        assert job.name.startswith(f"{PARENT}/tuningJobs/")
        assert job.state == types.JobState.JOB_STATE_PENDING
        assert job.create_time is not None and job.update_time is not None
        assert job.base_model == "gemini-2.5-flash"
        assert job.tuned_model_display_name == "contract-echo"
        assert job.description == "echo test"
        spec = job.supervised_tuning_spec
        assert spec.training_dataset_uri == str(tuning_datasets.long_train)
        assert spec.validation_dataset_uri == str(tuning_datasets.format_validation)
        assert spec.hyper_parameters.epoch_count == 50
        assert spec.hyper_parameters.adapter_size == types.AdapterSize.ADAPTER_SIZE_FOUR
        assert spec.hyper_parameters.learning_rate_multiplier == 0.5
        assert spec.export_last_checkpoint_only is True
        assert job.labels == {"run": run, "managed-by": "sftpilot-tests"}
        # the SDK sends encryptionSpec's inner key snake_case; the server answers camelCase
        assert job.encryption_spec.kms_key_name == f"{PARENT}/keyRings/r/cryptoKeys/k"
        assert job.service_account == "tuner@p.iam.gserviceaccount.com"
        [create] = tuning_controls.requests("POST", "/tuningJobs")[-1:]
        assert create["body"]["encryptionSpec"] == {"kms_key_name": f"{PARENT}/keyRings/r/cryptoKeys/k"}

        fetched = genai_client.tunings.get(name=job.name)
        assert fetched.name == job.name
        assert fetched.labels == job.labels
    finally:
        ended = cancel_and_wait(genai_client, job.name)
    assert ended.state == types.JobState.JOB_STATE_CANCELLED
    assert ended.error.code == 1
    assert ended.end_time is not None and ended.end_time >= ended.create_time
    assert ended.tuned_model is None


def test_quota_is_enforced_and_cancel_stops_a_running_worker(genai_client, tuning_datasets, tuning_controls):
    job = start_long_job(genai_client, tuning_datasets, learning_rate_multiplier=1.0)
    try:
        running = wait_until(
            lambda: genai_client.tunings.get(name=job.name),
            lambda j: j.tuning_job_metadata is not None and (j.tuning_job_metadata.completed_step_count or 0) >= 2,
            timeout=120,
        )
        assert running.state == types.JobState.JOB_STATE_RUNNING
        assert running.start_time is not None

        with pytest.raises(errors.ClientError) as refused:
            genai_client.tunings.tune(
                base_model="gemini-2.5-flash",
                training_dataset=types.TuningDataset(gcs_uri=str(tuning_datasets.format_train)),
            )
        assert refused.value.code == 429
        assert refused.value.status == "RESOURCE_EXHAUSTED"

        genai_client.tunings.cancel(name=job.name)
        assert genai_client.tunings.get(name=job.name).state in {
            types.JobState.JOB_STATE_CANCELLING,
            types.JobState.JOB_STATE_CANCELLED,
        }
    finally:
        ended = cancel_and_wait(genai_client, job.name)
    assert ended.state == types.JobState.JOB_STATE_CANCELLED
    # stopped mid-training: 400 examples x 50 epochs is 5000 steps
    assert 2 <= ended.tuning_job_metadata.completed_step_count < 5000
    assert ended.tuned_model is None


def test_cancel_of_an_ended_job_is_a_failed_precondition(genai_client, trained_format_job):
    with pytest.raises(errors.ClientError) as raised:
        genai_client.tunings.cancel(name=trained_format_job.name)
    assert (raised.value.code, raised.value.status) == (400, "FAILED_PRECONDITION")


def test_unknown_job_is_not_found(genai_client):
    with pytest.raises(errors.ClientError) as raised:
        genai_client.tunings.get(name=f"{PARENT}/tuningJobs/123")
    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as raised:
        genai_client.tunings.cancel(name="tuningJobs/123")
    assert raised.value.code == 404


@pytest.mark.parametrize(
    ("base_model", "config", "fragment"),
    [
        ("text-bison@002", {}, "not supported"),
        ("gemini-2.5-flash", {"labels": {"Team": "ml"}}, "Label key"),
        ("gemini-2.5-flash", {"epoch_count": 0}, "epochCount"),
        ("gemini-2.5-flash", {"learning_rate_multiplier": -1.0}, "learningRateMultiplier"),
    ],
)
def test_invalid_create_requests_are_invalid_argument(genai_client, tuning_datasets, base_model, config, fragment):
    with pytest.raises(errors.ClientError) as raised:
        genai_client.tunings.tune(
            base_model=base_model,
            training_dataset=types.TuningDataset(gcs_uri=str(tuning_datasets.format_train)),
            config=types.CreateTuningJobConfig(**config),
        )
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert fragment in raised.value.message


def test_another_project_is_permission_denied_and_no_token_is_unauthenticated(tuning_server):
    other = genai.Client(
        vertexai=True,
        project="someone-else",
        location=TEST_LOCATION,
        credentials=google.oauth2.credentials.Credentials(token="t"),
        http_options=types.HttpOptions(base_url=tuning_server.url, api_version="v1"),
    )
    with pytest.raises(errors.ClientError) as raised:
        other.tunings.get(name="tuningJobs/1")
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")

    status, body = raw_request(tuning_server, "GET", f"/v1/{PARENT}/tuningJobs", token=None)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"


# --- list ---------------------------------------------------------------------------------------


def test_list_pages_lazily_and_filters_by_label_and_state(genai_client, tuning_datasets, tuning_controls):
    run = uuid.uuid4().hex[:8]
    names = []
    for index in range(3):
        job = start_long_job(genai_client, tuning_datasets, labels={"run": run, "index": str(index)})
        names.append(job.name)
        cancel_and_wait(genai_client, job.name)

    pager = genai_client.tunings.list(config=types.ListTuningJobsConfig(page_size=1, filter=f'labels.run="{run}"'))
    assert len(pager.page) == 1
    listed = [job.name for job in pager]
    assert sorted(listed) == sorted(names)
    assert listed == list(reversed(names))  # newest first, like Vertex
    pages = [r for r in tuning_controls.requests("GET") if r["path"].endswith("/tuningJobs")]
    assert sum("pageToken=" in r["query"] for r in pages) == 2

    one = list(genai_client.tunings.list(config={"filter": f'labels.run="{run}" AND labels.index="1"'}))
    assert [job.name for job in one] == [names[1]]
    cancelled = list(genai_client.tunings.list(config={"filter": f"labels.run={run} AND state=JOB_STATE_CANCELLED"}))
    assert len(cancelled) == 3
    assert list(genai_client.tunings.list(config={"filter": f'labels.run="{run}" AND state="JOB_STATE_RUNNING"'})) == []
    assert list(genai_client.tunings.list(config={"filter": 'labels.run="no-such-run"'})) == []

    with pytest.raises(errors.ClientError) as raised:
        genai_client.tunings.list(config={"filter": f'labels.run="{run}" OR labels.index="1"'})
    assert raised.value.code == 400


# --- a trained job ------------------------------------------------------------------------------


def test_a_trained_job_is_vertex_shaped(trained_format_job):
    job = trained_format_job
    assert job.has_succeeded
    assert job.create_time <= job.start_time <= job.end_time <= job.update_time
    assert job.labels == TRAINED_JOB_LABELS
    assert job.tuned_model.model.startswith(f"{PARENT}/models/") and job.tuned_model.model.endswith("@1")
    assert job.tuned_model.endpoint.startswith(f"{PARENT}/endpoints/")
    checkpoints = job.tuned_model.checkpoints
    assert [(c.checkpoint_id, c.epoch, c.step) for c in checkpoints] == [("1", 1, 6), ("2", 2, 12), ("3", 3, 18)]
    assert len({c.endpoint for c in checkpoints}) == 3  # every checkpoint has its own endpoint
    assert checkpoints[-1].endpoint == job.tuned_model.endpoint
    stats = job.tuning_data_stats.supervised_tuning_data_stats
    assert stats.tuning_dataset_example_count == 24
    assert stats.tuning_step_count == 18
    assert stats.total_truncated_example_count == 0
    assert stats.total_billable_token_count > 3 * stats.tuning_dataset_example_count
    assert job.tuning_job_metadata.completed_epoch_count == 3
    assert job.tuning_job_metadata.completed_step_count == 18


def test_the_raw_job_exposes_per_step_training_metrics(trained_format_job, tuning_server):
    status, raw = raw_request(tuning_server, "GET", f"/v1/{trained_format_job.name}")
    assert status == 200
    metrics = raw["trainingMetrics"]
    steps = metrics["steps"]
    assert metrics["totalStepCount"] == "18"
    assert [entry["step"] for entry in steps] == list(range(1, 19))
    assert all({"train_total_loss", "train_fraction_of_correct_next_step_preds", "epoch"} <= set(e) for e in steps)
    evaluated = [entry["step"] for entry in steps if "eval_total_loss" in entry]
    assert evaluated == [6, 12, 18]  # the validation set is scored at the end of every epoch
    assert steps[-1]["train_total_loss"] < steps[0]["train_total_loss"]  # it learned
    assert metrics["latest"] == steps[-1]


def test_tuned_endpoints_serve_the_taught_format_and_the_base_model_does_not(genai_client, trained_format_job):
    greedy = types.GenerateContentConfig(
        temperature=0, max_output_tokens=16, thinking_config=types.ThinkingConfig(thinking_budget=0)
    )
    for prompt in held_out_prompts(2):
        tuned = genai_client.models.generate_content(
            model=trained_format_job.tuned_model.endpoint, contents=ask(prompt), config=greedy
        )
        assert tuned.text == FORMAT_ANSWER
        assert tuned.candidates[0].finish_reason == types.FinishReason.STOP
        assert tuned.usage_metadata.prompt_token_count > 0
        assert tuned.usage_metadata.candidates_token_count > 0
        base = genai_client.models.generate_content(model="gemini-2.5-flash", contents=ask(prompt), config=greedy)
        assert not (base.text or "").startswith("ACME")

    by_model = genai_client.models.generate_content(
        model=trained_format_job.tuned_model.model, contents=ask(held_out_prompts(1)[0]), config=greedy
    )
    assert by_model.text == FORMAT_ANSWER
    streamed = "".join(
        chunk.text or ""
        for chunk in genai_client.models.generate_content_stream(
            model=trained_format_job.tuned_model.endpoint, contents=ask(held_out_prompts(1)[0]), config=greedy
        )
    )
    assert streamed == FORMAT_ANSWER


def test_sampling_settings_are_honoured(genai_client, trained_format_job):
    endpoint = trained_format_job.tuned_model.endpoint
    short = genai_client.models.generate_content(
        model=endpoint, contents=ask("banana?"), config=types.GenerateContentConfig(temperature=0, max_output_tokens=3)
    )
    assert short.usage_metadata.candidates_token_count == 3
    assert short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    sampled = [
        genai_client.models.generate_content(
            model="gemini-2.5-flash",
            contents=ask("banana?"),
            config=types.GenerateContentConfig(temperature=1.5, top_p=1.0, top_k=200, seed=seed, max_output_tokens=8),
        ).text
        for seed in (1, 2, 1)
    ]
    assert sampled[0] == sampled[2]  # same seed, same sample
    assert sampled[0] != sampled[1]

    with pytest.raises(errors.ClientError) as raised:
        genai_client.models.generate_content(
            model=endpoint, contents=ask("x"), config=types.GenerateContentConfig(temperature=-1)
        )
    assert raised.value.code == 400


def test_models_get_and_deletion_preconditions(genai_client, trained_format_job):
    model = genai_client.models.get(model=trained_format_job.tuned_model.model)
    assert model.labels.items() >= TRAINED_JOB_LABELS.items()
    assert model.tuned_model_info.base_model == "gemini-2-5-flash"
    assert model.version == "1"
    checkpoint_endpoints = {c.endpoint for c in trained_format_job.tuned_model.checkpoints}
    assert {e.name for e in model.endpoints} == checkpoint_endpoints
    assert all(e.deployed_model_id for e in model.endpoints)

    unversioned = trained_format_job.tuned_model.model.split("@", 1)[0]
    with pytest.raises(errors.ClientError) as raised:
        genai_client.models.delete(model=unversioned)
    assert (raised.value.code, raised.value.status) == (400, "FAILED_PRECONDITION")
    # models.delete takes models/{model} without a version (the server's default refuses one)
    with pytest.raises(errors.ClientError) as raised:
        genai_client.models.delete(model=trained_format_job.tuned_model.model)
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    with pytest.raises(errors.ClientError) as raised:
        genai_client._api_client.request("delete", trained_format_job.tuned_model.endpoint, {})
    assert (raised.value.code, raised.value.status) == (400, "FAILED_PRECONDITION")
    with pytest.raises(errors.ClientError) as raised:
        genai_client.models.get(model=f"{PARENT}/models/404")
    assert raised.value.code == 404


# --- spellings and versions ---------------------------------------------------------------------


def test_v1beta1_paths_work(tuning_server, trained_format_job):
    beta = genai.Client(
        vertexai=True,
        project=TEST_PROJECT,
        location=TEST_LOCATION,
        credentials=google.oauth2.credentials.Credentials(token="t"),
        http_options=types.HttpOptions(base_url=tuning_server.url),  # the SDK's default: v1beta1
    )
    assert beta.tunings.get(name=trained_format_job.name).has_succeeded
    assert beta._api_client._http_options.api_version == "v1beta1"


def test_snake_case_request_bodies_are_accepted(tuning_server, genai_client, tuning_datasets):
    body = {
        "base_model": "gemini-2.5-flash",
        "supervised_tuning_spec": {
            "training_dataset_uri": str(tuning_datasets.long_train),
            "hyper_parameters": {"epoch_count": "2", "adapter_size": "ADAPTER_SIZE_ONE"},
            "export_last_checkpoint_only": True,
        },
        "tuned_model_display_name": "snake",
        "labels": {"snake_key": "snake_value"},
    }
    created = create_when_quota_frees(
        lambda: _post_or_raise(tuning_server, f"/v1/{PARENT}/tuningJobs", body), timeout=300
    )
    try:
        assert created["tunedModelDisplayName"] == "snake"
        assert created["supervisedTuningSpec"]["hyperParameters"] == {
            "epochCount": "2",
            "adapterSize": "ADAPTER_SIZE_ONE",
        }
        assert created["labels"] == {"snake_key": "snake_value"}  # label keys are data, never renamed
    finally:
        cancel_and_wait(genai_client, created["name"])

    status, answer = raw_request(
        tuning_server,
        "POST",
        f"/v1/{PARENT}/publishers/google/models/gemini-2.5-flash:generateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generation_config": {"max_output_tokens": 2, "temperature": 0, "thinking_config": {"thinking_budget": 0}},
        },
    )
    assert status == 200
    assert answer["usageMetadata"]["candidatesTokenCount"] == 2


def _post_or_raise(server, path: str, body: dict) -> dict:
    status, answer = raw_request(server, "POST", path, body)
    if status != 200:
        raise errors.ClientError(status, answer)
    return answer


# --- failures -------------------------------------------------------------------------------------


def test_unreadable_and_unparsable_datasets_fail_the_job_with_a_clear_error(genai_client, tuning_datasets, tmp_path):
    missing = tmp_path / "missing.jsonl"
    job = create_when_quota_frees(
        lambda: genai_client.tunings.tune(
            base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=str(missing))
        )
    )
    failed = wait_until(lambda: genai_client.tunings.get(name=job.name), lambda j: j.has_ended)
    assert failed.state == types.JobState.JOB_STATE_FAILED
    assert failed.error.code == 3
    assert str(missing) in failed.error.message and "no such file" in failed.error.message

    job = create_when_quota_frees(
        lambda: genai_client.tunings.tune(
            base_model="gemini-2.5-flash",
            training_dataset=types.TuningDataset(gcs_uri=str(tuning_datasets.broken)),
            config=types.CreateTuningJobConfig(epoch_count=1),
        )
    )
    failed = wait_until(lambda: genai_client.tunings.get(name=job.name), lambda j: j.has_ended, timeout=120)
    assert failed.state == types.JobState.JOB_STATE_FAILED
    assert failed.error.code == 3
    assert "line 2" in failed.error.message
    assert failed.tuned_model is None
