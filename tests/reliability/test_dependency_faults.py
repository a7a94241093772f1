"""Faults from every dependency: retried or recorded, never silently dropped.

For each fault the first attempt must either raise an error the platform redelivers
(``shared.errors.is_retryable``) or record the problem where an operator sees it (the record,
the poll summary); the work must still be held afterwards (record, outbox or claim); and the
next delivery or poll must finish it, still exactly once. Injection uses the fakes'
``failures.fail_next`` hooks and ``FakeBlobStore.fail_reads_after``; Firestore contention is also
exercised on the real emulator (marked ``integration``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.completion import OutcomeKind
from shared.completion_message import CompletionMessage
from shared.errors import (
    BlobReadError,
    PublishError,
    QuotaExceededError,
    StoreUnavailableError,
    TransientBackendError,
    is_retryable,
)
from shared.events import EventType
from shared.intake import IntakeOutcomeKind
from shared.ports import TuningJob, TuningJobSpec
from shared.record_parts import part_dict
from shared.states import JobStatus, TuningState
from shared.upload_event import UploadEvent

from .harness import (
    Pipeline,
    RefusingTuningBackend,
    assert_whole_pipeline_exactly_once,
    examples,
    run_to_the_end,
    to_message,
)

TOPIC = "projects/p/topics/sftpilot-events"


def transient(operation: str, code: int = 503) -> TransientBackendError:
    return TransientBackendError(operation, code, "The service is currently unavailable (injected)", "UNAVAILABLE")


def quota(operation: str) -> QuotaExceededError:
    return QuotaExceededError(operation, 429, "Quota exceeded (injected)", "RESOURCE_EXHAUSTED")


TUNING_API_FAULTS: dict[str, Callable[[str], BaseException]] = {
    "429": quota,
    "503": transient,
    "504_deadline": lambda op: TransientBackendError(op, 504, "Deadline exceeded (injected)", "DEADLINE_EXCEEDED"),
    "timeout": lambda op: TimeoutError(f"{op}: read timed out (injected)"),
    "connection_reset": lambda op: ConnectionResetError(f"{op}: connection reset by peer (injected)"),
}
"""How the tuning API fails transiently: rate limits, 5xx, deadlines, client-side timeouts, dropped connections."""


def first_attempt(run: Callable[[], object]) -> BaseException | object:
    """Run once; return the outcome or the exception (which must be one the platform retries)."""
    try:
        return run()
    except Exception as exc:
        assert is_retryable(exc), f"{type(exc).__name__} is not retryable: the event would be dropped"
        return exc


# --- the tuning API --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(TUNING_API_FAULTS), ids=str)
def test_create_job_failures_are_retried_or_queued_and_end_in_one_job(pipe: Pipeline, fault: str):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.tuning.failures.fail_next("create_job", TUNING_API_FAULTS[fault]("create_job"))

    result = first_attempt(lambda: pipe.deliver(event))

    record = pipe.record(event)
    if fault == "429":  # quota full: queued, not failed (the poller submits it when capacity frees)
        assert result.kind is IntakeOutcomeKind.QUEUED and record.status is JobStatus.QUEUED
    else:  # retryable: raised for redelivery, the record keeps the submission
        assert isinstance(result, BaseException)
        assert record.status is JobStatus.SUBMITTING and record.lease is None
    assert pipe.tuning.jobs == {}
    pipe.deliver_until_acked(event)
    pipe.clock.advance(pipe.poll_options.queue_retry_seconds + 1)
    run_to_the_end(pipe)
    assert pipe.record(event).status is JobStatus.SUCCEEDED
    assert len(pipe.jobs_labelled(record.id)) == 1
    assert_whole_pipeline_exactly_once(pipe)


class CreatesThenTimesOut(RefusingTuningBackend):
    """The server creates the job, but the response never reaches us (a timeout after the fact)."""

    def __init__(self, times: int = 1) -> None:
        super().__init__(quota=5)
        self.times = times

    def create_job(self, spec: TuningJobSpec) -> TuningJob:
        job = super().create_job(spec)
        if self.times > 0:
            self.times -= 1
            raise TimeoutError("create_job: response lost after the server accepted it (injected)")
        return job


def test_a_create_that_timed_out_after_the_server_accepted_it_is_adopted_not_repeated(pipe: Pipeline):
    pipe.tuning = CreatesThenTimesOut()
    pipe.tuning.responder = Pipeline().tuning.responder
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))

    result = first_attempt(lambda: pipe.deliver(event))

    assert isinstance(result, TimeoutError)
    record = pipe.record(event)
    assert record.status is JobStatus.SUBMITTING and record.tuning_job is None
    assert len(pipe.jobs_labelled(record.id)) == 1  # the job exists; the record does not know it yet
    assert pipe.deliver_until_acked(event).kind is IntakeOutcomeKind.SUBMITTED  # adopted by its label
    assert pipe.tuning.calls["create_job"] == 1
    assert [j.name for j in pipe.jobs_labelled(record.id)] == [pipe.record(event).tuning_job]
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


def test_the_label_lookup_failing_retries_instead_of_creating_blind(pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.tuning.failures.fail_next("list_jobs", transient("list_jobs"))

    assert isinstance(first_attempt(lambda: pipe.deliver(event)), TransientBackendError)
    assert pipe.tuning.calls["create_job"] == 0, "never create without knowing whether a job exists"
    pipe.deliver_until_acked(event)
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


@pytest.mark.parametrize("fault", list(TUNING_API_FAULTS), ids=str)
def test_get_job_failures_are_reported_in_the_poll_summary_and_retried_next_run(pipe: Pipeline, fault: str):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.deliver(event)
    pipe.finish(pipe.record(event))
    pipe.tuning.failures.fail_next("get_job", TUNING_API_FAULTS[fault]("get_job"))

    summary = pipe.poll()

    [error] = summary.errors
    assert (error.job_id, error.operation, error.retryable) == (pipe.record(event).id, "get_job", True)
    assert error.code and error.message
    assert pipe.record(event).status is JobStatus.PENDING and pipe.publisher.published == []
    assert pipe.poll().errors == []
    assert pipe.record(event).status is JobStatus.SUCCEEDED
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


def succeeded_v2_after_v1(p: Pipeline) -> CompletionMessage:
    """v1 passed its smoke test already; v2's job just succeeded: its job.succeeded message (undelivered)."""
    v1 = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    p.deliver_until_acked(v1)
    p.finish(p.record(v1))
    p.settle()
    v2 = p.upload("datasets/faq/v2.jsonl", examples(20, "v2"))
    p.deliver_until_acked(v2)
    p.finish(p.record(v2))
    p.until_acked(p.poll)
    p.delivered = len(p.publisher.published)
    return to_message(p.publisher.of_type(EventType.JOB_SUCCEEDED.value)[-1])


