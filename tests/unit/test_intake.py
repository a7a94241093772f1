from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta

import jsonschema
import pytest
from helpers import T0, Clock

from shared import logs
from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.errors import (
    BlobReadError,
    ClaimInProgressError,
    InvalidArgumentError,
    PublishError,
    TransientBackendError,
)
from shared.events import load_schema
from shared.intake import IntakeOutcomeKind, IntakeStep, handle_upload
from shared.records import DatasetRef, Lease, new_record, record_key
from shared.settings import Settings
from shared.states import JobStatus
from shared.upload_event import FINALIZED_EVENT_TYPE, UploadEvent

BUCKET = "bkt"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def examples(n: int, tag: str = "q") -> bytes:
    lines = [
        {
            "contents": [
                {"role": "user", "parts": [{"text": f"{tag} question {i}"}]},
                {"role": "model", "parts": [{"text": f"answer {i}"}]},
            ]
        }
        for i in range(n)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


BAD_ROLE = b'{"contents":[{"role":"assistant","parts":[{"text":"hi"}]}]}\n'


class Harness:
    """Fakes at every port plus helpers to upload objects and deliver their events."""

    def __init__(self, **settings) -> None:
        self.blobs = FakeBlobStore()
        self.jobs = FakeJobStore()
        self.publisher = FakePublisher()
        self.tuning = FakeTuningBackend(quota=5)
        self.clock = Clock(T0 + timedelta(seconds=2))
        self.settings = Settings(project="p", bucket=BUCKET, deployment="prod", **settings)
        self.events: dict[str, UploadEvent] = {}

    def upload(self, name: str, data: bytes, *, event_time: datetime = T0) -> UploadEvent:
        generation = self.blobs.put(BUCKET, name, data)
        event = UploadEvent(
            event_id=f"ev-{generation}",
            source=f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            event_type=FINALIZED_EVENT_TYPE,
            bucket=BUCKET,
            name=name,
            generation=generation,
            size=len(data),
            time=event_time,
            trace_id=TRACE,
        )
        self.events[name] = event
        return event

    def deliver(self, event: UploadEvent, **kwargs):
        return handle_upload(
            event,
            blobs=self.blobs,
            jobs=self.jobs,
            publisher=self.publisher,
            tuning=self.tuning,
            settings=self.settings,
            clock=self.clock,
            **kwargs,
        )

    def record(self, event: UploadEvent):
        return self.jobs.get(record_key(event.bucket, event.name, event.generation))

    def report(self, lineage: str, stem: str, generation: int) -> dict:
        data = self.blobs.read_bytes(BUCKET, f"reports/{lineage}/{stem}/{generation}/validation.json")
        assert data is not None
        return json.loads(data)


@pytest.fixture
def h() -> Harness:
    return Harness()


class InstanceKilled(BaseException):
    """The instance dies: like a real crash, no ``except Exception`` in the code under test sees it."""


def crash_at(step: IntakeStep):
    """An after_step hook that kills the invocation right after ``step``."""

    def hook(at: IntakeStep) -> None:
        if at is step:
            raise InstanceKilled(f"killed after {at}")

    return hook


# --- what never triggers work ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason_part"),
    [
        ("reports/faq/v1/1/validation.json", "own report"),
        ("datasets/faq/v1.validation.jsonl", "validation set"),
        ("datasets/faq/", "folder"),
        ("datasets/faq/tuning.yaml", "not a .jsonl"),
        ("datasets/faq/v1.json", "not a .jsonl"),
        ("elsewhere/faq/v1.jsonl", "outside the datasets prefix"),
    ],
)
def test_non_datasets_are_ignored_without_any_write(h, name, reason_part):
    outcome = h.deliver(h.upload(name, examples(20)))
    assert outcome.kind is IntakeOutcomeKind.IGNORED
    assert reason_part in outcome.reason
    assert h.jobs.all() == [] and h.jobs.writes == 0
    assert sum(h.tuning.calls.values()) == 0
    assert [b.name for b in h.blobs.list(BUCKET, "reports/")] == ([name] if name.startswith("reports/") else [])


