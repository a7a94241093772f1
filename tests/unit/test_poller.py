"""The poller's domain logic (``shared.poller.run_poll``) on the in-memory fakes."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from helpers import T0, Clock

from shared.adapters.fakes import FakeJobStore, FakePublisher, FakeTuningBackend
from shared.errors import InvalidArgumentError, PublishError, StoreUnavailableError, TransientBackendError
from shared.poller import (
    PollOptions,
    PollStep,
    plan_reconcile,
    run_poll,
    tuning_view,
    waiting_for_quota,
    waiting_since,
)
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, JobRecord, Lease, new_record
from shared.settings import Settings
from shared.states import WAITING_FOR_QUOTA, JobStatus, TuningState


class Crash(BaseException):
    """A simulated process death raised from ``after_step``."""


class World:
    """Fakes wired together, plus helpers that create records the way intake leaves them."""

    def __init__(self, *, quota: int = 100, latency: float = 0.0, **options: int) -> None:
        self.jobs = FakeJobStore()
        self.tuning = FakeTuningBackend(quota=quota, latency_seconds=latency)
        self.publisher = FakePublisher()
        self.clock = Clock()
        self.options = PollOptions(**{"stall_after_seconds": 3600, "lease_seconds": 600, **options})
        self._n = 0

    def poll(self, owner: str = "poller-a", after_step=None, options: PollOptions | None = None):
        return run_poll(
            jobs=self.jobs,
            tuning=self.tuning,
            publisher=self.publisher,
            clock=self.clock,
            options=options or self.options,
            owner=owner,
            after_step=after_step,
        )

    def _fresh(self, lineage: str = "faq") -> JobRecord:
        self._n += 1
        ref = DatasetRef("bkt", f"datasets/{lineage}/d{self._n:04d}.jsonl", 1000 + self._n, lineage)
        return new_record(ref, self.clock(), event_time=self.clock() + timedelta(seconds=self._n))

    def tracked(self, status: JobStatus = JobStatus.PENDING) -> JobRecord:
        """A record whose tuning job exists (created through the fake backend)."""
        rec = self._fresh()
        job = self.tuning.create_job(
            TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, f"faq-{self._n}", labels={"sftpilot-key": rec.id})
        )
        rec = rec.transition(JobStatus.SUBMITTING, self.clock()).transition(
            JobStatus.PENDING, self.clock(), tuning_job=job.name
        )
        if status in (JobStatus.RUNNING, JobStatus.CANCELLING):
            self.tuning.set_state(job.name, TuningState.RUNNING)
            rec = rec.transition(JobStatus.RUNNING, self.clock(), tuning=tuning_view(self.tuning.get_job(job.name)))
        if status is JobStatus.CANCELLING:
            self.tuning.cancel_job(job.name)
            rec = rec.transition(JobStatus.CANCELLING, self.clock())
        assert self.jobs.create(rec)
        return rec

    def queued(self) -> JobRecord:
        rec = self._fresh().transition(JobStatus.QUEUED, self.clock(), note="quota full")
        assert self.jobs.create(rec)
        return rec

    def record(self, job_id: str) -> JobRecord:
        rec = self.jobs.get(job_id)
        assert rec is not None
        return rec

    def event_ids(self) -> list[str]:
        return [e.event_id for e in self.publisher.published]


# --- the lifecycle --------------------------------------------------------------------------


def test_job_running_to_succeeded_updates_record_and_publishes_one_event():
    w = World()
    rec = w.tracked()
    w.tuning.set_state(rec.tuning_job, TuningState.RUNNING)
    w.clock.advance(minutes=1)

    first = w.poll()
    assert first.to_dict()["changed"] == 1
    assert w.record(rec.id).status is JobStatus.RUNNING
    assert w.publisher.published == []

    w.tuning.set_state(rec.tuning_job, TuningState.SUCCEEDED)
    w.clock.advance(minutes=1)
    second = w.poll()
    stored = w.record(rec.id)
    assert (second.changed, second.published) == (1, 1)
    assert stored.status is JobStatus.SUCCEEDED
    assert stored.tuning is not None and stored.tuning.state == "JOB_STATE_SUCCEEDED"
    assert stored.tuning.tuned_model.endswith(f"models/m{rec.tuning_job.rsplit('/', 1)[-1]}@1")
    assert [c["epoch"] for c in stored.tuning.checkpoints] == [1, 2]
    assert [h.status for h in stored.history][-2:] == [JobStatus.RUNNING, JobStatus.SUCCEEDED]
    assert stored.history[-1].at == w.clock.now
    assert not stored.has_pending_outbox

    (event,) = w.publisher.published
    assert event.event_id == f"{rec.id}:SUCCEEDED"
    assert event.attributes == {
        "type": "job.succeeded",
        "job_id": rec.id,
        "lineage": "faq",
        "state": "SUCCEEDED",
        "schema_version": "1",
        "event_id": f"{rec.id}:SUCCEEDED",
    }
    assert event.data["tuned_model"] == stored.tuning.tuned_model
    assert event.data["endpoint"] == stored.tuning.endpoint
    assert event.data["dataset"] == rec.dataset.uri

    third = w.poll()
    assert (third.checked, third.published) == (0, 0)
    assert len(w.publisher.published) == 1


def test_failed_job_publishes_job_failed_with_the_backend_error():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.tuning.set_state(rec.tuning_job, TuningState.FAILED, error_message="line 12: contents must end with model")
    summary = w.poll()
    stored = w.record(rec.id)
    assert stored.status is JobStatus.FAILED
    assert stored.error.to_dict() == {
        "code": "E_TUNING_JOB_FAILED",
        "message": "line 12: contents must end with model",
        "details": {"rpc_code": 3},
    }
    (event,) = w.publisher.published
    assert event.event_type == "job.failed" and event.event_id == f"{rec.id}:FAILED"
    assert event.data["error"]["message"] == "line 12: contents must end with model"
    assert summary.published == 1


@pytest.mark.parametrize(
    ("start", "end", "event_type"),
    [
        (JobStatus.CANCELLING, TuningState.CANCELLED, "job.cancelled"),
        (JobStatus.CANCELLING, TuningState.SUCCEEDED, "job.succeeded"),  # cancel came too late
        (JobStatus.RUNNING, TuningState.EXPIRED, "job.expired"),
        (JobStatus.PENDING, TuningState.CANCELLED, "job.cancelled"),
    ],
)
def test_terminal_states_each_publish_their_event(start, end, event_type):
    w = World()
    rec = w.tracked(start)
    w.tuning.set_state(rec.tuning_job, end)
    w.poll()
    stored = w.record(rec.id)
    assert stored.status.value == end.value.removeprefix("JOB_STATE_")
    assert [(e.event_type, e.event_id) for e in w.publisher.published] == [
        (event_type, f"{rec.id}:{stored.status.value}")
    ]


def test_running_job_with_new_metrics_updates_view_without_transition():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.poll()
    assert w.jobs.writes == 1  # the create only: the stored view already matched
    job = w.tuning.jobs[rec.tuning_job]
    w.tuning.jobs[rec.tuning_job] = replace(
        job, metrics={"step": 40, "train_loss": 0.71}, update_time=job.update_time + timedelta(seconds=30)
    )
    summary = w.poll()
    stored = w.record(rec.id)
    assert summary.changed == 1
    assert stored.status is JobStatus.RUNNING
    assert stored.tuning.metrics == {"step": 40, "train_loss": 0.71}
    assert len(stored.history) == len(rec.history)
    assert w.publisher.published == []


def test_nothing_changed_means_one_query_one_get_per_job_and_zero_writes():
    w = World()
    records = [w.tracked(JobStatus.RUNNING) for _ in range(12)]
    w.poll()  # settles the stored views
    writes, queries = w.jobs.writes, w.jobs.queries
    w.tuning.calls.clear()
    summary = w.poll()
    assert summary.to_dict() == {
        "checked": 12,
        "changed": 0,
        "published": 0,
        "submitted": 0,
        "adopted": 0,
        "vanished": 0,
        "stalled": 0,
        "errors": [],
    }
    assert w.jobs.writes == writes
    assert w.jobs.queries == queries + 2  # the outbox query and the active-records query
    assert w.tuning.calls["get_job"] == len(records)
    assert w.jobs.mutation_calls == 0  # not even a read-only transaction


def test_transitions_never_go_backwards():
    w = World()
    running = w.tracked(JobStatus.RUNNING)
    cancelling = w.tracked(JobStatus.CANCELLING)
    # The backend reports an earlier state for one and RUNNING after a cancel for the other.
    w.tuning.jobs[running.tuning_job] = replace(
        w.tuning.jobs[running.tuning_job], state=TuningState.PENDING, update_time=w.clock.now + timedelta(1)
    )
    w.tuning.jobs[cancelling.tuning_job] = replace(
        w.tuning.jobs[cancelling.tuning_job], state=TuningState.RUNNING, update_time=w.clock.now + timedelta(1)
    )
    w.poll()
    assert w.record(running.id).status is JobStatus.RUNNING
    assert w.record(cancelling.id).status is JobStatus.CANCELLING
    assert w.record(cancelling.id).tuning.state == "JOB_STATE_RUNNING"


def test_an_older_observation_than_the_stored_one_is_ignored():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    job = w.tuning.get_job(rec.tuning_job)
    newer = replace(rec, tuning=replace(rec.tuning, update_time="2999-01-01T00:00:00Z"))
    assert plan_reconcile(newer, replace(job, metrics={"step": 1}), w.clock.now, timedelta(hours=1)) is None


def test_vanished_job_is_marked_with_a_reason():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.tuning.forget_job(rec.tuning_job)
    summary = w.poll()
    stored = w.record(rec.id)
    assert summary.vanished == 1
    assert stored.status is JobStatus.VANISHED
    assert stored.error.code == "E_TUNING_JOB_VANISHED"
    assert rec.tuning_job in stored.error.message
    assert stored.error.details["last_seen_state"] == "JOB_STATE_RUNNING"
    assert w.publisher.published == []


# --- exactly once under races and crashes -----------------------------------------------------


def test_two_concurrent_pollers_over_50_jobs_publish_one_event_each():
    w = World(latency=0.002, concurrency=8)
    records = [w.tracked(JobStatus.RUNNING) for _ in range(50)]
    w.tuning.complete_all(TuningState.SUCCEEDED)
    start = threading.Barrier(2)
    summaries = []

    def poller(owner: str) -> None:
        start.wait()
        summaries.append(w.poll(owner=owner))

    threads = [threading.Thread(target=poller, args=(f"poller-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(w.event_ids()) == sorted(f"{r.id}:SUCCEEDED" for r in records)
    assert sum(s.published for s in summaries) == 50
    assert sum(s.changed for s in summaries) == 50  # each transition committed exactly once
    assert all(w.record(r.id).status is JobStatus.SUCCEEDED for r in records)
    assert all(not w.record(r.id).has_pending_outbox for r in records)
    assert all([h.status for h in w.record(r.id).history].count(JobStatus.SUCCEEDED) == 1 for r in records)


def test_crash_after_commit_before_publish_is_published_by_the_next_run_once():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.tuning.set_state(rec.tuning_job, TuningState.SUCCEEDED)

    def crash_after_commit(step: PollStep, job_id: str) -> None:
        if step is PollStep.COMMITTED:
            raise Crash(job_id)

    with pytest.raises(Crash):
        w.poll(after_step=crash_after_commit)
    stored = w.record(rec.id)
    assert stored.status is JobStatus.SUCCEEDED and stored.has_pending_outbox
    assert w.publisher.published == []

    w.clock.advance(minutes=1)
    summary = w.poll(owner="poller-b")
    assert summary.published == 1
    assert summary.checked == 0  # terminal: found through the outbox query, not the active one
    assert w.event_ids() == [f"{rec.id}:SUCCEEDED"]
    assert w.poll(owner="poller-c").published == 0
    assert len(w.publisher.published) == 1


@pytest.mark.parametrize("step", [PollStep.QUERIED, PollStep.FETCHED, PollStep.PUBLISHED])
def test_a_crash_at_any_step_loses_nothing_and_duplicates_nothing(step):
    w = World()
    recs = [w.tracked(JobStatus.RUNNING) for _ in range(3)]
    w.tuning.complete_all(TuningState.FAILED)

    def crash(at: PollStep, job_id: str) -> None:
        if at is step:
            raise Crash(at.value)

    with pytest.raises(Crash):
        w.poll(after_step=crash, options=replace(w.options, concurrency=1))
    w.poll(owner="poller-b")
    w.poll(owner="poller-c")
    assert sorted(w.event_ids()) == sorted(f"{r.id}:FAILED" for r in recs)


def test_after_step_sees_the_steps_in_order():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.tuning.set_state(rec.tuning_job, TuningState.SUCCEEDED)
    seen: list[tuple[PollStep, str]] = []
    w.poll(after_step=lambda step, job_id: seen.append((step, job_id)))
    assert seen == [
        (PollStep.DRAINED, ""),
        (PollStep.QUERIED, ""),
        (PollStep.FETCHED, rec.id),
        (PollStep.COMMITTED, rec.id),
        (PollStep.PUBLISHED, rec.id),
    ]


def test_failed_publish_is_reported_and_retried_next_run():
    w = World()
    rec = w.tracked(JobStatus.RUNNING)
    w.tuning.set_state(rec.tuning_job, TuningState.CANCELLED)
    w.publisher.failures.fail_next("publish", PublishError(w.publisher.topic, "x", "unavailable"))
    summary = w.poll()
    assert summary.published == 0
    assert [(e.job_id, e.operation, e.code, e.retryable) for e in summary.errors] == [
        (rec.id, "publish", "E_PUBLISH", True)
    ]
    assert w.record(rec.id).status is JobStatus.CANCELLED
    assert w.poll().published == 1
    assert w.event_ids() == [f"{rec.id}:CANCELLED"]


# --- errors -------------------------------------------------------------------------------------


def test_a_failing_get_is_reported_and_other_jobs_still_reconcile():
    w = World(concurrency=1)
    bad, good = w.tracked(JobStatus.RUNNING), w.tracked(JobStatus.RUNNING)
    w.tuning.complete_all(TuningState.SUCCEEDED)
    w.tuning.failures.fail_next("get_job", TransientBackendError("get_job", 503, "backend unavailable"))
    summary = w.poll()
    assert len(summary.errors) == 1
    failed_id = summary.errors[0].job_id
    assert failed_id in (bad.id, good.id)
    assert summary.errors[0].to_dict()["code"] == "E_BACKEND_TRANSIENT"
    assert summary.errors[0].retryable
    assert summary.changed == 1
    assert w.record(failed_id).status is JobStatus.RUNNING
    assert w.poll().changed == 1
    assert {r.status for r in w.jobs.all()} == {JobStatus.SUCCEEDED}


def test_store_unavailable_for_the_query_fails_the_run():
    w = World()
    w.tracked()
    w.jobs.failures.fail_next("query", StoreUnavailableError("query", "deadline exceeded"))
    with pytest.raises(StoreUnavailableError):
        w.poll()


def test_a_record_without_its_job_name_is_reported_not_crashed_on():
    w = World()
    rec = w._fresh().transition(JobStatus.SUBMITTING, w.clock()).transition(JobStatus.PENDING, w.clock())
    w.jobs.create(rec)
    summary = w.poll()
    assert [(e.job_id, e.code) for e in summary.errors] == [(rec.id, "E_NO_TUNING_JOB_NAME")]


class ConcurrencyProbe(FakeTuningBackend):
    """Counts how many ``get_job`` calls run at once."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.active = 0
        self.peak = 0
        self._probe = threading.Lock()

    def get_job(self, name):
        with self._probe:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().get_job(name)
        finally:
            with self._probe:
                self.active -= 1