@pytest.mark.parametrize("fault", list(TUNING_API_FAULTS), ids=str)
def test_a_flaky_endpoint_is_retried_within_the_smoke_test(pipe: Pipeline, fault: str):
    message = succeeded_v2_after_v1(pipe)
    pipe.tuning.failures.fail_next("generate", TUNING_API_FAULTS[fault]("generate"))

    outcome = pipe.complete(message)

    assert outcome.kind is OutcomeKind.DONE and outcome.smoke_test_passed is True
    record = pipe.jobs.get(message.job_id)
    assert [p["attempts"] for p in record.smoke_test.prompts] == [2, 1]  # the retry is recorded
    assert_whole_pipeline_exactly_once(pipe)


@pytest.mark.parametrize("fault", list(TUNING_API_FAULTS), ids=str)
def test_an_endpoint_down_for_longer_fails_the_delivery_and_the_redelivery_tests_once(pipe: Pipeline, fault: str):
    message = succeeded_v2_after_v1(pipe)
    attempts = pipe.completion_options.retry.attempts
    pipe.tuning.failures.fail_next("generate", *[TUNING_API_FAULTS[fault]("generate") for _ in range(attempts)])

    assert isinstance(first_attempt(lambda: pipe.complete(message)), Exception)
    claim = pipe.jobs.effect(f"{message.event_id}:smoke_test")
    assert claim is None, "the claim is given back so the redelivery starts at once"
    assert pipe.jobs.get(message.job_id).smoke_test is None
    assert pipe.event_counts(EventType.SMOKE_TEST_PASSED)[f"{message.job_id}:smoke_test"] == 0

    assert pipe.complete(message).smoke_test_passed is True  # no clock advance needed
    assert_whole_pipeline_exactly_once(pipe)
    assert pipe.tuning.calls["delete_model"] == 1


