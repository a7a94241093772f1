"""The whole sftpilot pipeline on the in-memory fakes, driven like the platform drives it.

:class:`Pipeline` wires the three entry points (intake, poller, completion) to one set of fakes
and one controllable clock, and delivers events the way GCP does: at least once, with
redelivery after a retryable failure (the clock moves past every lease first, as the platform's
backoff would). Tests crash it, storm it and break its dependencies, then check the invariants:
one record, one tuning job, one event per event id, one smoke test.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from helpers import T0, Clock

from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
from shared.completion import CompletionOptions, CompletionOutcome, handle_completion
from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, CompletionMessage, parse_completion_event
from shared.errors import InvalidArgumentError, is_retryable
from shared.events import EventType
from shared.intake import IntakeOutcome, handle_upload
from shared.poller import PollOptions, PollSummary, run_poll
from shared.ports import OutgoingEvent, TuningJob, TuningJobSpec
from shared.records import JobRecord, record_key
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.states import JobStatus, TuningState
from shared.upload_event import FINALIZED_EVENT_TYPE, UploadEvent

BUCKET = "reliability-bucket"
DEPLOYMENT = "sftpilot-rel"
ANSWER = "Hi there! Use 'Forgot password' on the sign-in page. — Acme Support"
PROMPTS = ("How do I reset my password?", "Where do I find my invoices?")
COMPLETION_EVENTS = frozenset(
    {EventType.JOB_SUCCEEDED, EventType.JOB_FAILED, EventType.JOB_CANCELLED, EventType.JOB_EXPIRED}
)

DEFAULT_TUNING_YAML = f"""\
smoke_test:
  prompts:
    - prompt: "{PROMPTS[0]}"
      contains: ["— Acme Support"]
    - prompt: "{PROMPTS[1]}"
      contains: "Acme Support"
cleanup:
  enabled: true
  keep_last: 1