def test_gets_run_concurrently_but_never_above_the_bound():
    w = World(concurrency=4)
    w.tuning = ConcurrencyProbe(quota=100, latency_seconds=0.02)
    for _ in range(20):
        w.tracked(JobStatus.RUNNING)
    w.tuning.calls.clear()
    w.poll()
    assert w.tuning.calls["get_job"] == 20
    assert 1 < w.tuning.peak <= 4


# --- stall detection ------------------------------------------------------------------------------


def test_pending_too_long_publishes_job_stalled_once():
    w = World()
    rec = w.tracked(JobStatus.PENDING)
    w.clock.advance(minutes=59)
    assert w.poll().stalled == 0
    w.clock.advance(minutes=2)
    summary = w.poll()
    assert summary.stalled == 1
    (event,) = w.publisher.published
    assert event.event_id == f"{rec.id}:stalled"
    assert event.event_type == "job.stalled"
    assert event.attributes["state"] == "PENDING"
    assert event.data["since"] == "2026-11-21T10:00:00.000000Z"  # T0
    assert event.data["stalled_for_seconds"] == 61 * 60
    assert event.data["tuning_job"] == rec.tuning_job
    w.clock.advance(hours=5)
    assert w.poll().stalled == 0
    assert len(w.publisher.published) == 1
    assert w.record(rec.id).stalled_notified


