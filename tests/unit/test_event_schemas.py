"""Every event type has a versioned JSON Schema, and every event the code builds validates against it.

The events are produced by driving the real code paths on the fakes (not by hand-writing
payloads), so a field renamed in the code or the schema fails here. When a new producer lands
(intake, completion, cleanup), add a function to ``PRODUCERS``; an event type that no tested
code path builds is reported by ``test_every_event_type_is_built_by_a_tested_code_path``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import timedelta

import jsonschema
import pytest
from helpers import T0

from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.events import SCHEMA_VERSION, EventType, load_schema
from shared.outbox import publish_pending
from shared.poller import PollOptions, run_poll
from shared.ports import OutgoingEvent, TuningJobSpec
from shared.records import DatasetRef, JobRecord, new_record
from shared.states import JobStatus, TuningState

ENVELOPE = ("schema_version", "event_id", "type", "job_id", "lineage", "state", "occurred_at")
ATTRIBUTES = {"type", "job_id", "lineage", "state", "schema_version"}


def _validator(event_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(event_type), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


# --- producers: each drives one real code path and returns what it published --------------------


def _record(n: int, lineage: str = "support-bot") -> JobRecord:
    ref = DatasetRef("acme-datasets", f"datasets/{lineage}/v{n}.jsonl", 1767225600000000 + n, lineage)
    return new_record(ref, T0)


def _poller_terminal_events() -> list[OutgoingEvent]:
    """The poller observing each terminal state (and a stall) of tuning jobs."""
    jobs, tuning, publisher = FakeJobStore(), FakeTuningBackend(quota=100), FakePublisher()
    ends = [TuningState.SUCCEEDED, TuningState.FAILED, TuningState.CANCELLED, TuningState.EXPIRED]
    for n, end in enumerate([*ends, None]):
        rec = _record(n)
        job = tuning.create_job(
            TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, f"v{n}", labels={"sftpilot-key": rec.id})
        )
        rec = rec.transition(JobStatus.SUBMITTING, T0).transition(JobStatus.PENDING, T0, tuning_job=job.name)
        rec = rec.with_changes(T0, config={"base_model": "gemini-2.5-flash", "display_name": f"support-bot-v{n}"})
        jobs.create(rec)
        if end is not None:
            tuning.set_state(job.name, TuningState.RUNNING)
            tuning.set_state(job.name, end)
    queued = _record(99).transition(JobStatus.QUEUED, T0)
    jobs.create(queued)
    tuning.quota = 0  # the queued record stays queued and stalls
    run_poll(
        jobs=jobs,
        tuning=tuning,
        publisher=publisher,
        clock=lambda: T0 + timedelta(hours=7),
        options=PollOptions(stall_after_seconds=6 * 3600),
        owner="schema-test",
    )
    return publisher.published


def _api_cancel_of_a_queued_job() -> list[OutgoingEvent]:
    """``jobs_service.cancel_job`` on a never-submitted job."""
    from shared.jobs_service import cancel_job

    jobs, publisher = FakeJobStore(), FakePublisher()
    rec = _record(1).transition(JobStatus.QUEUED, T0)
    jobs.create(rec)
    cancel_job(rec.id, principal="ops@acme.test", jobs=jobs, tuning=FakeTuningBackend(), clock=lambda: T0)
    publish_pending(rec.id, jobs=jobs, publisher=publisher, clock=lambda: T0, owner="schema-test")
    return publisher.published


def _submission_refused() -> list[OutgoingEvent]:
    """``submit_tuning_job`` when the tuning API refuses the job (FAILED_TO_SUBMIT)."""
    submission = importlib.import_module("shared.submission")
    from shared.errors import InvalidArgumentError

    jobs, tuning, publisher = FakeJobStore(), FakeTuningBackend(quota=10), FakePublisher()
    rec = _record(1).transition(JobStatus.QUEUED, T0)
    jobs.create(rec)
    tuning.failures.fail_next(
        "create_job", InvalidArgumentError("create_job", 400, "bad base model", "INVALID_ARGUMENT")
    )
    submission.submit_tuning_job(rec.id, jobs=jobs, tuning=tuning, deployment="sftpilot", clock=lambda: T0, owner="t")
    publish_pending(rec.id, jobs=jobs, publisher=publisher, clock=lambda: T0, owner="schema-test")
    return publisher.published


def _completion_smoke_tests_and_cleanup() -> list[OutgoingEvent]:
    """``handle_completion`` on three finished jobs: v1 passes, v2 passes and retires v1, v3 fails."""
    import base64
    import json

    from shared.completion import CompletionOptions, handle_completion
    from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, parse_completion_event

    jobs, tuning, publisher = FakeJobStore(), FakeTuningBackend(quota=100), FakePublisher()
    config = {
        "base_model": "gemini-2.5-flash",
        "smoke_test": {"prompts": [{"prompt": "Hi?", "contains": ["Acme"], "reference": "Hi from Acme"}]},
        "cleanup": {"enabled": True, "keep_last": 1},
    }
    answers = iter(["Hi from Acme", "Hi from Acme", "Hi"])
    tuning.responder = lambda endpoint, request: next(answers)
    for n in (1, 2, 3):
        rec = _record(n)
        job = tuning.create_job(
            TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, f"v{n}", labels={"managed-by": "sftpilot"})
        )
        rec = rec.transition(JobStatus.SUBMITTING, T0).transition(JobStatus.PENDING, T0, tuning_job=job.name)
        jobs.create(rec.with_changes(T0, config=config, created_at=T0 + timedelta(hours=n)))
        tuning.set_state(job.name, TuningState.SUCCEEDED)
        completion = FakePublisher()  # the poller's job.succeeded, delivered to the handler below
        run_poll(jobs=jobs, tuning=tuning, publisher=completion, clock=lambda: T0, options=PollOptions(), owner="p")
        [event] = completion.published
        data = {"message": {"data": base64.b64encode(json.dumps(event.data).encode()).decode(), "messageId": "1"}}
        handle_completion(
            parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED}, data),
            jobs=jobs,
            tuning=tuning,
            blobs=FakeBlobStore(),
            publisher=publisher,
            clock=lambda: T0,
            options=CompletionOptions(deployment="sftpilot", bucket="acme-datasets"),
            owner="schema-test",
            sleep=lambda s: None,
        )
    return publisher.published


def _pipeline_on_fakes() -> list[OutgoingEvent]:
    """Uploads through intake, jobs through the poller, completion events through the completion
    handler: a rejected upload, two passing versions (the second retires the first's model) and a
    version whose smoke test fails."""
    import base64

    from shared.adapters.fakes import FakeBlobStore
    from shared.completion import CompletionOptions, handle_completion
    from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, parse_completion_event
    from shared.intake import handle_upload
    from shared.retry import RetryPolicy
    from shared.settings import Settings
    from shared.upload_event import FINALIZED_EVENT_TYPE, UploadEvent

    bucket = "acme-datasets"
    settings = Settings(project="p", bucket=bucket, deployment="prod")
    blobs, jobs, tuning, publisher = FakeBlobStore(), FakeJobStore(), FakeTuningBackend(quota=10), FakePublisher()
    tuning.responder = lambda endpoint, request: "Hi there! Click 'Forgot password'. — Acme Support"
    now = [T0]
    clock = lambda: now[0]  # noqa: E731
    blobs.put(
        bucket,
        "datasets/support-bot/tuning.yaml",
        (
            "smoke_test:\n  prompts:\n    - prompt: How do I reset my password?\n      contains: ['— Acme Support']\n"
            "cleanup:\n  enabled: true\n  keep_last: 1\n"
        ).encode(),
    )
    good = "\n".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": f"Question {i}?"}]},
                    {"role": "model", "parts": [{"text": f"Hi there! Answer {i}. — Acme Support"}]},
                ]
            }
        )
        for i in range(20)
    ).encode()

    def upload(name: str, data: bytes) -> None:
        now[0] += timedelta(hours=1)
        generation = blobs.put(bucket, name, data)
        event = UploadEvent(
            f"ev-{generation}",
            f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            FINALIZED_EVENT_TYPE,
            bucket,
            name,
            generation,
            size=len(data),
            time=now[0],
        )
        handle_upload(event, blobs=blobs, jobs=jobs, publisher=publisher, tuning=tuning, settings=settings, clock=clock)

    def finish_and_complete() -> None:
        tuning.complete_all(TuningState.SUCCEEDED)
        now[0] += timedelta(minutes=5)
        before = len(publisher.published)
        run_poll(
            jobs=jobs,
            tuning=tuning,
            publisher=publisher,
            clock=clock,
            options=PollOptions.from_settings(settings),
            owner="poller",
        )
        for event in [e for e in publisher.published[before:] if e.event_type == "job.succeeded"]:
            envelope = {
                "message": {
                    "data": base64.b64encode(json.dumps(event.data).encode()).decode(),
                    "attributes": event.attributes,
                    "messageId": "1",
                    "publishTime": "2026-03-02T10:00:00Z",
                },
                "subscription": "projects/p/subscriptions/completion",
            }
            handle_completion(
                parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED, "id": "1"}, envelope),
                jobs=jobs,
                tuning=tuning,
                blobs=blobs,
                publisher=publisher,
                clock=clock,
                options=CompletionOptions(
                    deployment="prod", bucket=bucket, retry=RetryPolicy(attempts=1, initial_backoff_seconds=0.0)
                ),
                owner="completion",
                sleep=lambda _seconds: None,
            )

    upload("datasets/support-bot/broken.jsonl", b"this is not json\n")
    upload("datasets/support-bot/v1.jsonl", good)
    finish_and_complete()
    upload("datasets/support-bot/v2.jsonl", good)
    finish_and_complete()  # passes and retires v1's model
    tuning.responder = lambda endpoint, request: "I cannot help with that."
    upload("datasets/support-bot/v3.jsonl", good)
    finish_and_complete()  # the smoke test fails
    return publisher.published


def _completion_quality_gate() -> list[OutgoingEvent]:
    """``handle_completion`` with ``gate.enabled``: v1 promoted, v2 (equal) held, v3 (worse) rejected."""
    from test_gate import GatePipeline

    pipe = GatePipeline()
    for n, quality in ((1, "exact"), (2, "exact"), (3, "wrong")):
        pipe.run(n, quality)
    return pipe.publisher.published


def _intake_budget_refusal() -> list[OutgoingEvent]:
    """``handle_upload`` refusing a dataset over its budget (``dataset.rejected`` with ``budget``)."""
    from test_intake import Harness, examples

    from shared.adapters.fakes import FakeSpendLedger

    h = Harness()
    h.blobs.put("bkt", "datasets/faq/tuning.yaml", b"budget:\n  max_cost_usd: 0\n")
    h.deliver(h.upload("datasets/faq/v1.jsonl", examples(20)), spend=FakeSpendLedger())
    return h.publisher.published


PRODUCERS: dict[str, Callable[[], list[OutgoingEvent]]] = {
    "poller: terminal states and stall": _poller_terminal_events,
    "jobs API: cancel a queued job": _api_cancel_of_a_queued_job,
    "submission: tuning API refuses the job": _submission_refused,
    "completion: smoke tests and cleanup": _completion_smoke_tests_and_cleanup,
    "intake -> poller -> completion on the fakes": _pipeline_on_fakes,
    "completion: quality gate verdicts": _completion_quality_gate,
    "intake: budget refusal": _intake_budget_refusal,
}


@pytest.fixture(scope="module")
def produced() -> dict[str, list[OutgoingEvent]]:
    """Every event the producers published, by type (a producer whose module is missing is skipped)."""
    by_type: dict[str, list[OutgoingEvent]] = {}
    for name, produce in PRODUCERS.items():
        try:
            events = produce()
        except ModuleNotFoundError as missing:  # reported by the coverage test below
            print(f"producer {name!r} not available: {missing}")
            continue
        assert events, f"producer {name!r} published nothing"
        for event in events:
            by_type.setdefault(event.event_type, []).append(event)
    return by_type


# --- the schemas themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_every_event_type_has_a_valid_versioned_schema(event_type: EventType):
    try:
        schema = load_schema(event_type.value)
    except FileNotFoundError:
        pytest.fail(f"missing shared/schemas/events/{event_type.value}.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema.get("additionalProperties", True) is True, "adding a field must not break subscribers"
    assert schema["properties"]["type"] == {"const": event_type.value}
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert set(ENVELOPE) <= set(schema["required"])
    for example in schema.get("examples", []):
        _validator(event_type.value).validate(example)


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_events_built_by_the_code_validate_against_their_schema(event_type: EventType, produced):
    events = produced.get(event_type.value, [])
    if not events:
        pytest.skip(f"no tested code path builds {event_type.value} yet (see the coverage test)")
    validator = _validator(event_type.value)
    for event in events:
        errors = sorted(validator.iter_errors(event.data), key=lambda e: list(e.absolute_path))
        assert not errors, f"{event.event_id}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
        )
        assert set(event.attributes) >= ATTRIBUTES
        assert all(isinstance(v, str) for v in event.attributes.values())
        for name in ("type", "job_id", "lineage", "state", "schema_version"):
            assert event.attributes[name] == event.data[name]
        assert event.event_id == event.data["event_id"]


def test_every_event_type_is_built_by_a_tested_code_path(produced):
    uncovered = sorted(t.value for t in EventType if t.value not in produced)
    assert not uncovered, f"no producer in PRODUCERS builds {uncovered}: add one that drives the real code path"


def test_a_wrong_event_is_rejected_by_its_schema():
    schema_says_no = _validator("job.succeeded")
    event = next(e.data for e in _poller_terminal_events() if e.event_type == "job.succeeded")
    assert schema_says_no.is_valid(event)
    assert not schema_says_no.is_valid({**event, "checkpoints": "none"})
    assert not schema_says_no.is_valid({k: v for k, v in event.items() if k != "tuned_model"})
    assert not _validator("job.failed").is_valid({**event, "type": "job.failed", "state": "FAILED", "error": None})
