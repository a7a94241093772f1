"""Continuous tuning through the real adapter and the real local tuning server: the request
carries ``preTunedModel {tunedModelName, checkpointId}`` (typed config: the checkpoint id
survives), and the child starts from the parent checkpoint's adapter, so it already answers in
the parent's taught format after one epoch at a learning rate too small to teach anything."""

from __future__ import annotations

import pytest

from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403 - the tuning-server fixtures
from deploy.local.tuning_server.pytest_fixtures import create_when_quota_frees, wait_until
from deploy.local.tuning_server.testing import FORMAT_ANSWER, TEST_LOCATION, TEST_PROJECT, held_out_prompts
from shared.adapters.vertex import VertexTuningBackend
from shared.ports import GenerationRequest, TuningJobSpec
from shared.states import TuningState

pytestmark = pytest.mark.integration


def greedy(prompt: str) -> GenerationRequest:
    return GenerationRequest(
        contents=[{"role": "user", "parts": [{"text": prompt}]}], temperature=0.0, max_output_tokens=16
    )


def test_a_continuous_job_starts_from_the_parent_checkpoint(tuning_controls, trained_format_job, tuning_datasets):
    backend = VertexTuningBackend(TEST_PROJECT, TEST_LOCATION, base_url=tuning_controls.url, retry_initial_delay=0.05)
    parent = trained_format_job.tuned_model.model
    spec = TuningJobSpec(
        base_model="gemini-2.5-flash",
        training_dataset_uri=str(tuning_datasets.format_train),
        display_name="continued",
        epochs=1,
        learning_rate_multiplier=0.001,  # far too small to teach the format in one epoch
        export_last_checkpoint_only=True,
        pre_tuned_model=parent,
        pre_tuned_checkpoint_id="3",
    )
    job = create_when_quota_frees(lambda: backend.create_job(spec))
    creates = [r for r in tuning_controls.requests("POST", "/tuningJobs") if r["path"].endswith("/tuningJobs")]
    sent = creates[-1]["body"]  # the parent's own create may be logged before it
    pre_tuned = sent.get("preTunedModel") or sent.get("pre_tuned_model")
    assert pre_tuned is not None, sent
    assert pre_tuned.get("tunedModelName", pre_tuned.get("tuned_model_name")) == parent
    assert str(pre_tuned.get("checkpointId", pre_tuned.get("checkpoint_id"))) == "3"

    done = wait_until(lambda: backend.get_job(job.name), lambda j: j.state.has_ended, timeout=300)
    assert done.state is TuningState.SUCCEEDED, done.error
    answers = [backend.generate(str(done.endpoint), greedy(p)).text for p in held_out_prompts(3, seed=41)]
    assert answers == [FORMAT_ANSWER] * 3


def test_an_unknown_parent_or_checkpoint_is_refused(tuning_controls, trained_format_job, tuning_datasets):
    from shared.errors import InvalidArgumentError

    backend = VertexTuningBackend(TEST_PROJECT, TEST_LOCATION, base_url=tuning_controls.url, retry_initial_delay=0.05)
    base = TuningJobSpec("gemini-2.5-flash", str(tuning_datasets.format_train), "x", epochs=1)
    bad_model = f"projects/{TEST_PROJECT}/locations/{TEST_LOCATION}/models/999999@1"
    with pytest.raises(InvalidArgumentError, match="not a tuned model"):
        backend.create_job(TuningJobSpec(**{**base.__dict__, "pre_tuned_model": bad_model}))
    with pytest.raises(InvalidArgumentError, match="Checkpoint 42"):
        backend.create_job(
            TuningJobSpec(
                **{
                    **base.__dict__,
                    "pre_tuned_model": trained_format_job.tuned_model.model,
                    "pre_tuned_checkpoint_id": "42",
                }
            )
        )