def test_a_record_queued_for_quota_is_waiting_not_stalled():
    w = World(quota=1)
    blocker = w.tracked(JobStatus.RUNNING)
    rec = w.queued()
    for _ in range(6):
        w.clock.advance(minutes=30)
        w.poll()
    assert w.publisher.of_type("job.stalled") == []
    assert waiting_for_quota(w.record(rec.id))
    assert waiting_since(w.record(rec.id)) == T0
    assert w.record(blocker.id).status is JobStatus.RUNNING


def test_a_job_vertex_holds_for_quota_shows_it_and_is_not_stalled():
    w = World(quota=1)
    rec = w.tracked(JobStatus.PENDING)
    w.tuning.set_state(rec.tuning_job, TuningState.PENDING, detail_state=WAITING_FOR_QUOTA)
    for _ in range(4):
        w.clock.advance(minutes=30)
        w.poll()
    stored = w.record(rec.id)
    assert stored.status is JobStatus.PENDING
    assert stored.tuning is not None and stored.tuning.waiting_for_quota is True
    assert stored.tuning.detail_state == WAITING_FOR_QUOTA
    assert waiting_for_quota(stored)
    assert w.publisher.of_type("job.stalled") == []

    # the quota frees; the job starts: it is no longer waiting, and it runs
    w.tuning.set_state(rec.tuning_job, TuningState.RUNNING, detail_state="TUNING_JOB_STATE_TUNING")
    w.clock.advance(minutes=1)
    w.poll()
    stored = w.record(rec.id)
    assert stored.status is JobStatus.RUNNING and not waiting_for_quota(stored)
    assert stored.tuning is not None and stored.tuning.waiting_for_quota is False


