"""``handle_completion`` end to end on the fakes: jobs finish through the real poller, its events
travel as Pub/Sub messages, the completion handler smoke-tests, records, publishes and cleans up."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta

import pytest
from helpers import T0

from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.cleanup import model_deleted_event_id
from shared.completion import CompletionOptions, CompletionStep, OutcomeKind, handle_completion
from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, CompletionMessage, parse_completion_event
from shared.errors import (
    BlobReadError,
    ClaimInProgressError,
    PermissionDeniedError,
    PublishError,
    SmokeTestDeadlineError,
    TransientBackendError,
)
from shared.events import EventType, build_event
from shared.poller import PollOptions, run_poll
from shared.ports import OutgoingEvent, TuningJobSpec
from shared.record_parts import CleanupRecord, RecordError, part_dict
from shared.records import DatasetRef, JobRecord, new_record
from shared.retry import RetryPolicy
from shared.states import JobStatus, TuningState
from shared.tuning_config import TuningConfig

DEPLOYMENT = "sftpilot-test"
BUCKET = "acme-datasets"
GOOD = "Hi there! Click 'Forgot password'. — Acme Support"


class Crash(BaseException):
    """Simulated process death (not an Exception: nothing may catch and tidy up after it)."""


def to_message(event: OutgoingEvent, message_id: str = "42") -> CompletionMessage:
    """The event as Pub/Sub delivers it to the function (base64 body + attributes)."""
    data = {
        "message": {
            "data": base64.b64encode(json.dumps(event.data).encode()).decode(),
            "attributes": event.attributes,
            "messageId": message_id,
            "publishTime": "2026-03-02T10:00:00Z",
        },
        "subscription": "projects/p/subscriptions/completion",
    }
    return parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED, "id": message_id}, data)


def config(**overrides) -> dict:
    base = {
        "smoke_test": {"prompts": [{"prompt": "How do I reset my password?", "contains": ["— Acme Support"]}]},
        "cleanup": {"enabled": True, "keep_last": 1},
    }
    base.update(overrides)
    return TuningConfig.from_dict(base).to_dict()


class Pipeline:
    """The ports on fakes plus a controllable clock; jobs reach SUCCEEDED through the real poller."""

    def __init__(self) -> None:
        self.jobs = FakeJobStore()
        self.tuning = FakeTuningBackend(quota=100)
        self.tuning.responder = lambda endpoint, request: GOOD
        self.blobs = FakeBlobStore()
        self.publisher = FakePublisher()
        self.now = T0
        self.options = CompletionOptions(
            deployment=DEPLOYMENT,
            bucket=BUCKET,
            lease_seconds=600,
            retry=RetryPolicy(attempts=2, initial_backoff_seconds=0.0),
        )

    def clock(self) -> datetime:
        return self.now

    def tuned(
        self, n: int, cfg: dict | None = None, end: TuningState = TuningState.SUCCEEDED, lineage: str = "support-bot"
    ) -> tuple[JobRecord, CompletionMessage]:
        """Upload v<n>, let it tune and end in ``end``; returns the record and its completion message."""
        self.now = T0 + timedelta(hours=n)
        ref = DatasetRef(BUCKET, f"datasets/{lineage}/v{n}.jsonl", 1767225600000000 + n, lineage)
        rec = new_record(ref, self.now).with_changes(self.now, config=cfg or config())
        job = self.tuning.create_job(
            TuningJobSpec(
                "gemini-2.5-flash",
                ref.gcs_uri,
                f"v{n}",
                labels={"managed-by": DEPLOYMENT, "sftpilot-key": rec.id, "sftpilot-lineage": lineage},
            )
        )
        rec = rec.transition(JobStatus.SUBMITTING, self.now).transition(
            JobStatus.PENDING, self.now, tuning_job=job.name
        )
        assert self.jobs.create(rec)
        self.tuning.set_state(job.name, TuningState.RUNNING)
        self.tuning.set_state(job.name, end)
        before = len(self.publisher.published)
        run_poll(
            jobs=self.jobs,
            tuning=self.tuning,
            publisher=self.publisher,
            clock=self.clock,
            options=PollOptions(),
            owner="poller",
        )
        [event] = self.publisher.published[before:]
        stored = self.jobs.get(rec.id)
        assert stored is not None
        return stored, to_message(event)

    def complete(self, message: CompletionMessage, owner: str = "fn-1", after_step=None, monotonic=time.monotonic):
        return handle_completion(
            message,
            jobs=self.jobs,
            tuning=self.tuning,
            blobs=self.blobs,
            publisher=self.publisher,
            clock=self.clock,
            options=self.options,
            owner=owner,
            after_step=after_step,
            sleep=lambda s: None,
            monotonic=monotonic,
        )

    def record(self, job_id: str) -> JobRecord:
        stored = self.jobs.get(job_id)
        assert stored is not None
        return stored

    def model(self, job_id: str) -> str:
        return str(self.record(job_id).tuning.tuned_model)

    def events(self, event_type: str) -> list[OutgoingEvent]:
        return self.publisher.of_type(event_type)


@pytest.fixture
def pipe() -> Pipeline:
    return Pipeline()


# --- smoke test ----------------------------------------------------------------------------------


def test_a_passing_smoke_test_is_recorded_reported_and_announced(pipe):
    rec, message = pipe.tuned(1)
    outcome = pipe.complete(message)

    assert (outcome.kind, outcome.smoke_test_passed) == (OutcomeKind.DONE, True)
    stored = pipe.record(rec.id)
    smoke = part_dict(stored.smoke_test)
    assert smoke is not None
    assert (smoke["passed"], smoke["reasons"], smoke["prompt_source"]) == (True, [], "config")
    [prompt] = smoke["prompts"]
    assert prompt["endpoint"] == rec.tuning.endpoint
    assert prompt["response"] == GOOD
    assert [(c["kind"], c["passed"]) for c in prompt["checks"]] == [("non_empty", True), ("contains", True)]
    assert smoke["report_uri"] == f"gs://{BUCKET}/reports/support-bot/v1/{rec.dataset.generation}/smoke_test.json"

    [event] = pipe.events("smoke_test.passed")
    assert event.event_id == f"{rec.id}:smoke_test"
    assert (event.data["passed"], event.data["prompts_total"], event.data["prompts_passed"]) == (True, 1, 1)
    assert event.data["tuned_model"] == pipe.model(rec.id)
    assert event.attributes["lineage"] == "support-bot"
    assert not stored.has_pending_outbox

    report = json.loads(
        pipe.blobs.read_bytes(BUCKET, f"reports/support-bot/v1/{rec.dataset.generation}/smoke_test.json")
    )
    assert report["passed"] is True and report["results"][0]["response"] == GOOD
    # the first model of a lineage has nothing to retire
    assert pipe.events("model.deleted") == []
    assert stored.cleanup is not None and stored.cleanup.run["targets"] == []


def test_a_failing_smoke_test_is_announced_and_keeps_the_older_model(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    pipe.tuning.responder = lambda endpoint, request: "I don't know."
    v2, m2 = pipe.tuned(2)

    outcome = pipe.complete(m2)

    assert (outcome.kind, outcome.smoke_test_passed) == (OutcomeKind.DONE, False)
    [failed] = pipe.events("smoke_test.failed")
    assert failed.data["reasons"] == ["prompt 1 on tuned: contains: missing '— Acme Support'"]
    assert pipe.model(v1.id) in pipe.tuning.models
    assert pipe.events("model.deleted") == []
    cleanup = part_dict(pipe.record(v2.id).cleanup)
    assert cleanup is not None and cleanup["skipped"] == "smoke test failed: older models of the lineage are kept"
    assert "retired_by" not in (part_dict(pipe.record(v1.id).cleanup) or {})


def test_validation_examples_are_the_prompts_when_none_are_configured(pipe):
    ref_answer = "Open settings and choose reset."
    example = {
        "contents": [
            {"role": "user", "parts": [{"text": "How to reset?"}]},
            {"role": "model", "parts": [{"text": ref_answer}]},
        ]
    }
    pipe.blobs.put(BUCKET, "datasets/support-bot/v1.validation.jsonl", (json.dumps(example) + "\n").encode())
    rec, message = pipe.tuned(1, config(smoke_test={"from_validation": 3}))
    pipe.jobs.update(
        rec.id,
        lambda r: r.with_changes(
            r.updated_at,
            validation={"validation_set": {"uri": f"gs://{BUCKET}/datasets/support-bot/v1.validation.jsonl"}},
        ),
    )
    pipe.tuning.responder = lambda endpoint, request: "Open settings and choose reset."

    pipe.complete(message)

    smoke = part_dict(pipe.record(rec.id).smoke_test)
    assert smoke is not None and smoke["prompt_source"] == "validation"
    assert smoke["prompts"][0]["prompt"] == "How to reset?"
    assert smoke["scores"] == {"tuned": {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}}


def test_compare_base_writes_the_chart_and_scores_both_models(pipe):
    cfg = config(
        base_model="gemini-2.5-flash",
        smoke_test={
            "prompts": [{"prompt": "cat?", "reference": "the cat is on the mat"}],
            "compare_base": True,
        },
    )
    rec, message = pipe.tuned(1, cfg)
    pipe.tuning.responder = lambda endpoint, request: (
        "a dog" if endpoint == "gemini-2.5-flash" else "the cat sat on the mat"
    )

    pipe.complete(message)

    smoke = part_dict(pipe.record(rec.id).smoke_test)
    assert smoke is not None
    assert smoke["scores"] == {
        "tuned": {"rouge1": 0.8333, "rouge2": 0.6, "rougeL": 0.8333},
        "base": {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0},
    }
    folder = f"reports/support-bot/v1/{rec.dataset.generation}"
    assert smoke["chart_uri"] == f"gs://{BUCKET}/{folder}/rouge.png"
    png = pipe.blobs.read_bytes(BUCKET, f"{folder}/rouge.png")
    assert png is not None and png.startswith(b"\x89PNG")
    report = json.loads(pipe.blobs.read_bytes(BUCKET, f"{folder}/smoke_test.json"))
    assert report["base_results"][0]["response"] == "a dog"
    [event] = pipe.events("smoke_test.passed")
    assert event.data["scores"]["base"]["rouge1"] == 0.0


def test_smoke_test_disabled_records_why_and_runs_no_cleanup(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    v2, m2 = pipe.tuned(2, config(smoke_test={"enabled": False}))
    generated = len(pipe.tuning.generations)

    outcome = pipe.complete(m2)

    assert outcome.kind is OutcomeKind.DONE and outcome.smoke_test_passed is None
    assert len(pipe.tuning.generations) == generated
    assert pipe.record(v2.id).smoke_test.skipped == "smoke_test.enabled is false"
    assert pipe.model(v1.id) in pipe.tuning.models
    assert pipe.complete(m2).kind is OutcomeKind.DUPLICATE


# --- cleanup -------------------------------------------------------------------------------------


def test_v2_passing_retires_v1_and_never_touches_a_foreign_model(pipe):
    foreign = "projects/local/locations/us-central1/models/foreign@1"
    pipe.tuning.add_foreign_model(foreign, labels={"team": "ml"})
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    v1_endpoints = [pipe.record(v1.id).tuning.endpoint] + [c["endpoint"] for c in pipe.record(v1.id).tuning.checkpoints]
    v2, m2 = pipe.tuned(2)

    outcome = pipe.complete(m2)

    assert outcome.retired_models == (pipe.model(v1.id),)
    assert pipe.model(v1.id) not in pipe.tuning.models
    assert not any(e in pipe.tuning.endpoints for e in v1_endpoints)
    assert pipe.model(v2.id) in pipe.tuning.models
    assert foreign in pipe.tuning.models
    [deleted] = pipe.events("model.deleted")
    assert deleted.event_id == model_deleted_event_id(v2.id, pipe.model(v1.id))
    assert (deleted.data["retired_job"], deleted.data["superseded_by"], deleted.data["dry_run"]) == (
        v1.id,
        v2.id,
        False,
    )
    old = pipe.record(v1.id)
    assert old.cleanup is not None and old.cleanup.retired_by == v2.id


def test_dry_run_deletes_nothing_and_announces_what_would_go(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    _v2, m2 = pipe.tuned(2, config(cleanup={"enabled": True, "dry_run": True}))

    outcome = pipe.complete(m2)

    assert outcome.retired_models == ()
    assert pipe.model(v1.id) in pipe.tuning.models
    [would] = pipe.events("model.deleted")
    assert would.data["dry_run"] is True
    assert pipe.tuning.calls["delete_model"] == 0 and pipe.tuning.calls["undeploy_model"] == 0


def test_cleanup_off_keeps_everything(pipe):
    v1, m1 = pipe.tuned(1, config(cleanup={"enabled": False}))
    pipe.complete(m1)
    _v2, m2 = pipe.tuned(2, config(cleanup={"enabled": False}))
    pipe.complete(m2)
    assert pipe.model(v1.id) in pipe.tuning.models
    assert pipe.tuning.calls["get_model"] == 0


def test_keep_last_two_keeps_the_previous_model(pipe):
    cfg = config(cleanup={"enabled": True, "keep_last": 2})
    records = []
    for n in (1, 2, 3):
        rec, message = pipe.tuned(n, cfg)
        pipe.complete(message)
        records.append(rec)
    assert pipe.model(records[0].id) not in pipe.tuning.models
    assert pipe.model(records[1].id) in pipe.tuning.models and pipe.model(records[2].id) in pipe.tuning.models


def test_other_lineages_are_not_affected(pipe):
    other, mo = pipe.tuned(1, lineage="billing")
    pipe.complete(mo)
    _v2, m2 = pipe.tuned(2)
    pipe.complete(m2)
    assert pipe.model(other.id) in pipe.tuning.models


# --- idempotency, crashes, retries ---------------------------------------------------------------


def test_a_redelivered_event_runs_nothing_twice(pipe):
    _v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    v2, m2 = pipe.tuned(2)
    pipe.complete(m2)
    calls, published, record = dict(pipe.tuning.calls), list(pipe.publisher.published), pipe.record(v2.id)

    again = pipe.complete(m2, owner="fn-2")

    assert again.kind is OutcomeKind.DUPLICATE
    assert dict(pipe.tuning.calls) == calls
    assert pipe.publisher.published == published
    assert pipe.record(v2.id) == record


@pytest.mark.parametrize("crash_after", [CompletionStep.CLAIMED, CompletionStep.PROMPTED])
def test_a_crash_before_recording_is_taken_over_after_the_lease(pipe, crash_after):
    rec, message = pipe.tuned(1)

    def crash(step):
        if step is crash_after:
            raise Crash(step)

    with pytest.raises(Crash):
        pipe.complete(message, owner="fn-1", after_step=crash)
    assert pipe.record(rec.id).smoke_test is None

    with pytest.raises(ClaimInProgressError):  # the dead invocation's lease is still live
        pipe.complete(message, owner="fn-2")

    pipe.now += timedelta(seconds=601)
    outcome = pipe.complete(message, owner="fn-3")
    assert outcome.kind is OutcomeKind.DONE and outcome.smoke_test_passed is True
    assert len(pipe.events("smoke_test.passed")) == 1


def test_a_crash_after_recording_resumes_without_prompting_again(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    v2, m2 = pipe.tuned(2)

    def crash(step):
        if step is CompletionStep.RECORDED:
            raise Crash(step)

    with pytest.raises(Crash):
        pipe.complete(m2, after_step=crash)
    prompts_sent = len(pipe.tuning.generations)
    assert pipe.record(v2.id).has_pending_outbox  # recorded, not published yet

    pipe.now += timedelta(seconds=601)
    outcome = pipe.complete(m2, owner="fn-2")

    assert outcome.kind is OutcomeKind.DONE
    assert len(pipe.tuning.generations) == prompts_sent
    assert len(pipe.events("smoke_test.passed")) == 2  # v1's and v2's, once each
    assert outcome.retired_models == (pipe.model(v1.id),)


def test_a_crash_after_publishing_still_cleans_up_on_redelivery(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    v2, m2 = pipe.tuned(2)

    def crash(step):
        if step is CompletionStep.PUBLISHED:
            raise Crash(step)

    with pytest.raises(Crash):
        pipe.complete(m2, after_step=crash)
    assert pipe.model(v1.id) in pipe.tuning.models

    outcome = pipe.complete(m2, owner="fn-2")  # the smoke claim is complete: no lease to wait for

    assert outcome.retired_models == (pipe.model(v1.id),)
    assert len([e for e in pipe.events("smoke_test.passed") if e.data["job_id"] == v2.id]) == 1


class SlowEndpoint:
    """A monotonic clock that moves ``seconds`` per generate call (the endpoint is slow)."""

    def __init__(self, pipe: Pipeline, seconds: float) -> None:
        self.t = 1000.0
        self.calls: list[str] = []

        def respond(endpoint, request):
            self.t += seconds
            self.calls.append(request.contents[-1]["parts"][0]["text"])
            return GOOD

        pipe.tuning.responder = respond

    def __call__(self) -> float:
        return self.t


def test_a_smoke_test_that_runs_out_of_time_keeps_its_calls_and_the_redelivery_continues(pipe):
    prompts = [{"prompt": f"question {n}?", "contains": ["— Acme Support"]} for n in range(5)]
    rec, message = pipe.tuned(1, config(smoke_test={"prompts": prompts}))
    slow = SlowEndpoint(pipe, seconds=130)  # worst case per call: 30 s x 2 attempts = 60 s

    with pytest.raises(SmokeTestDeadlineError) as raised:
        pipe.complete(message, "fn-1", monotonic=slow)
    assert (raised.value.done, raised.value.total) == (4, 5)  # 4 x 130 s = 520 s > 480 - 60: stop
    paused = pipe.record(rec.id)
    assert paused.smoke_test is None and pipe.events("smoke_test.passed") == []
    assert paused.smoke_progress is not None
    assert paused.smoke_progress.event_id == message.event_id
    assert [c["key"] for c in paused.smoke_progress.calls] == [f"tuned#{n}" for n in range(4)]
    assert pipe.jobs.effect(f"{message.event_id}:smoke_test") is None  # released: redeliver at once

    outcome = pipe.complete(message, "fn-2", monotonic=slow)
    assert outcome.smoke_test_passed is True
    assert slow.calls == [f"question {n}?" for n in range(5)]  # every prompt sent exactly once
    done = pipe.record(rec.id)
    assert done.smoke_progress is None
    assert done.smoke_test is not None and len(done.smoke_test.prompts or []) == 5
    assert [e.event_id for e in pipe.events("smoke_test.passed")] == [f"{rec.id}:smoke_test"]


def test_each_invocation_makes_at_least_one_call_even_when_a_call_cannot_fit(pipe):
    rec, message = pipe.tuned(1, config(smoke_test={"prompts": ["a", "b"]}))
    slow = SlowEndpoint(pipe, seconds=600)  # every call alone outlasts the budget
    with pytest.raises(SmokeTestDeadlineError):
        pipe.complete(message, "fn-1", monotonic=slow)
    assert pipe.record(rec.id).smoke_progress.done == 1
    assert pipe.complete(message, "fn-2", monotonic=slow).smoke_test_passed is True
    assert slow.calls == ["a", "b"]


def test_a_transient_failure_releases_the_claim_for_an_immediate_redelivery(pipe):
    _rec, message = pipe.tuned(1)
    pipe.tuning.failures.fail_next("generate", *[TransientBackendError("generate", 503, "unavailable")] * 2)

    with pytest.raises(TransientBackendError):
        pipe.complete(message)
    assert pipe.jobs.effect(f"{message.event_id}:smoke_test") is None

    outcome = pipe.complete(message, owner="fn-2")
    assert outcome.smoke_test_passed is True


def test_a_failed_publish_is_retried_by_the_redelivery(pipe):
    _rec, message = pipe.tuned(1)
    pipe.publisher.failures.fail_next("publish", PublishError("t", "x", "unavailable"))
    with pytest.raises(PublishError):
        pipe.complete(message)
    assert pipe.events("smoke_test.passed") == []

    outcome = pipe.complete(message, owner="fn-2")
    assert outcome.published == 1
    assert len(pipe.events("smoke_test.passed")) == 1


def test_a_transient_cleanup_failure_is_retried_by_the_redelivery(pipe):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    _v2, m2 = pipe.tuned(2)
    pipe.tuning.failures.fail_next("delete_model", *[TransientBackendError("delete", 503, "busy")] * 2)

    with pytest.raises(TransientBackendError):
        pipe.complete(m2)
    assert pipe.model(v1.id) in pipe.tuning.models

    outcome = pipe.complete(m2, owner="fn-2")
    assert outcome.retired_models == (pipe.model(v1.id),)
    assert len(pipe.events("model.deleted")) == 1


# --- other events --------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [TuningState.FAILED, TuningState.CANCELLED, TuningState.EXPIRED])
def test_unsuccessful_jobs_record_the_reason_and_publish_nothing(pipe, end):
    v1, m1 = pipe.tuned(1)
    pipe.complete(m1)
    rec, message = pipe.tuned(2, end=end)
    published = len(pipe.publisher.published)

    outcome = pipe.complete(message)

    assert outcome.kind is OutcomeKind.DONE
    assert len(pipe.publisher.published) == published
    skipped = pipe.record(rec.id).cleanup.skipped
    assert skipped.startswith(f"job {rec.status.value}")
    assert skipped.endswith("nothing cleaned up (cleanup.on_failure is off)")
    assert pipe.model(v1.id) in pipe.tuning.models
    assert pipe.tuning.calls["generate"] == 1  # only v1's smoke test
    assert pipe.complete(message).kind is OutcomeKind.DUPLICATE


def test_failed_job_reason_comes_from_the_record(pipe):
    rec, message = pipe.tuned(1, end=TuningState.FAILED)
    pipe.complete(message)
    assert pipe.record(rec.id).cleanup.skipped.startswith("job FAILED: training failed")


def test_cancelled_reason_says_the_status_once(pipe):
    # The local server (and Vertex, in its own spelling) prefix the message with the status.
    rec, message = pipe.tuned(1, end=TuningState.CANCELLED)
    error = {"code": "E_TUNING_JOB", "message": "CANCELED: the tuning job was cancelled on request."}
    pipe.jobs.update(rec.id, lambda r: r.with_changes(r.updated_at, error=RecordError.from_dict(error)))
    pipe.complete(message)
    skipped = (pipe.record(rec.id).cleanup or CleanupRecord()).skipped
    assert skipped.startswith("job CANCELLED: the tuning job was cancelled on request.;")


def test_on_failure_cleanup_retires_the_failed_jobs_own_model(pipe):
    rec, message = pipe.tuned(1, config(cleanup={"on_failure": True}), end=TuningState.CANCELLED)
    # a cancelled job that still left a model behind
    model = "projects/local/locations/us-central1/models/left-behind@1"
    pipe.tuning.add_foreign_model(model, labels={"managed-by": DEPLOYMENT})
    pipe.jobs.update(
        rec.id, lambda r: r.with_changes(r.updated_at, tuning={**(part_dict(r.tuning) or {}), "tuned_model": model})
    )

    outcome = pipe.complete(message)

    assert outcome.retired_models == (model,)
    assert model not in pipe.tuning.models
    [deleted] = pipe.events("model.deleted")
    assert deleted.data["superseded_by"] is None and deleted.data["retired_job"] == rec.id


def test_our_own_events_and_unknown_jobs_are_ignored(pipe):
    _rec, message = pipe.tuned(1)
    pipe.complete(message)
    [smoke_event] = pipe.events("smoke_test.passed")
    assert pipe.complete(to_message(smoke_event)).kind is OutcomeKind.IGNORED

    stray = build_event(EventType.JOB_SUCCEEDED, job_id="unknown", lineage="x", state="SUCCEEDED", data={})
    ignored = pipe.complete(to_message(stray))
    assert (ignored.kind, ignored.detail) == (OutcomeKind.IGNORED, "no job record with this id")


def test_a_succeeded_event_for_a_record_that_is_not_succeeded_is_ignored(pipe):
    rec, _message = pipe.tuned(1, end=TuningState.FAILED)
    fake = build_event(EventType.JOB_SUCCEEDED, job_id=rec.id, lineage=rec.lineage, state="SUCCEEDED", data={})
    outcome = pipe.complete(to_message(fake))
    assert outcome.kind is OutcomeKind.IGNORED
    assert pipe.tuning.calls["generate"] == 0


# --- reports -------------------------------------------------------------------------------------


def test_a_report_that_cannot_be_written_is_noted_and_the_verdict_stands(pipe):
    rec, message = pipe.tuned(1)
    pipe.blobs.failures.fail_next("write_bytes", PermissionDeniedError("write", 403, "storage.objects.create denied"))

    outcome = pipe.complete(message)

    assert outcome.smoke_test_passed is True
    smoke = part_dict(pipe.record(rec.id).smoke_test)
    assert smoke is not None and smoke["report_uri"] is None
    assert smoke["notes"] == [
        "report not written: write failed (403 ): storage.objects.create denied",
    ]
    [event] = pipe.events("smoke_test.passed")
    assert event.data["report_uri"] is None


def test_a_transient_report_failure_is_retried_by_the_redelivery(pipe):
    rec, message = pipe.tuned(1)
    pipe.blobs.failures.fail_next("write_bytes", BlobReadError("gs://x", "503 backend error"))
    with pytest.raises(BlobReadError):
        pipe.complete(message)
    assert pipe.record(rec.id).smoke_test is None

    pipe.complete(message, owner="fn-2")
    smoke = part_dict(pipe.record(rec.id).smoke_test)
    assert smoke is not None and smoke["report_uri"] is not None
    assert pipe.blobs.stat(BUCKET, smoke["report_uri"].removeprefix(f"gs://{BUCKET}/")) is not None