@pytest.mark.parametrize("operation", ["get_model", "undeploy_model", "delete_endpoint", "delete_model"])
def test_cleanup_failures_are_retried_by_the_redelivery_and_delete_once(pipe: Pipeline, operation: str):
    message = succeeded_v2_after_v1(pipe)
    attempts = pipe.completion_options.retry.attempts
    pipe.tuning.failures.fail_next(operation, *[transient(operation) for _ in range(attempts)])

    assert isinstance(first_attempt(lambda: pipe.complete(message)), TransientBackendError)
    record = pipe.jobs.get(message.job_id)
    assert record.smoke_test.passed is True, "the smoke test result is kept"
    assert pipe.jobs.effect(f"{message.event_id}:cleanup") is None, "the cleanup claim is given back"
    [v1] = [r for r in pipe.jobs.all() if r.id != record.id]
    assert v1.tuning.tuned_model in pipe.tuning.models, "nothing half-deleted is forgotten"

    outcome = pipe.complete(message)
    assert outcome.retired_models == (v1.tuning.tuned_model,)
    assert v1.tuning.tuned_model not in pipe.tuning.models
    assert record.tuning.tuned_model in pipe.tuning.models
    assert_whole_pipeline_exactly_once(pipe)
    assert pipe.tuning.calls["delete_model"] - (attempts if operation == "delete_model" else 0) == 1


# --- Pub/Sub publish -------------------------------------------------------------------------------


PUBLISH_FAULTS: dict[str, Callable[[], BaseException]] = {
    "publish_error": lambda: PublishError(TOPIC, "x", "503 The service was unable to fulfill your request"),
    "deadline": lambda: TimeoutError("publish future timed out (injected)"),
    "topic_not_found": lambda: RuntimeError("404 Resource not found (resource=sftpilot-events) (injected)"),
}


@pytest.mark.parametrize("fault", list(PUBLISH_FAULTS), ids=str)
def test_a_failed_rejection_publish_is_kept_in_the_outbox_and_sent_once_by_the_redelivery(pipe: Pipeline, fault):
    event = pipe.upload("datasets/faq/bad.jsonl", examples(19) + b'{"contents": []}\n')
    pipe.publisher.failures.fail_next("publish", PUBLISH_FAULTS[fault](), PUBLISH_FAULTS[fault]())

    assert isinstance(first_attempt(lambda: pipe.deliver(event)), PublishError)
    record = pipe.record(event)
    assert record.status is JobStatus.REJECTED and record.has_pending_outbox
    assert isinstance(first_attempt(lambda: pipe.deliver(event)), PublishError)  # still down
    assert pipe.deliver(event).kind is IntakeOutcomeKind.DUPLICATE  # back up: the redelivery publishes
    assert pipe.event_counts() == Counter({f"{record.id}:REJECTED": 1})
    assert not pipe.record(event).has_pending_outbox


@pytest.mark.parametrize("fault", list(PUBLISH_FAULTS), ids=str)
def test_a_failed_completion_event_publish_is_reported_and_drained_by_the_next_poll(pipe: Pipeline, fault):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.deliver(event)
    pipe.finish(pipe.record(event))
    pipe.publisher.failures.fail_next("publish", PUBLISH_FAULTS[fault]())

    summary = pipe.poll()

    [error] = summary.errors
    assert (error.operation, error.code, error.retryable) == ("publish", "E_PUBLISH", True)
    record = pipe.record(event)
    assert record.status is JobStatus.SUCCEEDED and record.has_pending_outbox  # committed, not lost
    assert pipe.poll().published == 1
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