def test_the_stall_clock_of_a_pending_job_starts_when_its_quota_wait_ends():
    w = World(quota=1)
    rec = w.tracked(JobStatus.PENDING)
    w.tuning.set_state(rec.tuning_job, TuningState.PENDING, detail_state=WAITING_FOR_QUOTA)
    w.poll()
    w.clock.advance(hours=5)
    w.tuning.set_state(rec.tuning_job, TuningState.PENDING, detail_state="TUNING_JOB_STATE_PROCESSING_DATASET")
    w.poll()
    assert waiting_since(w.record(rec.id)) == T0 + timedelta(hours=5)
    w.clock.advance(minutes=59)
    assert w.poll().stalled == 0  # not 5 h 59 min: the wait for quota does not count
    w.clock.advance(minutes=2)
    assert w.poll().stalled == 1


def test_a_pending_job_not_waiting_for_quota_still_stalls():
    w = World(quota=1)
    rec = w.tracked(JobStatus.PENDING)
    w.tuning.set_state(rec.tuning_job, TuningState.PENDING, detail_state="TUNING_JOB_STATE_WAITING_FOR_CAPACITY")
    w.clock.advance(minutes=61)
    assert w.poll().stalled == 1
    assert [e.event_id for e in w.publisher.of_type("job.stalled")] == [f"{rec.id}:stalled"]