"""
"""Lives at ``datasets/tuning.yaml``: every lineage smoke-tests two prompts and retires old models."""

SCHEDULER_INTERVAL_SECONDS = 60
"""Cloud Scheduler calls the poller every minute."""

T = TypeVar("T")


class SimulatedCrash(BaseException):
    """The worker process dies here. A BaseException, so no ``except Exception`` can tidy up after it."""


def crash_once(step: object) -> Callable[[Any], None]:
    """An ``after_step(step)`` hook (intake, completion): kill the invocation the first time ``step`` is reached."""
    fired = threading.Event()

    def hook(at: Any) -> None:
        if at == step and not fired.is_set():
            fired.set()
            raise SimulatedCrash(f"killed after {at}")

    return hook


def crash_once_at(step: object, job_id: str | None = None, occurrence: int = 1) -> Callable[[Any, str], None]:
    """An ``after_step(step, job_id)`` hook (poller) that kills the run at the ``occurrence``-th matching boundary."""
    seen = [0]
    lock = threading.Lock()

    def hook(at: Any, at_job: str) -> None:
        if at != step or (job_id is not None and at_job != job_id):
            return
        with lock:
            seen[0] += 1
            fire = seen[0] == occurrence
        if fire:
            raise SimulatedCrash(f"killed after {at} ({at_job or 'run'})")

    return hook


def examples(n: int, tag: str = "q") -> bytes:
    """``n`` valid single-turn Gemini SFT examples, one per line."""
    return b"".join(
        json.dumps(
            {
                "contents": [
                    {"role": "user", "parts": [{"text": f"{tag} question {i}?"}]},
                    {"role": "model", "parts": [{"text": f"Answer {i}. — Acme Support"}]},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


BAD_ROLE_LINE = b'{"contents":[{"role":"user","parts":[{"text":"q"}]},{"role":"assistant","parts":[{"text":"a"}]}]}\n'


class SlowPublisher(FakePublisher):
    """A publisher with network latency: concurrent publishers overlap, as they do against Pub/Sub."""

    def __init__(self, latency_seconds: float) -> None:
        super().__init__()
        self.latency_seconds = latency_seconds

    def publish(self, event: OutgoingEvent) -> str:
        time.sleep(self.latency_seconds)
        return super().publish(event)


class RefusingTuningBackend(FakeTuningBackend):
    """Refuses (400 INVALID_ARGUMENT, for good) every job whose dataset name contains ``refused``."""

    def create_job(self, spec: TuningJobSpec) -> TuningJob:
        if "refused" in spec.training_dataset_uri:
            self._enter("create_job")
            raise InvalidArgumentError("create_job", 400, "base model does not support tuning", "INVALID_ARGUMENT")
        return super().create_job(spec)


def to_message(event: OutgoingEvent, message_id: str | None = None) -> CompletionMessage:
    """The event as Pub/Sub hands it to ``on_tuning_completed`` (base64 body + attributes)."""
    mid = message_id or uuid.uuid4().hex[:10]
    data = {
        "message": {
            "data": base64.b64encode(json.dumps(event.data).encode()).decode(),
            "attributes": dict(event.attributes),
            "messageId": mid,
            "publishTime": "2026-11-21T12:00:00Z",
        },
        "subscription": "projects/p/subscriptions/completion",
    }
    return parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED, "id": mid}, data)


class Pipeline:
    """Fakes at every port, one clock, and the three entry points."""

    def __init__(
        self,
        *,
        quota: int = 5,
        tuning_yaml: str | None = DEFAULT_TUNING_YAML,
        latency_seconds: float = 0.0,
        operation_polls: int = 0,
    ) -> None:
        """``operation_polls``: polls each undeploy/delete operation stays running (Vertex: minutes)."""
        self.blobs = FakeBlobStore()
        self.jobs = FakeJobStore()
        self.publisher: FakePublisher = SlowPublisher(latency_seconds) if latency_seconds else FakePublisher()
        self.tuning = RefusingTuningBackend(quota=quota, latency_seconds=latency_seconds)
        self.tuning.responder = lambda endpoint, request: ANSWER
        self.tuning.operation_polls = operation_polls
        self.clock = Clock(T0 + timedelta(seconds=2))
        self.settings = Settings(project="p", bucket=BUCKET, deployment=DEPLOYMENT)
        self.completion_options = replace(
            CompletionOptions.from_settings(self.settings),
            retry=RetryPolicy(attempts=3, initial_backoff_seconds=0.0),
        )
        self.poll_options = PollOptions.from_settings(self.settings)
        self.delivered = 0
        """How many published events were handed to the completion function so far."""
        if tuning_yaml is not None:
            self.blobs.put(BUCKET, "datasets/tuning.yaml", tuning_yaml.encode())

    # --- uploads and the three entry points ---

    def upload(self, name: str, data: bytes, *, event_id: str | None = None) -> UploadEvent:
        """Store an object and return the finalize event GCS would send for it (a second after the last)."""
        self.clock.advance(1)
        generation = self.blobs.put(BUCKET, name, data)
        return UploadEvent(
            event_id=event_id or f"ev-{generation}",
            source=f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            event_type=FINALIZED_EVENT_TYPE,
            bucket=BUCKET,
            name=name,
            generation=generation,
            size=len(data),
            time=T0,
        )

    def deliver(self, event: UploadEvent, **kwargs: Any) -> IntakeOutcome:
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

    def poll(self, **kwargs: Any) -> PollSummary:
        kwargs.setdefault("owner", f"poller-{uuid.uuid4().hex[:8]}")
        return run_poll(
            jobs=self.jobs,
            tuning=self.tuning,
            publisher=self.publisher,
            clock=self.clock,
            options=self.poll_options,
            **kwargs,
        )

    def complete(self, message: CompletionMessage, **kwargs: Any) -> CompletionOutcome:
        kwargs.setdefault("owner", f"completion-{uuid.uuid4().hex[:8]}")
        return handle_completion(
            message,
            jobs=self.jobs,
            tuning=self.tuning,
            blobs=self.blobs,
            publisher=self.publisher,
            clock=self.clock,
            options=self.completion_options,
            sleep=lambda _seconds: None,
            **kwargs,
        )

    # --- the platform: at-least-once delivery ---

    def until_acked(self, call: Callable[[], T], *, attempts: int = 6) -> T:
        """Call until it returns; a retryable failure is redelivered after every lease ran out."""
        for _ in range(attempts):
            try:
                return call()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.clock.advance(self.settings.lease_seconds + 1)
        raise AssertionError(f"still not acknowledged after {attempts} deliveries")

    def deliver_until_acked(self, event: UploadEvent) -> IntakeOutcome:
        return self.until_acked(lambda: self.deliver(event))

    def complete_until_acked(self, message: CompletionMessage) -> CompletionOutcome:
        return self.until_acked(lambda: self.complete(message))

    def deliver_new_events(self) -> list[CompletionOutcome]:
        """Hand every event published since the last call to the completion function (all of them, duplicates too)."""
        outcomes = []
        while self.delivered < len(self.publisher.published):
            event = self.publisher.published[self.delivered]
            self.delivered += 1
            message = to_message(event)
            outcomes.append(self.complete_until_acked(message))
        return outcomes

    def settle(self, rounds: int = 3) -> None:
        """Let the scheduler and Pub/Sub do their work: a minute passes, poll, deliver what was published, repeat."""
        for _ in range(rounds):
            self.clock.advance(SCHEDULER_INTERVAL_SECONDS)
            self.until_acked(self.poll)
            self.deliver_new_events()

    # --- the tuning backend's side ---

    def finish(self, record: JobRecord, state: TuningState = TuningState.SUCCEEDED) -> None:
        """The record's tuning job runs and ends in ``state``."""
        assert record.tuning_job, f"record {record.id} has no tuning job"
        self.tuning.set_state(record.tuning_job, TuningState.RUNNING)
        self.tuning.set_state(record.tuning_job, state)

    # --- what the tests look at ---

    def record(self, event: UploadEvent) -> JobRecord:
        found = self.jobs.get(record_key(event.bucket, event.name, event.generation))
        assert found is not None, f"no record for {event.uri}"
        return found

    def records_for(self, event: UploadEvent) -> list[JobRecord]:
        return [r for r in self.jobs.all() if r.dataset.uri == event.uri]

    def jobs_labelled(self, job_id: str) -> list[TuningJob]:
        """Tuning jobs carrying ``sftpilot-key=<job_id>`` (the backend's own count, not the record's)."""
        return [j for j in self.tuning.jobs.values() if j.labels.get("sftpilot-key") == job_id]

    def event_counts(self, event_type: str | None = None) -> Counter[str]:
        """How often each event id was published."""
        return Counter(e.event_id for e in self.publisher.published if event_type in (None, e.event_type))

    def events_of(self, job_id: str) -> Counter[str]:
        return Counter(e.event_id for e in self.publisher.published if e.attributes.get("job_id") == job_id)

    def prompt_runs(self, endpoint: str) -> Counter[str]:
        """How often each prompt text was sent to ``endpoint``."""
        sent = [request for target, request in self.tuning.generations if target == endpoint]
        return Counter(request.contents[-1]["parts"][0]["text"] for request in sent)

    def blob_names(self) -> set[str]:
        return {info.name for info in self.blobs.list(BUCKET, "")}

    # --- the deployed entry points (functions-framework, in-process) ---

    def services(self) -> Any:
        """``shared.wiring.Services`` backed by this pipeline's fakes and clock."""
        from shared.wiring import Services

        services = Services(settings=self.settings, clock=self.clock)
        services.__dict__.update(blobs=self.blobs, jobs=self.jobs, publisher=self.publisher, tuning=self.tuning)
        return services