@pytest.mark.parametrize("fault", list(PUBLISH_FAULTS), ids=str)
def test_a_failed_smoke_test_publish_is_redelivered_without_prompting_again(pipe: Pipeline, fault):
    message = succeeded_v2_after_v1(pipe)
    pipe.publisher.failures.fail_next("publish", PUBLISH_FAULTS[fault]())

    assert isinstance(first_attempt(lambda: pipe.complete(message)), PublishError)
    assert pipe.jobs.get(message.job_id).has_pending_outbox

    pipe.complete_until_acked(message)
    assert_whole_pipeline_exactly_once(pipe)  # includes: each prompt ran once


def test_the_claim_store_failing_after_pubsub_acked_republishes_only_the_same_event_id(pipe: Pipeline):
    event = pipe.upload("datasets/faq/bad.jsonl", examples(19) + b'{"contents": []}\n')
    pipe.jobs.failures.fail_next("complete_effect", StoreUnavailableError("complete_effect", "deadline exceeded"))

    assert isinstance(first_attempt(lambda: pipe.deliver(event)), StoreUnavailableError)
    run_to_the_end(pipe)

    record = pipe.record(event)
    counts = pipe.event_counts()
    assert set(counts) == {f"{record.id}:REJECTED"}, "no event lost, no other id"
    assert 1 <= counts[f"{record.id}:REJECTED"] <= 2  # at-least-once: a second copy carries the same id
    assert not record.has_pending_outbox


# --- Firestore (fakes): unavailable or contended ---------------------------------------------------


def store_down(operation: str) -> StoreUnavailableError:
    return StoreUnavailableError(operation, "transaction kept conflicting: 409 Aborted due to contention (injected)")


@pytest.mark.parametrize("operation", ["create", "get", "update", "query"])
def test_the_job_store_failing_during_intake_is_retried(pipe: Pipeline, operation: str):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.jobs.failures.fail_next(operation, store_down(operation))

    result = first_attempt(lambda: pipe.deliver(event))

    if isinstance(result, BaseException):
        assert isinstance(result, StoreUnavailableError)
        assert all(r.status in {JobStatus.RECEIVED, JobStatus.SUBMITTING} for r in pipe.jobs.all())
    pipe.deliver_until_acked(event)
    run_to_the_end(pipe)
    assert len(pipe.jobs.all()) == 1 and pipe.record(event).status is JobStatus.SUCCEEDED
    assert_whole_pipeline_exactly_once(pipe)