def test_a_create_held_for_quota_stops_the_queue_like_a_429():
    w = World(quota=2)
    w.tuning.queue_when_full = True
    running = [w.tracked(JobStatus.RUNNING), w.tracked(JobStatus.RUNNING)]
    first, second = w.queued(), w.queued()
    for rec in running:
        w.tuning.set_state(rec.tuning_job, TuningState.SUCCEEDED)
    for n in range(2):  # jobs we do not track take both freed slots first
        foreign = w.tuning.create_job(TuningJobSpec("gemini-2.5-flash", "gs://other/x.jsonl", f"not-ours-{n}"))
        assert foreign.detail_state is None
    w.tuning.calls.clear()
    w.clock.advance(minutes=1)
    w.poll()
    held = w.record(first.id)
    assert held.status is JobStatus.PENDING and waiting_for_quota(held)
    assert w.record(second.id).status is JobStatus.QUEUED
    assert w.tuning.calls["create_job"] == 1  # held for quota: the second record is not sent


def test_jobs_vertex_holds_for_quota_take_freed_slots_before_queued_records():
    w = World(quota=1, queue_retry_seconds=300)
    w.tuning.queue_when_full = True
    running = w.tracked(JobStatus.RUNNING)
    held = w.tracked(JobStatus.PENDING)  # accepted over the quota: Vertex holds it
    assert w.tuning.get_job(held.tuning_job).detail_state == WAITING_FOR_QUOTA
    queued = w.queued()
    w.clock.advance(minutes=1)
    w.poll()  # the view now says waiting_for_quota
    w.clock.advance(minutes=10)
    w.tuning.calls.clear()
    w.poll()
    assert w.tuning.calls["create_job"] == 0  # a probe would only add a second held job
    w.tuning.set_state(running.tuning_job, TuningState.SUCCEEDED)
    w.clock.advance(minutes=1)
    w.poll()
    assert w.tuning.calls["create_job"] == 0  # the freed slot goes to the held job first
    assert w.record(queued.id).status is JobStatus.QUEUED


