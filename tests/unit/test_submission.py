from __future__ import annotations

import threading
from datetime import timedelta

import jsonschema
import pytest
from helpers import T0, Clock

from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.errors import (
    ClaimInProgressError,
    InvalidArgumentError,
    RecordNotFoundError,
    TransientBackendError,
)
from shared.events import load_schema
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, JobRecord, Lease, new_record
from shared.states import JobStatus, TuningState
from shared.submission import SubmitStep, build_spec, submit_tuning_job
from shared.tuning_config import TuningConfig


def _record(**config_overrides) -> JobRecord:
    config = TuningConfig(lineage="faq", epochs=3, labels={"team": "ml"}).to_dict()
    config["display_name"] = "faq-v1-7"
    config.update(config_overrides)
    rec = new_record(DatasetRef("bkt", "datasets/faq/v1.jsonl", 7, "faq"), T0, event_time=T0)
    return rec.with_changes(
        T0,
        config=config,
        validation={
            "valid": True,
            "validation_set": {"uri": "gs://bkt/datasets/faq/v1.validation.jsonl", "object": "x", "generation": 3},
        },
    )


def _submit(jobs, tuning, clock, owner="a", **kwargs):
    return submit_tuning_job(
        _record().id, jobs=jobs, tuning=tuning, deployment="prod", clock=clock, owner=owner, **kwargs
    )


def _setup(**config_overrides):
    jobs, tuning, clock = FakeJobStore(), FakeTuningBackend(quota=5), Clock()
    jobs.create(_record(**config_overrides))
    return jobs, tuning, clock


def test_build_spec_uses_config_validation_set_and_our_labels_win():
    rec = _record(labels={"team": "ml", "managed-by": "someone-else"}, adapter_size=4, learning_rate_multiplier=2)
    spec = build_spec(rec, "prod")
    assert spec == TuningJobSpec(
        base_model="gemini-2.5-flash",
        training_dataset_uri="gs://bkt/datasets/faq/v1.jsonl",
        display_name="faq-v1-7",
        validation_dataset_uri="gs://bkt/datasets/faq/v1.validation.jsonl",
        epochs=3,
        adapter_size=4,
        learning_rate_multiplier=2.0,
        labels={"team": "ml", "sftpilot-key": rec.id, "sftpilot-lineage": "faq", "managed-by": "prod"},
    )


def test_build_spec_renders_a_template_from_the_upload_time():
    rec = _record(display_name="{lineage}-{date}-{generation}")
    assert build_spec(rec, "prod").display_name == "faq-2026-11-21-7"


def test_submit_creates_one_job_and_records_it():
    jobs, tuning, clock = _setup()
    stored = _submit(jobs, tuning, clock)
    assert stored.status is JobStatus.PENDING
    assert stored.lease is None
    assert stored.tuning_job in tuning.jobs
    assert stored.tuning.state == "JOB_STATE_PENDING"
    assert [h.status for h in stored.history] == [JobStatus.RECEIVED, JobStatus.SUBMITTING, JobStatus.PENDING]
    assert tuning.specs[stored.tuning_job].labels["sftpilot-key"] == stored.id
    # idempotent: a second call changes nothing and asks nothing of the backend
    calls = dict(tuning.calls)
    assert _submit(jobs, tuning, clock, owner="b") == stored
    assert dict(tuning.calls) == calls


def test_crash_after_create_is_repaired_by_adoption_not_a_second_job():
    jobs, tuning, clock = _setup()

    def crash(step: SubmitStep) -> None:
        if step is SubmitStep.JOB_CREATED:
            raise RuntimeError("instance killed")

    with pytest.raises(RuntimeError):
        _submit(jobs, tuning, clock, owner="a", after_step=crash)
    orphan = jobs.get(_record().id)
    assert orphan.status is JobStatus.SUBMITTING and orphan.tuning_job is None
    assert orphan.lease is not None and orphan.lease.owner == "a"  # a crash releases nothing
    # while the crashed owner's lease is live, nobody else may submit
    with pytest.raises(ClaimInProgressError):
        _submit(jobs, tuning, clock, owner="b")
    clock.advance(601)
    stored = _submit(jobs, tuning, clock, owner="b")
    assert stored.status is JobStatus.PENDING
    assert tuning.calls["create_job"] == 1
    assert list(tuning.jobs) == [stored.tuning_job]
    assert "adopted" in stored.history[-1].note