def test_the_job_store_failing_for_the_poll_query_fails_the_run_for_the_scheduler_to_retry(pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.deliver(event)
    pipe.finish(pipe.record(event))
    pipe.jobs.failures.fail_next("query", store_down("query"))

    assert isinstance(first_attempt(pipe.poll), StoreUnavailableError)  # HTTP 500: the scheduler retries
    assert pipe.record(event).status is JobStatus.PENDING
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


def test_contention_on_a_record_during_a_poll_is_reported_and_retried_next_run(pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.deliver(event)
    pipe.finish(pipe.record(event))
    pipe.jobs.failures.fail_next("update", store_down("update"))

    [error] = pipe.poll().errors
    assert (error.operation, error.retryable) == ("update", True)
    assert pipe.record(event).status is JobStatus.PENDING and pipe.publisher.published == []
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


@pytest.mark.parametrize("operation", ["get", "update", "acquire_effect", "query"])
def test_the_job_store_failing_during_completion_is_retried(pipe: Pipeline, operation: str):
    message = succeeded_v2_after_v1(pipe)
    pipe.jobs.failures.fail_next(operation, store_down(operation))

    assert isinstance(first_attempt(lambda: pipe.complete(message)), StoreUnavailableError)
    pipe.complete_until_acked(message)

    record = pipe.jobs.get(message.job_id)
    assert record.smoke_test.passed is True and record.cleanup.run["retired_models"]
    # A failed write of the results re-runs the prompts (nothing was recorded); all else ran once.
    rerun = message.job_id if operation == "update" else None
    assert_whole_pipeline_exactly_once(pipe, prompts_may_rerun_for=rerun)


# --- GCS reads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadFault:
    """A GCS read failure while the intake reads ``what``."""

    what: str
    arrange: Callable[[Pipeline, UploadEvent], Callable[[], None]]
    """Injects the fault; returns how to heal it."""


def _mid_stream(name_of: Callable[[UploadEvent], str], after: int) -> Callable[[Pipeline, UploadEvent], Callable]:
    def arrange(p: Pipeline, event: UploadEvent) -> Callable[[], None]:
        name = name_of(event)
        p.blobs.fail_reads_after[name] = after
        return lambda: p.blobs.fail_reads_after.pop(name)

    return arrange


def _validation_name(event: UploadEvent) -> str:
    return event.name.replace(".jsonl", ".validation.jsonl")


def _failing_call(operation: str, error: BaseException) -> Callable[[Pipeline, UploadEvent], Callable]:
    def arrange(p: Pipeline, event: UploadEvent) -> Callable[[], None]:
        p.blobs.failures.fail_next(operation, error)
        return lambda: None

    return arrange


READ_FAULTS = [
    ReadFault("dataset_mid_stream_first_chunk", _mid_stream(lambda e: e.name, 10)),
    ReadFault("dataset_mid_stream_late", _mid_stream(lambda e: e.name, 1500)),
    ReadFault("validation_set_mid_stream", _mid_stream(_validation_name, 200)),
    ReadFault("dataset_open", _failing_call("open_read", BlobReadError("gs://b/x", "503 backend error (injected)"))),
    ReadFault(
        "tuning_yaml_read", _failing_call("read_bytes", BlobReadError("gs://b/t", "connection reset (injected)"))
    ),
    ReadFault("report_write", _failing_call("write_bytes", ConnectionResetError("connection reset (injected)"))),
]


@pytest.mark.parametrize("fault", READ_FAULTS, ids=lambda f: f.what)
def test_gcs_read_errors_are_retried_and_the_full_file_is_validated_afterwards(pipe: Pipeline, fault: ReadFault):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.blobs.put(pipe.settings.bucket, "datasets/faq/v1.validation.jsonl", examples(20, "held-out"))
    heal = fault.arrange(pipe, event)

    result = first_attempt(lambda: pipe.deliver(event))

    assert isinstance(result, BaseException), "a read failure must not produce a verdict"
    records = pipe.records_for(event)
    assert all(r.status is JobStatus.RECEIVED and r.lease is None and r.validation is None for r in records)
    assert pipe.tuning.jobs == {}
    heal()
    assert pipe.deliver(event).kind is IntakeOutcomeKind.SUBMITTED  # the claim was given back: at once
    validation = part_dict(pipe.record(event).validation)
    assert validation["example_count"] == 20 and validation["validation_set"]["example_count"] == 20
    run_to_the_end(pipe)
    assert_whole_pipeline_exactly_once(pipe)


def test_a_validation_set_unreadable_mid_stream_during_the_smoke_test_is_retried():
    p = Pipeline(tuning_yaml="smoke_test: {from_validation: 3}\n")
    event = p.upload("datasets/faq/v1.jsonl", examples(20))
    validation = "datasets/faq/v1.validation.jsonl"
    p.blobs.put(p.settings.bucket, validation, examples(20, "held-out"))
    p.deliver_until_acked(event)
    p.finish(p.record(event))
    p.until_acked(p.poll)
    p.delivered = len(p.publisher.published)
    message = to_message(p.publisher.published[-1])
    p.blobs.fail_reads_after[validation] = 100

    assert isinstance(first_attempt(lambda: p.complete(message)), BlobReadError)
    assert p.tuning.generations == [] and p.jobs.get(message.job_id).smoke_test is None

    del p.blobs.fail_reads_after[validation]
    outcome = p.complete(message)
    assert outcome.smoke_test_passed is True
    smoke = part_dict(p.jobs.get(message.job_id).smoke_test)
    assert (smoke["prompt_source"], smoke["prompts_total"]) == ("validation", 3)
    assert p.event_counts(EventType.SMOKE_TEST_PASSED) == Counter({f"{message.job_id}:smoke_test": 1})


def test_an_unforeseen_storage_error_is_retried_or_recorded_never_left_in_received(pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.blobs.failures.fail_next("open_read", ValueError("unexpected response from storage (injected)"))
    try:
        pipe.deliver(event)
    except Exception as exc:
        if is_retryable(exc):
            pipe.deliver_until_acked(event)  # the platform redelivers: fine, as long as it finishes
        # else: functions/intake.py logs it and acknowledges the event; there is no redelivery
    pipe.clock.advance(pipe.settings.lease_seconds + 1)
    pipe.settle()
    record = pipe.record(event)
    assert record.status is not JobStatus.RECEIVED, "acknowledged, and left RECEIVED with nobody to finish it"
    assert record.status is JobStatus.PENDING or (record.status.is_terminal and record.error)


# --- Firestore contention on the real emulator -----------------------------------------------------


@pytest.fixture
def firestore_store(emulators, firestore_collections):
    from shared.adapters.firestore import FirestoreJobStore

    jobs, effects = firestore_collections
    return FirestoreJobStore(project=emulators.project, jobs_collection=jobs, effects_collection=effects)


@pytest.mark.integration
def test_two_transactions_on_one_record_both_land_and_the_later_one_saw_the_earlier(firestore_store):
    from shared.records import DatasetRef, HistoryEntry, new_record, utcnow

    record = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 1, "faq"), utcnow())
    assert firestore_store.create(record)
    first_inside, second_called = threading.Event(), threading.Event()
    views: dict[str, list[list[str]]] = {"first": [], "second": []}

    def note(current, who):
        views[who].append([h.note for h in current.history])
        entry = HistoryEntry(current.status, utcnow(), who)
        return current.with_changes(current.updated_at, history=(*current.history, entry))

    def first(current):
        first_inside.set()
        second_called.wait(timeout=5)  # hold this transaction open until the other one has read too
        return note(current, "first")

    def second(current):
        second_called.set()
        return note(current, "second")

    worker = threading.Thread(target=lambda: firestore_store.update(record.id, first))
    worker.start()
    assert first_inside.wait(timeout=10)
    firestore_store.update(record.id, second)
    worker.join(timeout=30)

    notes = [h.note for h in firestore_store.get(record.id).history][1:]
    assert sorted(notes) == ["first", "second"], "no update lost"
    earlier, later = notes
    assert earlier in views[later][-1], "the later commit was computed on top of the earlier one"
    assert len(views["first"]) + len(views["second"]) >= 3, "the contended transaction ran its mutation again"


@pytest.mark.integration
def test_two_pollers_contending_on_one_finished_job_on_firestore_announce_it_once(firestore_store):
    from shared.adapters.fakes import FakePublisher, FakeTuningBackend
    from shared.poller import PollOptions, run_poll
    from shared.records import DatasetRef, new_record, utcnow

    tuning, publisher = FakeTuningBackend(latency_seconds=0.01), FakePublisher()
    record = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 1, "faq"), utcnow())
    job = tuning.create_job(TuningJobSpec("gemini-2.5-flash", record.dataset.gcs_uri, "faq-v1"))
    record = record.transition(JobStatus.SUBMITTING, utcnow()).transition(
        JobStatus.PENDING, utcnow(), tuning_job=job.name
    )
    assert firestore_store.create(record)
    tuning.set_state(job.name, TuningState.SUCCEEDED)
    barrier = threading.Barrier(2)
    summaries = []

    def poller(owner: str) -> None:
        barrier.wait()
        summaries.append(
            run_poll(
                jobs=firestore_store,
                tuning=tuning,
                publisher=publisher,
                clock=utcnow,
                options=PollOptions(),
                owner=owner,
            )
        )

    threads = [threading.Thread(target=poller, args=(f"poller-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(summaries) == 2 and all(s.errors == [] or all(e.retryable for e in s.errors) for s in summaries)
    stored = firestore_store.get(record.id)
    assert stored.status is JobStatus.SUCCEEDED and not stored.has_pending_outbox
    assert [e.event_id for e in publisher.published] == [f"{record.id}:SUCCEEDED"]
    assert sum(s.published for s in summaries) == 1