def test_queue_head_retries_with_backoff_when_capacity_is_held_by_jobs_we_do_not_track():
    w = World(quota=1, queue_retry_seconds=300)
    foreign = w.tuning.create_job(TuningJobSpec("gemini-2.5-flash", "gs://other/x.jsonl", "not-ours"))
    rec = w.queued()
    attempts = []
    for minute in range(1, 12):
        w.clock.now = T0 + timedelta(minutes=minute)
        before = w.tuning.calls["create_job"]
        w.poll()
        attempts.append(w.tuning.calls["create_job"] - before)
    assert attempts == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert w.record(rec.id).status is JobStatus.QUEUED
    assert len(w.record(rec.id).history) == 2 + 2 * 2  # RECEIVED, QUEUED, then SUBMITTING+QUEUED per attempt

    w.tuning.set_state(foreign.name, TuningState.SUCCEEDED)
    w.clock.now = T0 + timedelta(minutes=15)
    assert w.poll().submitted == 1
    assert w.record(rec.id).status is JobStatus.PENDING


def test_a_queued_record_someone_else_is_submitting_is_left_alone():
    w = World(quota=5)
    rec = w.queued()
    w.clock.advance(minutes=10)

    def intake_takes_it(step: PollStep, job_id: str) -> None:
        if step is PollStep.QUERIED:  # between our snapshot and our attempt
            w.jobs.update(
                rec.id,
                lambda r: r.transition(
                    JobStatus.SUBMITTING, w.clock(), lease=Lease("intake-9", w.clock() + timedelta(minutes=10))
                ),
            )

    summary = w.poll(after_step=intake_takes_it)
    assert (summary.submitted, summary.errors) == (0, [])
    assert w.tuning.calls["create_job"] == 0
    assert w.record(rec.id).lease.owner == "intake-9"


