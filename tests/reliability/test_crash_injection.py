"""Crash injection at every step boundary of intake, poller and completion.

Each test kills the worker (``SimulatedCrash``, a BaseException nothing tidies up after) right
after one step, lets the platform do what it does (the dead worker's lease runs out, the event is
redelivered, the scheduler polls), and checks: exactly one tuning job per dataset, every event
published, each exactly once (or, in the one window the outbox documents, twice with the same
id), one smoke test per completion event, and every record in its expected final status.

The tests are parametrised over the step enums themselves (``list(IntakeStep)``, ...), and each
step must be reached by a declared scenario: adding a step without a crash test fails here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.adapters.fakes import FakePublisher
from shared.completion import CompletionStep
from shared.errors import PublishError
from shared.events import EventType
from shared.intake import IntakeOutcomeKind, IntakeStep
from shared.outbox import PUBLISH_LEASE_SECONDS
from shared.poller import PollStep
from shared.ports import OutgoingEvent
from shared.records import JobRecord
from shared.states import JobStatus, TuningState
from shared.submission import SubmitStep, submit_tuning_job
from shared.upload_event import UploadEvent

from .harness import (
    BAD_ROLE_LINE,
    PROMPTS,
    Pipeline,
    SimulatedCrash,
    assert_whole_pipeline_exactly_once,
    crash_once,
    crash_once_at,
    examples,
    run_to_the_end,
    to_message,
)

# --- intake --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntakeScenario:
    """An upload that, without crashes, passes exactly ``steps`` and ends in ``final_status``."""

    name: str
    arrange: Callable[[Pipeline], UploadEvent]
    steps: tuple[IntakeStep, ...]
    final_status: JobStatus
    tuning_jobs: int
    events: tuple[EventType, ...]


def _valid(p: Pipeline) -> UploadEvent:
    return p.upload("datasets/faq/v1.jsonl", examples(20))


def _rejected(p: Pipeline) -> UploadEvent:
    return p.upload("datasets/faq/bad.jsonl", examples(19) + BAD_ROLE_LINE)


def _queued_behind_older_upload(p: Pipeline) -> UploadEvent:
    p.tuning.quota = 1
    assert p.deliver(p.upload("datasets/faq/v0.jsonl", examples(20))).kind is IntakeOutcomeKind.SUBMITTED
    assert p.deliver(p.upload("datasets/faq/v1.jsonl", examples(20))).kind is IntakeOutcomeKind.QUEUED
    return p.upload("datasets/faq/v2.jsonl", examples(20))


def _refused_by_the_tuning_api(p: Pipeline) -> UploadEvent:
    return p.upload("datasets/faq/refused.jsonl", examples(20))


_HEAD = (IntakeStep.CLAIMED, IntakeStep.VALIDATED, IntakeStep.REPORT_WRITTEN, IntakeStep.VERDICT_RECORDED)
INTAKE_SCENARIOS = (
    IntakeScenario(
        "valid",
        _valid,
        (*_HEAD, IntakeStep.SUBMITTING_RECORDED, IntakeStep.JOB_CREATED, IntakeStep.JOB_RECORDED),
        JobStatus.PENDING,
        1,
        (),
    ),
    IntakeScenario(
        "rejected", _rejected, (*_HEAD, IntakeStep.PUBLISHED), JobStatus.REJECTED, 0, (EventType.DATASET_REJECTED,)
    ),
    IntakeScenario(
        "queued_behind_older_upload",
        _queued_behind_older_upload,
        (*_HEAD, IntakeStep.QUEUED),
        JobStatus.QUEUED,
        0,
        (),
    ),
    IntakeScenario(
        "refused_by_the_tuning_api",
        _refused_by_the_tuning_api,
        (*_HEAD, IntakeStep.SUBMITTING_RECORDED, IntakeStep.PUBLISHED),
        JobStatus.FAILED_TO_SUBMIT,
        0,
        (EventType.JOB_FAILED,),
    ),
)


@pytest.mark.parametrize("scenario", INTAKE_SCENARIOS, ids=lambda s: s.name)
def test_intake_scenarios_pass_exactly_their_declared_steps(scenario: IntakeScenario):
    p = Pipeline()
    event = scenario.arrange(p)
    seen: list[IntakeStep] = []
    p.deliver(event, after_step=seen.append)
    assert tuple(seen) == scenario.steps
    assert p.record(event).status is scenario.final_status


@pytest.mark.parametrize("step", list(IntakeStep), ids=str)
def test_intake_crash_at_every_step_boundary(step: IntakeStep):
    scenarios = [s for s in INTAKE_SCENARIOS if step in s.steps]
    assert scenarios, f"IntakeStep.{step.name} is reached by no crash scenario: add one to INTAKE_SCENARIOS"
    for scenario in scenarios:
        p = Pipeline()
        event = scenario.arrange(p)
        with pytest.raises(SimulatedCrash):
            p.deliver(event, after_step=crash_once(step))
        p.clock.advance(p.settings.lease_seconds + 1)  # the dead worker's lease runs out
        p.deliver_until_acked(event)  # the platform redelivers ...
        assert p.deliver_until_acked(event).kind is IntakeOutcomeKind.DUPLICATE  # ... and a late duplicate arrives
        p.settle()

        [record] = p.records_for(event)
        assert record.status is scenario.final_status, scenario.name
        assert len(p.jobs_labelled(record.id)) == scenario.tuning_jobs, scenario.name
        assert record.tuning_job is None or [j.name for j in p.jobs_labelled(record.id)] == [record.tuning_job]
        expected = Counter({f"{record.id}:{record.status.value}": 1} if scenario.events else {})
        assert p.events_of(record.id) == expected, scenario.name
        assert not record.has_pending_outbox
        report = f"reports/faq/{record.dataset.stem}/{record.dataset.generation}/validation.json"
        assert report in p.blob_names(), scenario.name

        # Nothing lost downstream either: every dataset of the scenario is trained, announced and
        # smoke-tested exactly once.
        run_to_the_end(p)
        assert_whole_pipeline_exactly_once(p)


# --- poller --------------------------------------------------------------------------------------


@dataclass
class PollWorld:
    """Four records, each needing a different kind of work from the next poll."""

    p: Pipeline
    ended: UploadEvent
    """RUNNING, its job just SUCCEEDED: reconcile, commit, publish job.succeeded."""
    queued: UploadEvent
    """QUEUED for quota: submitted once the ended job frees capacity."""
    orphan: UploadEvent
    """SUBMITTING, its intake died after create_job: adopted by label."""
    unpublished: UploadEvent
    """REJECTED, its dataset.rejected never went out (Pub/Sub was down): drained."""


def poll_world() -> PollWorld:
    p = Pipeline(quota=5)
    ended = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    assert p.deliver(ended).kind is IntakeOutcomeKind.SUBMITTED
    orphan = p.upload("datasets/faq/v4.jsonl", examples(20, "v4"))
    with pytest.raises(SimulatedCrash):
        p.deliver(orphan, after_step=crash_once(IntakeStep.JOB_CREATED))
    p.tuning.quota = 2  # both jobs are active: the next upload has to wait
    queued = p.upload("datasets/faq/v2.jsonl", examples(20, "v2"))
    assert p.deliver(queued).kind is IntakeOutcomeKind.QUEUED
    unpublished = p.upload("datasets/faq/bad.jsonl", examples(19) + BAD_ROLE_LINE)
    p.publisher.failures.fail_next("publish", PublishError(p.publisher.topic, "x", "unavailable (injected)"))
    with pytest.raises(PublishError):
        p.deliver(unpublished)
    p.finish(p.record(ended))
    p.clock.advance(p.settings.lease_seconds + 1)  # the orphan's writer is gone for good
    return PollWorld(p, ended, queued, orphan, unpublished)


def poll_trace() -> list[tuple[PollStep, str]]:
    world = poll_world()
    trace: list[tuple[PollStep, str]] = []
    world.p.poll(after_step=lambda step, job_id: trace.append((step, job_id)))
    return trace


def assert_poll_world_settled(world: PollWorld) -> None:
    p = world.p
    expected_status = {
        world.ended: JobStatus.SUCCEEDED,
        world.queued: JobStatus.PENDING,
        world.orphan: JobStatus.PENDING,
        world.unpublished: JobStatus.REJECTED,
    }
    for event, status in expected_status.items():
        [record] = p.records_for(event)
        assert record.status is status, event.name
        assert not record.has_pending_outbox, event.name
    for event in (world.ended, world.queued, world.orphan):
        record = p.record(event)
        assert [j.name for j in p.jobs_labelled(record.id)] == [record.tuning_job], event.name
    assert p.jobs_labelled(p.record(world.unpublished).id) == []
    ended_id, bad_id = p.record(world.ended).id, p.record(world.unpublished).id
    assert p.events_of(ended_id) == Counter({f"{ended_id}:SUCCEEDED": 1, f"{ended_id}:smoke_test": 1})
    assert p.events_of(bad_id) == Counter({f"{bad_id}:REJECTED": 1})
    assert p.events_of(p.record(world.queued).id) == Counter()
    assert p.events_of(p.record(world.orphan).id) == Counter()


def test_the_poll_world_reaches_every_poll_step():
    reached = {step for step, _ in poll_trace()}
    missing = set(PollStep) - reached
    assert not missing, f"no crash scenario reaches {sorted(missing)}: extend poll_world()"


@pytest.mark.parametrize("step", list(PollStep), ids=str)
def test_poller_crash_at_every_step_boundary(step: PollStep):
    occurrences = sum(1 for seen, _ in poll_trace() if seen is step)
    assert occurrences, f"PollStep.{step.name} is reached by no crash scenario: extend poll_world()"
    for occurrence in range(1, occurrences + 1):
        world = poll_world()
        p = world.p
        with pytest.raises(SimulatedCrash):
            p.poll(after_step=crash_once_at(step, occurrence=occurrence))
        p.clock.advance(PUBLISH_LEASE_SECONDS + 1)  # claims of the dead run expire
        p.settle()  # the next scheduler ticks, and Pub/Sub delivers what they publish
        for event in (world.ended, world.queued, world.orphan, world.unpublished):
            p.deliver_until_acked(event)  # late redeliveries of the upload events change nothing
        assert_poll_world_settled(world)
        run_to_the_end(p)
        assert_whole_pipeline_exactly_once(p)


@pytest.mark.parametrize("step", list(SubmitStep), ids=str)
def test_a_poller_submission_crash_at_every_submit_step_ends_with_one_job(step: SubmitStep):
    """The poller submits QUEUED records through the same function the intake uses; crash inside it."""
    p = Pipeline(quota=1)
    first = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    p.deliver(first)
    queued = p.upload("datasets/faq/v2.jsonl", examples(20, "v2"))
    assert p.deliver(queued).kind is IntakeOutcomeKind.QUEUED
    p.finish(p.record(first))  # capacity frees: a poller submits v2 ...
    record = p.record(queued)
    assert record.status is JobStatus.QUEUED
    with pytest.raises(SimulatedCrash):  # ... and dies inside the submission
        submit_tuning_job(
            record.id,
            jobs=p.jobs,
            tuning=p.tuning,
            deployment=p.settings.deployment,
            clock=p.clock,
            owner="poller-dead",
            lease_seconds=p.settings.lease_seconds,
            after_step=crash_once(step),
        )
    p.clock.advance(p.settings.lease_seconds + 1)
    p.settle()
    stored = p.record(queued)
    assert stored.status is JobStatus.PENDING
    assert [j.name for j in p.jobs_labelled(stored.id)] == [stored.tuning_job]
    run_to_the_end(p)
    assert_whole_pipeline_exactly_once(p)


# --- completion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionScenario:
    """A completion event that, without crashes, passes exactly ``steps``."""

    name: str
    arrange: Callable[[Pipeline], tuple[OutgoingEvent, JobRecord | None]]
    """Returns the event to deliver and the record whose model it should retire (if any)."""
    steps: tuple[CompletionStep, ...]


def _tuned(p: Pipeline, name: str, end: TuningState = TuningState.SUCCEEDED) -> OutgoingEvent:
    """Upload, submit, end the job in ``end``, poll: returns the completion event (not delivered yet)."""
    event = p.upload(name, examples(20, name))
    p.deliver_until_acked(event)
    p.finish(p.record(event), end)
    before = len(p.publisher.published)
    p.until_acked(p.poll)
    [completion] = p.publisher.published[before:]
    p.delivered = len(p.publisher.published)  # the test delivers this one itself
    return completion


def _v2_supersedes_v1(p: Pipeline) -> tuple[OutgoingEvent, JobRecord | None]:
    v1 = p.upload("datasets/faq/v1.jsonl", examples(20, "v1"))
    p.deliver_until_acked(v1)
    p.finish(p.record(v1))
    p.settle()
    assert p.record(v1).smoke_test.passed is True
    return _tuned(p, "datasets/faq/v2.jsonl"), p.record(v1)


def _failed_job_with_own_cleanup(p: Pipeline) -> tuple[OutgoingEvent, JobRecord | None]:
    p.blobs.put(p.settings.bucket, "datasets/faq/tuning.yaml", b"cleanup: {enabled: true, on_failure: true}\n")
    return _tuned(p, "datasets/faq/v1.jsonl", TuningState.FAILED), None


COMPLETION_SCENARIOS = (
    CompletionScenario("v2_supersedes_v1", _v2_supersedes_v1, tuple(CompletionStep)),
    CompletionScenario("failed_job_with_own_cleanup", _failed_job_with_own_cleanup, (CompletionStep.CLEANED,)),
)

PROMPT_RUNS_AFTER_A_CRASH_AT: dict[CompletionStep, int] = {CompletionStep.PROMPTED: 2}
"""A crash after the prompts ran but before their results were recorded re-runs them once the lease
expires (prompts are reads; nothing was recorded). At every other boundary each prompt runs once."""


@pytest.mark.parametrize("scenario", COMPLETION_SCENARIOS, ids=lambda s: s.name)
def test_completion_scenarios_pass_exactly_their_declared_steps(scenario: CompletionScenario):
    p = Pipeline()
    event, _ = scenario.arrange(p)
    seen: list[CompletionStep] = []
    p.complete(to_message(event), after_step=seen.append)
    assert tuple(seen) == scenario.steps


@pytest.mark.parametrize("step", list(CompletionStep), ids=str)
def test_completion_crash_at_every_step_boundary(step: CompletionStep):
    scenarios = [s for s in COMPLETION_SCENARIOS if step in s.steps]
    assert scenarios, f"CompletionStep.{step.name} is reached by no crash scenario: add one to COMPLETION_SCENARIOS"
    for scenario in scenarios:
        crash_completion_and_recover(scenario, step)


def crash_completion_and_recover(scenario: CompletionScenario, step: CompletionStep) -> None:
    p = Pipeline()
    event, superseded = scenario.arrange(p)
    message = to_message(event)
    job_id = message.job_id
    with pytest.raises(SimulatedCrash):
        p.complete(message, after_step=crash_once(step))
    p.clock.advance(p.settings.lease_seconds + 1)  # the dead worker's claims expire
    p.complete_until_acked(message)  # Pub/Sub redelivers ...
    p.complete_until_acked(to_message(event))  # ... and once more, as a new message
    p.settle()

    record = p.jobs.get(job_id)
    assert record is not None
    duplicated = {eid: n for eid, n in p.event_counts().items() if n != 1}
    assert not duplicated, f"{scenario.name}: events published more than once: {duplicated}"
    if record.status is not JobStatus.SUCCEEDED:
        assert record.cleanup is not None and record.cleanup.run is not None, scenario.name
        assert p.tuning.generations == []
        return
    runs = PROMPT_RUNS_AFTER_A_CRASH_AT.get(step, 1)
    assert p.prompt_runs(record.tuning.endpoint) == Counter(dict.fromkeys(PROMPTS, runs))
    smoke_events = {f"{job_id}:smoke_test": 1} | ({f"{superseded.id}:smoke_test": 1} if superseded else {})
    assert p.event_counts(EventType.SMOKE_TEST_PASSED) == Counter(smoke_events)
    assert record.smoke_test.passed is True
    if superseded is not None:
        old_model = superseded.tuning.tuned_model
        assert old_model not in p.tuning.models
        assert record.tuning.tuned_model in p.tuning.models
        assert p.tuning.calls["delete_model"] == 1
        assert p.event_counts(EventType.MODEL_DELETED) == Counter(
            {f"{job_id}:model.deleted:{old_model.rsplit('/', 1)[-1]}": 1}
        )
        assert record.cleanup.run["retired_models"] == [old_model]


# --- the one documented duplicate: death between Pub/Sub's ack and the claim's completion ----------


class DiesAfterAck(FakePublisher):
    """Pub/Sub acknowledges the first ``event_type`` message, then the publishing worker dies."""

    def __init__(self, event_type: EventType) -> None:
        super().__init__()
        self.event_type = event_type
        self.fired = False

    def publish(self, event: OutgoingEvent) -> str:
        message_id = super().publish(event)
        if event.event_type == self.event_type and not self.fired:
            self.fired = True
            raise SimulatedCrash(f"died after Pub/Sub acknowledged {event.event_id}")
        return message_id


def _die_in_intake(p: Pipeline) -> None:
    p.deliver(p.upload("datasets/faq/bad.jsonl", examples(19) + BAD_ROLE_LINE))


def _die_in_poller(p: Pipeline) -> None:
    event = p.upload("datasets/faq/v1.jsonl", examples(20))
    p.deliver(event)
    p.finish(p.record(event))
    p.poll()


def _die_in_completion(p: Pipeline) -> None:
    event = p.upload("datasets/faq/v1.jsonl", examples(20))
    p.deliver(event)
    p.finish(p.record(event))
    p.settle()


@pytest.mark.parametrize(
    ("event_type", "die"),
    [
        (EventType.DATASET_REJECTED, _die_in_intake),
        (EventType.JOB_SUCCEEDED, _die_in_poller),
        (EventType.SMOKE_TEST_PASSED, _die_in_completion),
    ],
    ids=["intake", "poller", "completion"],
)
def test_death_between_pubsub_ack_and_claim_republishes_with_the_same_event_id(event_type, die):
    p = Pipeline()
    p.publisher = DiesAfterAck(event_type)
    with pytest.raises(SimulatedCrash):
        die(p)
    p.clock.advance(p.settings.lease_seconds + 1)
    run_to_the_end(p)
    counts = p.event_counts()
    [the_event] = [eid for eid, n in counts.items() if n > 1]
    assert counts[the_event] == 2, "re-published at most once more, after the publish claim's lease"
    assert [e.event_type for e in p.publisher.published if e.event_id == the_event] == [event_type] * 2
    assert all(n == 1 for eid, n in counts.items() if eid != the_event)
    assert not any(r.has_pending_outbox for r in p.jobs.all())
    for record in p.jobs.all():
        assert len(p.jobs_labelled(record.id)) <= 1