def test_other_event_types_and_buckets_are_ignored(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    assert (
        h.deliver(replace(event, event_type="google.cloud.storage.object.v1.deleted")).kind is IntakeOutcomeKind.IGNORED
    )
    assert h.deliver(replace(event, bucket="other-bucket")).kind is IntakeOutcomeKind.IGNORED
    assert h.jobs.all() == []


def test_the_configured_validation_dataset_does_not_trigger(h):
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"validation_dataset: holdout.jsonl\n")
    outcome = h.deliver(h.upload("datasets/faq/holdout.jsonl", examples(20, "v")))
    assert outcome.kind is IntakeOutcomeKind.IGNORED
    assert "validation_dataset" in outcome.reason
    assert h.jobs.all() == []


# --- the happy path -------------------------------------------------------------------------------


def test_valid_dataset_is_validated_reported_recorded_and_submitted_once(h):
    h.blobs.put(BUCKET, "datasets/tuning.yaml", b"labels: {team: ml}\nepochs: 2\n")
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"adapter_size: 4\ndisplay_name: '{lineage}-{name}-{date}'\n")
    h.blobs.put(BUCKET, "datasets/faq/v1.validation.jsonl", examples(5, "v"))
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    outcome = h.deliver(event)

    assert outcome.kind is IntakeOutcomeKind.SUBMITTED
    record = h.record(event)
    assert record.status is JobStatus.PENDING and record.lease is None
    assert outcome.tuning_job == record.tuning_job and record.tuning_job in h.tuning.jobs
    spec = h.tuning.specs[record.tuning_job]
    assert spec.labels == {
        "team": "ml",
        "sftpilot-key": record.id,
        "sftpilot-lineage": "faq",
        "managed-by": "prod",
    }
    assert (spec.epochs, spec.adapter_size, spec.display_name) == (2, 4, "faq-v1-2026-11-21")
    assert spec.validation_dataset_uri == f"gs://{BUCKET}/datasets/faq/v1.validation.jsonl"
    assert spec.training_dataset_uri == f"gs://{BUCKET}/datasets/faq/v1.jsonl"

    report_uri = f"gs://{BUCKET}/reports/faq/v1/{event.generation}/validation.json"
    assert record.validation.valid is True
    assert record.validation.report_uri == report_uri == outcome.report_uri
    assert record.validation.example_count == 20
    assert record.validation.validation_set["example_count"] == 5
    assert record.config.display_name == "faq-v1-2026-11-21"
    assert record.config.lineage == "faq" and record.config.labels == {"team": "ml"}

    report = h.report("faq", "v1", event.generation)
    assert report["valid"] is True and report["dataset"] == event.uri
    assert report["training"]["stats"]["examples"] == 20
    assert report["validation_set"]["role"] == "validation"
    assert h.publisher.published == []  # a submitted job announces itself when it ends (poller)

    # a redelivery is a duplicate: no new work at all
    calls, writes = dict(h.tuning.calls), h.jobs.writes
    again = h.deliver(event)
    assert again.kind is IntakeOutcomeKind.DUPLICATE
    assert dict(h.tuning.calls) == calls and h.jobs.writes == writes


def test_lineage_can_come_from_tuning_yaml(h):
    h.blobs.put(BUCKET, "datasets/Support Bot/tuning.yaml", b"lineage: support-bot\n")
    event = h.upload("datasets/Support Bot/v1.jsonl", examples(20))
    assert h.deliver(event).kind is IntakeOutcomeKind.SUBMITTED
    assert h.record(event).lineage == "support-bot"
    assert h.tuning.specs[h.record(event).tuning_job].labels["sftpilot-lineage"] == "support-bot"


# --- rejections -----------------------------------------------------------------------------------


def test_invalid_dataset_is_rejected_with_report_event_and_no_job(h):
    event = h.upload("datasets/faq/v2.jsonl", examples(20) + BAD_ROLE)
    outcome = h.deliver(event)

    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert "line 21" in outcome.reason and "E_" in outcome.reason
    record = h.record(event)
    assert record.status is JobStatus.REJECTED and record.lease is None
    assert record.error.code == "E_DATASET_INVALID"
    assert record.validation.valid is False and record.validation.issues[0]["line"] == 21
    assert h.tuning.calls["create_job"] == 0

    [published] = h.publisher.published
    body = published.data
    jsonschema.validate(body, load_schema("dataset.rejected"))
    assert published.event_id == f"{record.id}:REJECTED"
    assert published.attributes["type"] == "dataset.rejected" and published.attributes["lineage"] == "faq"
    assert body["report_uri"] == f"gs://{BUCKET}/reports/faq/v2/{event.generation}/validation.json"
    assert body["errors"][0]["line"] == 21 and body["errors"][0]["file"] == "training"
    assert sum(body["error_counts"].values()) >= 1
    assert not h.record(event).has_pending_outbox

    report = h.report("faq", "v2", event.generation)
    assert report["valid"] is False
    assert [e["line"] for e in report["training"]["errors"] if e["severity"] == "error"] == [21]