def test_refused_submission_ends_failed_to_submit_with_one_job_failed():
    w = World(quota=5)
    rec = w.queued()
    w.clock.advance(minutes=10)
    w.tuning.failures.fail_next(
        "create_job", InvalidArgumentError("create_job", 400, "base model not tunable", "INVALID_ARGUMENT")
    )
    summary = w.poll()
    stored = w.record(rec.id)
    assert stored.status is JobStatus.FAILED_TO_SUBMIT
    assert summary.changed == 1
    assert [(e.event_type, e.event_id, e.data["state"]) for e in w.publisher.published] == [
        ("job.failed", f"{rec.id}:FAILED_TO_SUBMIT", "FAILED_TO_SUBMIT")
    ]


def test_orphaned_submission_adopts_the_job_found_by_label():
    w = World()
    rec = w._fresh().transition(
        JobStatus.SUBMITTING, w.clock(), lease=Lease("intake-1", w.clock() + timedelta(seconds=600))
    )
    w.jobs.create(rec)
    # intake created the job, then died before writing its name
    job = w.tuning.create_job(
        TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, "faq", labels={"sftpilot-key": rec.id})
    )
    w.clock.advance(seconds=300)
    assert w.poll().adopted == 0  # the lease is still live: intake may be mid-call
    assert w.record(rec.id).tuning_job is None
    w.clock.advance(seconds=301)
    summary = w.poll()
    assert summary.adopted == 1
    stored = w.record(rec.id)
    assert stored.tuning_job == job.name
    assert stored.status is JobStatus.PENDING
    assert w.tuning.calls["create_job"] == 1  # adopted, not created again


def test_an_adopted_job_that_already_ended_is_announced_by_the_next_reconcile():
    w = World()
    rec = w._fresh().transition(JobStatus.SUBMITTING, w.clock())
    w.jobs.create(rec)
    job = w.tuning.create_job(
        TuningJobSpec("gemini-2.5-flash", rec.dataset.gcs_uri, "faq", labels={"sftpilot-key": rec.id})
    )
    w.tuning.set_state(job.name, TuningState.SUCCEEDED)  # finished while nobody knew its name
    w.clock.advance(minutes=11)
    assert w.poll().adopted == 1
    assert w.record(rec.id).status is JobStatus.PENDING
    w.clock.advance(minutes=1)
    summary = w.poll()
    assert (summary.changed, summary.published) == (1, 1)
    assert w.record(rec.id).status is JobStatus.SUCCEEDED
    assert w.event_ids() == [f"{rec.id}:SUCCEEDED"]


# --- options ---------------------------------------------------------------------------------------


def test_options_come_from_settings_and_reject_nonsense():
    settings = Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "p",
            "SFTPILOT_BUCKET": "bkt",
            "SFTPILOT_POLL_CONCURRENCY": "7",
            "SFTPILOT_STALL_AFTER_SECONDS": "120",
            "SFTPILOT_DEPLOYMENT": "prod",
        }
    )
    options = PollOptions.from_settings(settings)
    assert (options.concurrency, options.stall_after_seconds, options.deployment) == (7, 120, "prod")
    with pytest.raises(ValueError, match="concurrency"):
        PollOptions(concurrency=0)
