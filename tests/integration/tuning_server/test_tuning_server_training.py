"""Real training through the local tuning server: the format is learned, restarts are survived,
gs:// datasets are read from fake-gcs-server, and SmolLM2 learns the support-bot style."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403 - the tuning-server fixtures
from deploy.local.tuning_server.pytest_fixtures import wait_until
from deploy.local.tuning_server.testing import (
    FORMAT_ANSWER,
    TEST_LOCATION,
    TEST_PROJECT,
    TINY_MODEL_MAP,
    TINY_TEACHING_MULTIPLIER,
    held_out_prompts,
    start_tuning_server,
)
from shared.adapters.vertex import VertexTuningBackend
from shared.ports import GenerationRequest, TuningJobSpec
from shared.states import TuningState

REPO_ROOT = Path(__file__).resolve().parents[3]
SUPPORT_BOT = REPO_ROOT / "examples" / "datasets" / "support-bot"


def ask(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def backend_for(url: str) -> VertexTuningBackend:
    return VertexTuningBackend(TEST_PROJECT, TEST_LOCATION, base_url=url, retry_initial_delay=0.05)


def greedy(prompt: str, tokens: int = 16) -> GenerationRequest:
    return GenerationRequest(contents=[ask(prompt)], temperature=0.0, max_output_tokens=tokens)


def test_the_tuned_model_follows_the_taught_format_on_unseen_prompts_and_the_base_does_not(
    tuning_server, trained_format_job
):
    backend = backend_for(tuning_server.url)
    prompts = held_out_prompts(4, seed=23)
    tuned = [backend.generate(trained_format_job.tuned_model.endpoint, greedy(p)).text for p in prompts]
    base = [backend.generate("gemini-2.5-flash", greedy(p)).text for p in prompts]
    assert tuned == [FORMAT_ANSWER] * len(prompts)
    assert not any(answer.startswith("ACME") for answer in base)


def _worker_gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status  # exited, waiting to be reaped by init


def test_a_server_crash_mid_training_restarts_the_job_and_keeps_models_and_endpoints(tmp_path, tuning_datasets):
    state_dir = tmp_path / "state"
    server = start_tuning_server(state_dir, model_map=TINY_MODEL_MAP, project=TEST_PROJECT, location=TEST_LOCATION)
    try:
        backend = backend_for(server.url)
        job = backend.create_job(
            TuningJobSpec(
                base_model="gemini-2.5-flash",
                training_dataset_uri=str(tuning_datasets.format_train),
                display_name="survives-restarts",
                epochs=3,
                adapter_size=8,
                learning_rate_multiplier=TINY_TEACHING_MULTIPLIER,
                export_last_checkpoint_only=True,
                labels={"managed-by": "sftpilot-tests"},
            )
        )
        job_file = state_dir / "jobs" / job.name.rsplit("/", 1)[-1] / "job.json"
        # crash while a training worker runs (it needs seconds just to load torch)
        worker_pid = wait_until(lambda: json.loads(job_file.read_text())["worker_pid"], bool)
        server.kill()  # SIGKILL: no chance to clean up
    finally:
        server.kill()

    assert json.loads(job_file.read_text())["state"] == "JOB_STATE_RUNNING"
    wait_until(lambda: _worker_gone(worker_pid), bool, timeout=60)  # the worker died with its server

    server = start_tuning_server(state_dir, model_map=TINY_MODEL_MAP, project=TEST_PROJECT, location=TEST_LOCATION)
    try:
        backend = backend_for(server.url)
        restarted = backend.get_job(job.name)
        assert restarted.state is TuningState.RUNNING  # never backwards, trained again from scratch
        done = wait_until(lambda: backend.get_job(job.name), lambda j: j.has_ended, timeout=300)
        assert done.state is TuningState.SUCCEEDED, done.error_message
        assert done.metrics["completed_steps"] == done.metrics["total_steps"] == 18
        assert json.loads(job_file.read_text())["attempt"] == 2
        request = json.loads((job_file.parent / "attempt-2" / "request.json").read_text())
        # what the worker was asked to do: the job's hyper-parameters (adapter size 8 = LoRA rank 8)
        assert (request["epochs"], request["lora_rank"], request["learning_rate_multiplier"]) == (
            3,
            8,
            TINY_TEACHING_MULTIPLIER,
        )
    finally:
        server.stop()

    server = start_tuning_server(state_dir, model_map=TINY_MODEL_MAP, project=TEST_PROJECT, location=TEST_LOCATION)
    try:
        backend = backend_for(server.url)
        again = backend.get_job(job.name)
        assert (again.state, again.tuned_model, again.endpoint) == (
            TuningState.SUCCEEDED,
            done.tuned_model,
            done.endpoint,
        )
        model = backend.get_model(done.tuned_model)
        assert [d.endpoint for d in model.deployments] == [done.endpoint]
        assert model.labels["managed-by"] == "sftpilot-tests"
        assert backend.generate(done.endpoint, greedy("banana ocean?")).text == FORMAT_ANSWER
    finally:
        server.stop()


@pytest.mark.integration
def test_gs_datasets_are_read_through_the_storage_emulator(emulators, gcs_bucket, tmp_path, tuning_datasets):
    from google.cloud import storage

    storage.Client(project=emulators.project).bucket(gcs_bucket).blob("datasets/format/v1.jsonl").upload_from_filename(
        str(tuning_datasets.format_train)
    )
    server = start_tuning_server(
        tmp_path / "state",
        model_map=TINY_MODEL_MAP,
        project=TEST_PROJECT,
        location=TEST_LOCATION,
        env={"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]},
    )
    try:
        backend = backend_for(server.url)
        missing = backend.create_job(
            TuningJobSpec(
                base_model="gemini-2.5-flash",
                training_dataset_uri=f"gs://{gcs_bucket}/datasets/format/missing.jsonl",
                display_name="missing",
            )
        )
        failed = wait_until(lambda: backend.get_job(missing.name), lambda j: j.has_ended)
        assert failed.state is TuningState.FAILED
        assert f"gs://{gcs_bucket}/datasets/format/missing.jsonl" in failed.error_message
        assert "not found" in failed.error_message

        job = backend.create_job(
            TuningJobSpec(
                base_model="gemini-2.5-flash",
                training_dataset_uri=f"gs://{gcs_bucket}/datasets/format/v1.jsonl",
                display_name="from-gcs",
                epochs=50,
            )
        )
        # the worker only starts once the object was downloaded and every line parsed
        wait_until(lambda: _tuning_state(server, job.name), lambda state: state == "TUNING")
        copied = tmp_path / "state" / "jobs" / job.name.rsplit("/", 1)[-1] / "attempt-1" / "data" / "train.jsonl"
        assert copied.read_bytes() == tuning_datasets.format_train.read_bytes()
        backend.cancel_job(job.name)
        assert wait_until(lambda: backend.get_job(job.name), lambda j: j.has_ended).state is TuningState.CANCELLED
    finally:
        server.stop()


def _tuning_state(server, name: str) -> str:
    import urllib.request

    request = urllib.request.Request(f"{server.url}/v1/{name}", headers={"Authorization": "Bearer t"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()).get("tuningJobState", "").removeprefix("TUNING_JOB_STATE_")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_smollm2_learns_the_support_bot_style(tmp_path):
    """The default path: SmolLM2-135M-Instruct, real LoRA, a real dataset.

    About 2 minutes on an idle 2-core machine; much longer when other processes share the cores.
    """
    server = start_tuning_server(tmp_path / "state", project=TEST_PROJECT, location=TEST_LOCATION)
    try:
        backend = backend_for(server.url)
        job = backend.create_job(
            TuningJobSpec(
                base_model="gemini-2.5-flash",
                training_dataset_uri=str(SUPPORT_BOT / "v1.jsonl"),
                validation_dataset_uri=str(SUPPORT_BOT / "v1.validation.jsonl"),
                display_name="support-bot-v1",
                epochs=3,
                labels={"run": uuid.uuid4().hex[:8]},
            )
        )
        started = time.monotonic()
        done = wait_until(lambda: backend.get_job(job.name), lambda j: j.has_ended, timeout=3000)
        assert done.state is TuningState.SUCCEEDED, done.error_message
        assert done.metrics["latest"]["eval_total_loss"] > 0
        print(f"SmolLM2 job finished in {time.monotonic() - started:.0f} s")

        prompts = [
            json.loads(line)["contents"][0]["parts"][0]["text"]
            for line in (SUPPORT_BOT / "v1.validation.jsonl").read_text().splitlines()[:4]
        ]
        tuned = [backend.generate(done.endpoint, greedy(p, tokens=24)).text for p in prompts]
        base = [backend.generate("gemini-2.5-flash", greedy(p, tokens=24)).text for p in prompts]
        print("tuned:", tuned, "\nbase:", base)
        assert sum(answer.startswith("Hi there!") for answer in tuned) >= 3
        assert sum("Acme Support" in answer for answer in tuned) >= 3  # the sign-off, on unseen questions
        assert not any(answer.startswith("Hi there!") or "Acme Support" in answer for answer in base)
    finally:
        server.stop()