def test_invalid_validation_set_rejects_the_dataset(h):
    h.blobs.put(BUCKET, "datasets/faq/v1.validation.jsonl", BAD_ROLE)
    outcome = h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)))
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert outcome.reason.startswith("validation set")
    body = h.publisher.published[0].data
    assert {e["file"] for e in body["errors"]} == {"validation"}


def test_configured_validation_dataset_must_exist(h):
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"validation_dataset: holdout.jsonl\n")
    outcome = h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)))
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert "holdout.jsonl" in outcome.reason and "does not exist" in outcome.reason


def test_bad_tuning_yaml_rejects_with_precise_config_errors(h):
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"epochs: 0\nsmoke_test: {promts: []}\n")
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert "tuning.yaml is invalid" in outcome.reason
    body = h.publisher.published[0].data
    jsonschema.validate(body, load_schema("dataset.rejected"))
    assert {(e["path"], e["source"]) for e in body["config_errors"]} == {
        ("epochs", f"gs://{BUCKET}/datasets/faq/tuning.yaml"),
        ("smoke_test.promts", f"gs://{BUCKET}/datasets/faq/tuning.yaml"),
    }
    assert h.report("faq", "v1", event.generation)["config_errors"] == body["config_errors"]
    assert h.tuning.calls["create_job"] == 0


def test_adapter_size_is_checked_against_the_models_limits(h):
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"base_model: gemini-2.5-pro\nadapter_size: 16\n")
    outcome = h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)))
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert "adapter" in json.dumps(h.publisher.published[0].data["errors"]).lower()


@pytest.mark.parametrize(
    ("name", "reason_part", "lineage"),
    [
        ("datasets/v1.jsonl", "lineage folder", "unassigned"),
        ("datasets/faq/../v1.jsonl", "'..'", "faq"),
        ("datasets/faq//v1.jsonl", "empty path segment", "faq"),
        ("datasets/faq/v\x07.jsonl", "control character", "faq"),
        ("datasets/Support Bot/v1.jsonl", "not a valid lineage", "unassigned"),
    ],
)
def test_unsafe_or_unplaced_names_are_rejected_with_a_reason(h, name, reason_part, lineage):
    event = h.upload(name, examples(20))
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert reason_part in outcome.reason
    assert h.record(event).lineage == lineage
    jsonschema.validate(h.publisher.published[0].data, load_schema("dataset.rejected"))
    assert h.tuning.calls["create_job"] == 0


# --- duplicates, leases, crashes ------------------------------------------------------------------


