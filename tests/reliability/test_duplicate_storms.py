"""Duplicate storms: 100 concurrent deliveries of the same thing, for every event the functions receive.

Each storm releases 100 threads at once (a barrier) on the same upload event, scheduler tick or
Pub/Sub message. Losers may only fail with a retryable error (the platform redelivers those; the
test then does, too). Afterwards there is one record, one tuning job, one event per event id,
one smoke test per prompt and one cleanup, whatever the interleaving. Storms run through the
domain entry points and, once per function, through the real in-process functions-framework app.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import functions_framework
import pytest

import shared.wiring as wiring
from shared.completion import OutcomeKind
from shared.errors import ClaimInProgressError
from shared.events import EventType
from shared.intake import IntakeOutcome, IntakeOutcomeKind
from shared.ports import OutgoingEvent
from shared.states import JobStatus, TuningState

from .harness import (
    BAD_ROLE_LINE,
    BUCKET,
    COMPLETION_EVENTS,
    PROMPTS,
    Pipeline,
    assert_only_retryable,
    assert_whole_pipeline_exactly_once,
    examples,
    pubsub_cloudevent,
    run_concurrently,
    run_to_the_end,
    to_message,
    upload_cloudevent,
)

STORM = 100
LATENCY = 0.002
"""Seconds every backend and Pub/Sub call takes in a storm: the racers overlap like real network calls."""
ROOT = Path(__file__).resolve().parents[2]
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture
def pipe() -> Pipeline:
    """Storms run with network-like latency on every backend and Pub/Sub call."""
    return Pipeline(latency_seconds=LATENCY)


# --- uploads -------------------------------------------------------------------------------------


def test_hundred_deliveries_of_one_upload_make_one_record_and_one_job(pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(200))

    results = run_concurrently(STORM, lambda _i: pipe.deliver(event))

    assert_only_retryable(results)
    kinds = Counter(r.kind for r in results if isinstance(r, IntakeOutcome))
    assert kinds[IntakeOutcomeKind.SUBMITTED] == 1
    assert set(kinds) <= {IntakeOutcomeKind.SUBMITTED, IntakeOutcomeKind.DUPLICATE}
    for failed in [r for r in results if isinstance(r, BaseException)]:
        assert isinstance(failed, ClaimInProgressError)
        assert pipe.deliver_until_acked(event).kind is IntakeOutcomeKind.DUPLICATE  # the platform's redelivery
    [record] = pipe.jobs.all()
    assert record.status is JobStatus.PENDING
    assert [j.name for j in pipe.jobs_labelled(record.id)] == [record.tuning_job]
    assert pipe.tuning.calls["create_job"] == 1
    assert pipe.publisher.published == []


def test_hundred_deliveries_of_an_invalid_upload_announce_the_rejection_once(pipe: Pipeline):
    event = pipe.upload("datasets/faq/bad.jsonl", examples(50) + BAD_ROLE_LINE)

    results = run_concurrently(STORM, lambda _i: pipe.deliver(event))

    assert_only_retryable(results)
    for _ in [r for r in results if isinstance(r, BaseException)]:
        pipe.deliver_until_acked(event)
    [record] = pipe.jobs.all()
    assert record.status is JobStatus.REJECTED
    assert pipe.event_counts() == Counter({f"{record.id}:REJECTED": 1})
    assert pipe.tuning.calls["create_job"] == 0
    reports = [n for n in pipe.blob_names() if n.startswith("reports/")]
    assert reports == [f"reports/faq/bad/{event.generation}/validation.json"]


# --- scheduler ticks -----------------------------------------------------------------------------


def test_hundred_concurrent_polls_announce_once_and_submit_once():
    p = Pipeline(quota=1, latency_seconds=LATENCY)
    ended = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    p.deliver(ended)
    queued = p.upload("datasets/faq/v2.jsonl", examples(20, "v2"))
    assert p.deliver(queued).kind is IntakeOutcomeKind.QUEUED
    p.finish(p.record(ended))
    p.tuning.quota = 5  # plenty of room: only the submission lease stands between the pollers and 100 jobs
    p.clock.advance(p.poll_options.queue_retry_seconds + 1)  # every poller may knock on the queue

    results = run_concurrently(STORM, lambda i: p.poll(owner=f"poller-{i}"))

    assert_only_retryable(results)
    ended_id, queued_id = p.record(ended).id, p.record(queued).id
    assert p.record(ended).status is JobStatus.SUCCEEDED
    assert p.event_counts() == Counter({f"{ended_id}:SUCCEEDED": 1})
    assert p.record(queued).status is JobStatus.PENDING
    assert [j.name for j in p.jobs_labelled(queued_id)] == [p.record(queued).tuning_job]
    assert sum(1 for r in results if not isinstance(r, BaseException) and r.published) == 1
    run_to_the_end(p)
    assert_whole_pipeline_exactly_once(p)


# --- Pub/Sub messages: every event type on the topic ----------------------------------------------


def _after_v1_passed(p: Pipeline) -> None:
    v1 = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    p.deliver_until_acked(v1)
    p.finish(p.record(v1))
    p.settle()


def _job_ended(state: TuningState) -> Callable[[Pipeline], OutgoingEvent]:
    def produce(p: Pipeline) -> OutgoingEvent:
        _after_v1_passed(p)
        v2 = p.upload("datasets/faq/v2.jsonl", examples(20, "v2"))
        p.deliver_until_acked(v2)
        p.finish(p.record(v2), state)
        p.until_acked(p.poll)
        return p.publisher.published[-1]

    return produce


def _published_by_the_pipeline(event_type: EventType) -> Callable[[Pipeline], OutgoingEvent]:
    def produce(p: Pipeline) -> OutgoingEvent:
        _job_ended(TuningState.SUCCEEDED)(p)
        p.settle()
        return p.publisher.of_type(event_type.value)[-1]

    return produce


def _rejected(p: Pipeline) -> OutgoingEvent:
    p.deliver(p.upload("datasets/faq/bad.jsonl", examples(19) + BAD_ROLE_LINE))
    return p.publisher.of_type(EventType.DATASET_REJECTED.value)[-1]


def _stalled(p: Pipeline) -> OutgoingEvent:
    p.deliver(p.upload("datasets/faq/v1.jsonl", examples(20)))
    p.clock.advance(p.settings.stall_after_seconds + 60)
    p.poll()
    return p.publisher.of_type(EventType.JOB_STALLED.value)[-1]


def _smoke_failed(p: Pipeline) -> OutgoingEvent:
    p.tuning.responder = lambda endpoint, request: "no idea"
    return _published_by_the_pipeline(EventType.SMOKE_TEST_FAILED)(p)


GATE_YAML = b"gate:\n  enabled: true\n  against: [live]\n"


def _gate_verdict(event_type: EventType, second: bool) -> Callable[[Pipeline], OutgoingEvent]:
    """The quality gate on: v1 is promoted (first live model); v2 is held (nothing to show it is better)."""

    def produce(p: Pipeline) -> OutgoingEvent:
        p.blobs.put(BUCKET, "datasets/faq/tuning.yaml", GATE_YAML)
        if second:
            _published_by_the_pipeline(event_type)(p)
        else:
            _after_v1_passed(p)
        return p.publisher.of_type(event_type.value)[-1]

    return produce


def _gate_rejected(p: Pipeline) -> OutgoingEvent:
    p.tuning.responder = lambda endpoint, request: "no idea"  # the smoke test fails: REJECTED
    return _gate_verdict(EventType.MODEL_REJECTED, second=False)(p)


EVENT_OF_TYPE: dict[EventType, Callable[[Pipeline], OutgoingEvent]] = {
    EventType.JOB_SUCCEEDED: _job_ended(TuningState.SUCCEEDED),
    EventType.JOB_FAILED: _job_ended(TuningState.FAILED),
    EventType.JOB_CANCELLED: _job_ended(TuningState.CANCELLED),
    EventType.JOB_EXPIRED: _job_ended(TuningState.EXPIRED),
    EventType.DATASET_REJECTED: _rejected,
    EventType.JOB_STALLED: _stalled,
    EventType.SMOKE_TEST_PASSED: _published_by_the_pipeline(EventType.SMOKE_TEST_PASSED),
    EventType.SMOKE_TEST_FAILED: _smoke_failed,
    EventType.MODEL_DELETED: _published_by_the_pipeline(EventType.MODEL_DELETED),
    EventType.MODEL_PROMOTED: _gate_verdict(EventType.MODEL_PROMOTED, second=False),
    EventType.MODEL_HELD: _gate_verdict(EventType.MODEL_HELD, second=True),
    EventType.MODEL_REJECTED: _gate_rejected,
}
"""How the real pipeline produces one event of each type (the storms deliver that exact event)."""


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
def test_hundred_deliveries_of_each_event_type_have_one_effect(event_type: EventType):
    assert event_type in EVENT_OF_TYPE, f"no storm for {event_type}: add how the pipeline produces it"
    p = Pipeline(latency_seconds=LATENCY)
    event = EVENT_OF_TYPE[event_type](p)
    assert event.event_type == event_type.value
    published_before = Counter(p.event_counts())
    calls_before, writes_before = Counter(p.tuning.calls), p.jobs.writes
    generations_before = len(p.tuning.generations)

    results = run_concurrently(STORM, lambda i: p.complete(to_message(event, message_id=str(i))))

    assert_only_retryable(results)
    for _ in [r for r in results if isinstance(r, BaseException)]:
        p.complete_until_acked(to_message(event))  # Pub/Sub redelivers what was nacked
    outcomes = [r for r in results if not isinstance(r, BaseException)]
    new_events = p.event_counts() - published_before
    assert all(n == 1 for n in new_events.values()), f"published more than once: {new_events}"

    if event_type not in COMPLETION_EVENTS:
        assert {o.kind for o in outcomes} == {OutcomeKind.IGNORED}
        assert (p.jobs.writes, Counter(p.tuning.calls), new_events) == (writes_before, calls_before, Counter())
        return
    record = p.jobs.get(event.attributes["job_id"])
    assert record is not None
    assert sum(1 for o in outcomes if o.kind is OutcomeKind.DONE) >= 1
    if event_type is EventType.JOB_SUCCEEDED:
        endpoint = record.tuning.endpoint
        assert p.prompt_runs(endpoint) == Counter(dict.fromkeys(PROMPTS, 1)), "one smoke test"
        [v1] = [r for r in p.jobs.all() if r.id != record.id]
        retired = v1.tuning.tuned_model
        assert new_events == Counter(
            {f"{record.id}:smoke_test": 1, f"{record.id}:model.deleted:{retired.rsplit('/', 1)[-1]}": 1}
        )
        assert p.tuning.calls["delete_model"] - calls_before["delete_model"] == 1, "one cleanup"
        assert retired not in p.tuning.models and record.tuning.tuned_model in p.tuning.models
        assert record.cleanup.run["retired_models"] == [retired]
    else:
        assert len(p.tuning.generations) == generations_before
        assert new_events == Counter()
        assert record.cleanup is not None and record.cleanup.event_id == event.event_id
        assert "nothing cleaned up" in record.cleanup.skipped
        assert p.tuning.calls["delete_model"] == calls_before["delete_model"]


# --- through the deployed functions (functions-framework, in-process) ------------------------------


def _app(monkeypatch, p: Pipeline, target: str, source: str, signature: str):
    wiring.install_services(p.services())
    return functions_framework.create_app(target, str(ROOT / "functions" / source), signature)


def test_hundred_upload_events_through_the_deployed_function(monkeypatch, pipe: Pipeline):
    app = _app(monkeypatch, pipe, "on_dataset_uploaded", "intake.py", "cloudevent")
    event = pipe.upload("datasets/faq/v1.jsonl", examples(200))
    body = json.dumps(upload_cloudevent(event))

    codes = run_concurrently(STORM, lambda _i: app.test_client().post("/", data=body, headers=STRUCTURED).status_code)

    assert set(codes) <= {200, 500}, codes  # 500 = "redeliver me" (a claim was held elsewhere)
    client = app.test_client()
    for _ in [c for c in codes if c == 500]:
        pipe.clock.advance(pipe.settings.lease_seconds + 1)
        assert client.post("/", data=body, headers=STRUCTURED).status_code == 200
    [record] = pipe.jobs.all()
    assert record.status is JobStatus.PENDING
    assert [j.name for j in pipe.jobs_labelled(record.id)] == [record.tuning_job]
    assert pipe.tuning.calls["create_job"] == 1


def test_hundred_scheduler_calls_through_the_deployed_function(monkeypatch, pipe: Pipeline):
    event = pipe.upload("datasets/faq/v1.jsonl", examples(20))
    pipe.deliver(event)
    pipe.finish(pipe.record(event))
    app = _app(monkeypatch, pipe, "poll_tuning_jobs", "poller.py", "http")

    responses = run_concurrently(STORM, lambda _i: app.test_client().post("/", json={}))

    assert {r.status_code for r in responses} == {200}
    assert sum(r.get_json()["published"] for r in responses) == 1
    assert pipe.event_counts() == Counter({f"{pipe.record(event).id}:SUCCEEDED": 1})


def test_hundred_job_succeeded_messages_through_the_deployed_function(monkeypatch):
    p = Pipeline(latency_seconds=LATENCY)
    event = _job_ended(TuningState.SUCCEEDED)(p)
    app = _app(monkeypatch, p, "on_tuning_completed", "completion.py", "cloudevent")
    before = Counter(p.event_counts())

    def post(i: int) -> int:
        body = json.dumps(pubsub_cloudevent(event, message_id=str(1000 + i)))
        return app.test_client().post("/", data=body, headers=STRUCTURED).status_code

    codes = run_concurrently(STORM, post)

    assert set(codes) <= {200, 500}, codes
    for i, _ in enumerate([c for c in codes if c == 500]):
        p.clock.advance(p.settings.lease_seconds + 1)
        assert post(i) == 200
    record = p.jobs.get(event.attributes["job_id"])
    assert record is not None and record.smoke_test.passed is True
    assert p.prompt_runs(record.tuning.endpoint) == Counter(dict.fromkeys(PROMPTS, 1))
    new_events = p.event_counts() - before
    assert sorted(new_events.values()) == [1, 1]  # smoke_test.passed and model.deleted, once each
    assert p.tuning.calls["delete_model"] == 1