def upload_cloudevent(event: UploadEvent) -> dict[str, Any]:
    """The structured CloudEvent Eventarc posts for a GCS finalize (as tests/events/gcs_finalized_dataset.json)."""
    return {
        "specversion": "1.0",
        "id": event.event_id,
        "source": event.source,
        "type": event.event_type,
        "subject": f"objects/{event.name}",
        "time": "2026-11-21T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "kind": "storage#object",
            "name": event.name,
            "bucket": event.bucket,
            "generation": str(event.generation),
            "metageneration": "1",
            "contentType": "application/jsonl",
            "size": str(event.size or 0),
            "updated": "2026-11-21T10:00:00Z",
        },
    }


def pubsub_cloudevent(event: OutgoingEvent, message_id: str = "77") -> dict[str, Any]:
    """The structured CloudEvent Eventarc posts for a Pub/Sub message (as tests/events/pubsub_job_succeeded.json)."""
    return {
        "specversion": "1.0",
        "id": message_id,
        "source": "//pubsub.googleapis.com/projects/p/topics/sftpilot-events",
        "type": PUBSUB_MESSAGE_PUBLISHED,
        "time": "2026-11-21T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "message": {
                "attributes": dict(event.attributes),
                "data": base64.b64encode(json.dumps(event.data).encode()).decode(),
                "messageId": message_id,
                "publishTime": "2026-11-21T12:00:00Z",
            },
            "subscription": "projects/p/subscriptions/eventarc-on-tuning-completed",
        },
    }