def test_live_claim_makes_a_duplicate_retry_later_and_an_expired_one_is_taken_over(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    ref = DatasetRef(BUCKET, event.name, event.generation, "faq")
    h.jobs.create(new_record(ref, h.clock(), lease=Lease("crashed", h.clock() + timedelta(seconds=600))))
    with pytest.raises(ClaimInProgressError):
        h.deliver(event)
    h.clock.advance(601)
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.SUBMITTED
    assert len(h.tuning.jobs) == 1


CRASH_STEPS = [
    IntakeStep.CLAIMED,
    IntakeStep.VALIDATED,
    IntakeStep.REPORT_WRITTEN,
    IntakeStep.VERDICT_RECORDED,
    IntakeStep.SUBMITTING_RECORDED,
    IntakeStep.JOB_CREATED,
    IntakeStep.JOB_RECORDED,
]


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_crash_at_any_step_still_ends_with_exactly_one_job(h, step):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    with pytest.raises(InstanceKilled):
        h.deliver(event, after_step=crash_at(step))
    h.clock.advance(h.settings.lease_seconds + 1)  # the crashed invocation's lease runs out
    outcome = h.deliver(event)
    assert outcome.kind in {IntakeOutcomeKind.SUBMITTED, IntakeOutcomeKind.DUPLICATE}
    assert len(h.jobs.all()) == 1
    assert len(h.tuning.jobs) == 1
    record = h.record(event)
    assert record.status is JobStatus.PENDING and record.tuning_job in h.tuning.jobs
    assert record.validation.valid is True


@pytest.mark.parametrize(
    "step", [IntakeStep.CLAIMED, IntakeStep.VALIDATED, IntakeStep.REPORT_WRITTEN, IntakeStep.VERDICT_RECORDED]
)
def test_a_crash_while_rejecting_still_announces_exactly_once(h, step):
    event = h.upload("datasets/faq/v1.jsonl", BAD_ROLE * 20)
    with pytest.raises(InstanceKilled):
        h.deliver(event, after_step=crash_at(step))
    h.clock.advance(h.settings.lease_seconds + 1)
    h.deliver(event)
    h.deliver(event)
    assert h.record(event).status is JobStatus.REJECTED
    assert [e.event_type for e in h.publisher.published] == ["dataset.rejected"]


def test_a_verdict_recorded_before_a_crash_is_not_validated_again(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    with pytest.raises(InstanceKilled):
        h.deliver(event, after_step=crash_at(IntakeStep.VERDICT_RECORDED))
    h.clock.advance(h.settings.lease_seconds + 1)
    steps: list[IntakeStep] = []
    h.deliver(event, after_step=steps.append)
    assert IntakeStep.VALIDATED not in steps and IntakeStep.JOB_CREATED in steps


def test_publish_failure_after_commit_is_repaired_by_the_redelivery(h):
    event = h.upload("datasets/faq/v1.jsonl", BAD_ROLE * 20)
    h.publisher.failures.fail_next("publish", PublishError("t", "x", "unavailable"))
    with pytest.raises(PublishError):
        h.deliver(event)
    assert h.record(event).status is JobStatus.REJECTED and h.record(event).has_pending_outbox
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.DUPLICATE
    assert [e.event_type for e in h.publisher.published] == ["dataset.rejected"]
    assert not h.record(event).has_pending_outbox


def test_transient_read_failure_releases_the_claim_for_an_immediate_retry(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.blobs.fail_reads_after[event.name] = 100
    with pytest.raises(BlobReadError):
        h.deliver(event)
    left = h.record(event)
    assert left.status is JobStatus.RECEIVED and left.lease is None
    del h.blobs.fail_reads_after[event.name]
    assert h.deliver(event).kind is IntakeOutcomeKind.SUBMITTED  # no clock advance needed


def test_transient_submit_failure_is_retried_and_adopts_or_creates_once(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.tuning.failures.fail_next("create_job", TransientBackendError("create_job", 503, "backend unavailable"))
    with pytest.raises(TransientBackendError):
        h.deliver(event)
    assert h.record(event).status is JobStatus.SUBMITTING
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.SUBMITTED
    assert len(h.tuning.jobs) == 1


def test_concurrent_deliveries_make_one_record_and_one_job(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(200))
    outcomes: list[object] = []

    def deliver() -> None:
        try:
            outcomes.append(h.deliver(event).kind)
        except ClaimInProgressError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(h.jobs.all()) == 1 and len(h.tuning.jobs) == 1
    assert outcomes.count(IntakeOutcomeKind.SUBMITTED) == 1
    assert h.tuning.calls["create_job"] == 1


# --- quota, refusal, staleness ----------------------------------------------------------------------


def test_quota_full_queues_and_later_uploads_queue_behind_in_order(h):
    h.tuning.quota = 0
    first = h.upload("datasets/faq/v1.jsonl", examples(20))
    assert h.deliver(first).kind is IntakeOutcomeKind.QUEUED
    assert h.record(first).status is JobStatus.QUEUED and h.publisher.published == []
    h.tuning.quota = 5  # capacity frees, but v1 is still waiting: v2 must not jump the queue
    second = h.upload("datasets/faq/v2.jsonl", examples(20), event_time=T0 + timedelta(seconds=1))
    calls = h.tuning.calls["create_job"]
    outcome = h.deliver(second)
    assert outcome.kind is IntakeOutcomeKind.QUEUED
    assert h.tuning.calls["create_job"] == calls
    assert h.record(first).queue_position < h.record(second).queue_position


def test_refused_submission_fails_and_announces_job_failed(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.tuning.failures.fail_next(
        "create_job", InvalidArgumentError("create_job", 400, "no such model", "INVALID_ARGUMENT")
    )
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.FAILED_TO_SUBMIT
    assert "no such model" in outcome.reason
    [published] = h.publisher.published
    assert published.event_type == "job.failed" and published.attributes["state"] == "FAILED_TO_SUBMIT"
    jsonschema.validate(published.data, load_schema("job.failed"))


def test_stale_event_is_recorded_as_dropped_and_not_processed(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.clock.advance(h.settings.max_event_age_seconds + 10)
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.DROPPED_STALE
    assert h.record(event).status is JobStatus.DROPPED
    assert list(h.blobs.list(BUCKET, "reports/")) == []
    assert sum(h.tuning.calls.values()) == 0
    assert h.deliver(event).kind is IntakeOutcomeKind.DUPLICATE


def test_stale_redelivery_of_an_abandoned_claim_drops_it(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    with pytest.raises(InstanceKilled):
        h.deliver(event, after_step=crash_at(IntakeStep.CLAIMED))
    h.clock.advance(h.settings.max_event_age_seconds + 10)
    assert h.deliver(event).kind is IntakeOutcomeKind.DROPPED_STALE
    assert h.record(event).status is JobStatus.DROPPED and h.tuning.calls["create_job"] == 0


# --- logs ---------------------------------------------------------------------------------------------


def test_outcome_is_logged_as_structured_json_with_job_key_lineage_and_trace(h):
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        event = h.upload("datasets/faq/v1.jsonl", examples(20))
        h.deliver(event)
    finally:
        logs.configure("INFO", None)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    final = [line for line in lines if line.get("outcome") == "SUBMITTED"]
    assert len(final) == 1
    entry = final[0]
    assert entry["severity"] == "INFO"
    assert entry["job_id"] == h.record(event).id and entry["lineage"] == "faq"
    assert entry["logging.googleapis.com/trace"] == f"projects/p/traces/{TRACE}"
    assert entry["dataset"] == event.uri


def test_name_and_config_problems_are_reported_together(h):
    h.blobs.put(BUCKET, "datasets/Support Bot/tuning.yaml", b"epochs: zero\n")
    event = h.upload("datasets/Support Bot/v1.jsonl", examples(20))
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    assert "not a valid lineage" in outcome.reason and "tuning.yaml is invalid" in outcome.reason
    body = h.publisher.published[0].data
    assert [e["path"] for e in body["config_errors"]] == ["epochs"]
    assert body["report_uri"] is None


def test_an_unforeseen_error_before_the_verdict_rejects_with_the_reason_instead_of_stranding(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.blobs.failures.fail_next("open_read", ValueError("unexpected response (injected)"))
    outcome = h.deliver(event)
    assert outcome.kind is IntakeOutcomeKind.REJECTED and "E_INTERNAL" in outcome.reason
    record = h.record(event)
    assert record.status is JobStatus.REJECTED and record.error.code == "E_INTERNAL"
    assert [e.event_type for e in h.publisher.published] == ["dataset.rejected"]
    assert "re-upload" in h.publisher.published[0].data["reason"]


def test_an_unforeseen_error_after_submitting_is_left_for_the_poller_to_repair(h):
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.tuning.failures.fail_next("create_job", ValueError("unexpected response (injected)"))
    with pytest.raises(ValueError):
        h.deliver(event)
    record = h.record(event)
    assert record.status is JobStatus.SUBMITTING and record.tuning_job is None
    assert h.publisher.published == []


def test_a_service_account_outside_the_allow_list_is_rejected_before_submission():
    h = Harness(tuning_service_accounts=("tuner@p.iam.gserviceaccount.com",))
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"service_account: intruder@p.iam.gserviceaccount.com\n")
    outcome = h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)))
    assert outcome.kind is IntakeOutcomeKind.REJECTED
    body = h.publisher.published[0].data
    jsonschema.validate(body, load_schema("dataset.rejected"))
    [error] = body["config_errors"]
    assert error["path"] == "service_account"
    assert "intruder@p.iam.gserviceaccount.com" in error["message"] and "tuner@p" in error["message"]
    assert h.tuning.calls["create_job"] == 0


def test_an_allowed_service_account_reaches_vertex():
    h = Harness(tuning_service_accounts=("tuner@p.iam.gserviceaccount.com",))
    h.blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"service_account: Tuner@p.iam.gserviceaccount.com\n")
    outcome = h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)))
    assert outcome.kind is not IntakeOutcomeKind.REJECTED, outcome.reason
    assert h.tuning.calls["create_job"] == 1