def test_adopting_an_already_ended_job_leaves_the_completion_to_the_poller():
    jobs, tuning, clock = _setup()
    rec = jobs.get(_record().id)
    job = tuning.create_job(build_spec(rec, "prod"))
    tuning.set_state(job.name, TuningState.SUCCEEDED)
    stored = _submit(jobs, tuning, clock)
    assert stored.status is JobStatus.PENDING and stored.tuning_job == job.name
    assert stored.tuning is None  # the poller sees a change and makes the terminal transition
    assert not stored.outbox


def test_quota_full_queues_without_an_event():
    jobs, tuning, clock = _setup()
    tuning.quota = 0
    stored = _submit(jobs, tuning, clock)
    assert stored.status is JobStatus.QUEUED
    assert stored.lease is None and stored.tuning_job is None and not stored.outbox
    tuning.quota = 1  # capacity frees: the poller's call submits it
    again = _submit(jobs, tuning, clock, owner="poller")
    assert again.status is JobStatus.PENDING


def test_refused_request_fails_the_record_and_stages_one_job_failed_event():
    jobs, tuning, clock = _setup()
    tuning.failures.fail_next(
        "create_job", InvalidArgumentError("create_job", 400, "bad base model", "INVALID_ARGUMENT")
    )
    stored = _submit(jobs, tuning, clock)
    assert stored.status is JobStatus.FAILED_TO_SUBMIT
    assert stored.error.code == "E_INVALID_ARGUMENT"
    [entry] = stored.outbox
    assert entry.event_id == f"{stored.id}:FAILED_TO_SUBMIT"
    body = entry.payload["data"]
    assert body["type"] == "job.failed" and body["state"] == "FAILED_TO_SUBMIT"
    assert body["tuning_job"] is None and "bad base model" in body["error"]["message"]
    assert body["display_name"] == "faq-v1-7"
    jsonschema.validate(body, load_schema("job.failed"))


def test_transient_failure_reraises_releases_the_lease_and_the_retry_reconciles_first():
    jobs, tuning, clock = _setup()
    tuning.failures.fail_next("create_job", TransientBackendError("create_job", 503, "unavailable"))
    with pytest.raises(TransientBackendError):
        _submit(jobs, tuning, clock)
    left = jobs.get(_record().id)
    assert left.status is JobStatus.SUBMITTING and left.lease is None
    stored = _submit(jobs, tuning, clock, owner="b")
    assert stored.status is JobStatus.PENDING
    assert tuning.calls["list_jobs"] == 2  # every attempt looks for an existing job first
    assert len(tuning.jobs) == 1


def test_a_label_listing_refused_for_good_does_not_fail_the_submission():
    jobs, tuning, clock = _setup()
    tuning.failures.fail_next(
        "list_jobs", InvalidArgumentError("list", 400, "Unsupported filter field 'labels.sftpilot-key'")
    )
    stored = _submit(jobs, tuning, clock)
    assert stored.status is JobStatus.PENDING and stored.tuning_job in tuning.jobs
    assert tuning.calls["create_job"] == 1


def test_received_record_leased_by_someone_else_is_not_submitted():
    jobs, tuning, clock = FakeJobStore(), FakeTuningBackend(), Clock()
    rec = _record().with_changes(T0, lease=Lease("intake-1", T0 + timedelta(seconds=60)))
    jobs.create(rec)
    with pytest.raises(ClaimInProgressError):
        _submit(jobs, tuning, clock, owner="poller")
    assert tuning.calls["create_job"] == 0
    assert _submit(jobs, tuning, clock, owner="intake-1").status is JobStatus.PENDING


def test_terminal_record_is_returned_untouched():
    jobs, tuning, clock = FakeJobStore(), FakeTuningBackend(), Clock()
    jobs.create(_record().transition(JobStatus.REJECTED, T0))
    assert _submit(jobs, tuning, clock).status is JobStatus.REJECTED
    assert sum(tuning.calls.values()) == 0


def test_missing_record_raises():
    with pytest.raises(RecordNotFoundError):
        submit_tuning_job(
            "nope", jobs=FakeJobStore(), tuning=FakeTuningBackend(), deployment="d", clock=Clock(), owner="a"
        )


def test_concurrent_submitters_create_exactly_one_job():
    jobs, tuning, clock = _setup()
    tuning.latency_seconds = 0.01
    results: list[object] = []

    def worker(i: int) -> None:
        try:
            results.append(_submit(jobs, tuning, clock, owner=f"w{i}").status)
        except ClaimInProgressError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tuning.jobs) == 1
    assert jobs.get(_record().id).tuning_job in tuning.jobs
    assert JobStatus.PENDING in results