def run_to_the_end(p: Pipeline, max_rounds: int = 8) -> None:
    """Every tuning job that exists succeeds, and the platform settles, until nothing is active."""
    for _ in range(max_rounds):
        p.settle(rounds=2)
        active = [r for r in p.jobs.all() if not r.status.is_terminal]
        if not active:
            return
        for record in active:
            if record.tuning_job and not p.tuning.get_job(record.tuning_job).has_ended:
                p.finish(record)
    raise AssertionError(f"records still active: {[(r.lineage, r.status) for r in p.jobs.all()]}")


def assert_whole_pipeline_exactly_once(p: Pipeline, *, prompts_may_rerun_for: str | None = None) -> None:
    """Per record: at most one tuning job; per event id: one publication; per SUCCEEDED job one smoke test.

    ``prompts_may_rerun_for``: a job whose prompts may have run twice (a failure after prompting
    and before recording re-runs them; the recorded smoke test and its event are still one).
    """
    for record in p.jobs.all():
        assert len(p.jobs_labelled(record.id)) <= 1, f"{record.dataset.name}: several tuning jobs"
    duplicated = {eid: n for eid, n in p.event_counts().items() if n != 1}
    assert not duplicated, f"events published more than once: {duplicated}"
    for record in p.jobs.all():
        if record.status is not JobStatus.SUCCEEDED:
            continue
        assert record.smoke_test is not None and record.smoke_test.passed is True
        endpoint = record.tuning.endpoint
        runs = p.prompt_runs(endpoint)
        if record.id == prompts_may_rerun_for:
            assert set(runs) == set(PROMPTS) and max(runs.values()) <= 2
        else:
            assert runs == Counter(dict.fromkeys(PROMPTS, 1)), f"{record.dataset.name}: prompts re-run"
        assert p.event_counts(EventType.JOB_SUCCEEDED)[f"{record.id}:SUCCEEDED"] == 1
        assert p.event_counts(EventType.SMOKE_TEST_PASSED)[f"{record.id}:smoke_test"] == 1


def run_concurrently(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` on ``count`` threads released together; returns each result or exception."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def runner(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=runner, args=(i,), name=f"storm-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a storm thread hung"
    return results


def assert_only_retryable(results: Iterable[object]) -> None:
    """Every failure of a storm must be one the platform redelivers (never a silent drop)."""
    failures = [r for r in results if isinstance(r, BaseException)]
    bad = [f for f in failures if not is_retryable(f)]
    assert not bad, f"non-retryable failures in a storm: {bad[:3]}"
