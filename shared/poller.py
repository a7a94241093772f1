"""The scheduled poller: reconcile every active job record with the tuning backend.

One run (Cloud Scheduler calls ``poll_tuning_jobs`` every minute, at least once) does:

1. **Drain the outbox.** Records with unpublished outbox entries (a previous run, or any other
   function, crashed between commit and publish) are published now, once.
2. **Query** the active records (one indexed query over :data:`POLLED_STATUSES`, all pages).
3. **Reconcile** every record that has a tuning job: ``tunings.get`` with bounded concurrency,
   then write only when something changed. Transitions are forward-only
   (:meth:`~shared.records.JobRecord.transition`) and made in a transaction; a terminal
   transition stages its completion event in the *same* write (transactional outbox) and it is
   published right after. A job that no longer exists (NotFound) moves the record to VANISHED.
4. **Submit.** SUBMITTING records whose writer died (no job name, lease expired) are repaired
   by :func:`shared.submission.submit_tuning_job` (label lookup adopts an existing job), then
   QUEUED records are submitted in upload order until the quota says no, and never more of
   them than the capacity this run saw freed (one probe when nothing ended), so a job ending
   does not cost a 429 for the second record in line.
5. **Stall check.** A record PENDING longer than ``stall_after_seconds`` gets one
   ``job.stalled`` event (``stalled_notified`` makes it once). A record that is only waiting
   for quota (our QUEUED after a 429, or a job Vertex accepted and holds with
   ``tuningJobState=TUNING_JOB_STATE_WAITING_FOR_QUOTA``) is not stalled: the record says
   "waiting for quota" instead (:func:`waiting_for_quota`).

Exactly-once announcements: the completion event's id is ``<job id>:<STATE>``; two pollers
racing on one record serialise in the store's transaction (the loser sees a terminal record
and writes nothing), and the outbox's publish claim lets only one of them publish.

The stored tuning view (``record.tuning``; the jobs API, the CLI and the completion function
read it) is a JSON object::

    {
      "state": "JOB_STATE_SUCCEEDED",          # Vertex JobState string
      "create_time": "2026-01-01T10:00:00Z",   # RFC 3339 or null (also start/end/update_time)
      "start_time": ..., "end_time": ..., "update_time": ...,
      "tuned_model": "projects/../models/123@1" | null,
      "endpoint": "projects/../endpoints/456" | null,
      "checkpoints": [{"checkpoint_id": "1", "epoch": 1, "step": 10, "endpoint": "..."}],
      "error": {"code": 3, "message": "..."} | null,   # google.rpc code of the backend
      "data_stats": {...} | null,              # tuningDataStats as the backend reports it
      "metrics": {...} | null,                 # training progress when the backend has it
      "base_model": "gemini-2.5-flash" | null, # baseModel, or preTunedModel.baseModel (continuous)
      "detail_state": "TUNING_JOB_STATE_WAITING_FOR_QUOTA" | null,  # Vertex tuningJobState
      "waiting_for_quota": true | false,       # accepted, held until the concurrent-job quota frees
      "quota_wait_ended_at": "...",            # only after such a wait (the stall clock starts there)
      "curves": {"series": {...}} | null       # bounded metric curves (shared.curves)
    }

Example:
    >>> from shared.adapters.fakes import FakeJobStore, FakePublisher, FakeTuningBackend
    >>> from shared.records import utcnow
    >>> summary = run_poll(jobs=FakeJobStore(), tuning=FakeTuningBackend(), publisher=FakePublisher(),
    ...                    clock=utcnow, options=PollOptions(), owner="doc")
    >>> summary.to_dict()["checked"]
    0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from shared.claims import DEFAULT_LEASE_SECONDS
from shared.curves import with_curves
from shared.errors import ClaimInProgressError, ErrorInfo, NotFoundError, QuotaExceededError, is_retryable
from shared.events import COMPLETION_EVENT_FOR_STATUS, EventType, event_id_for, job_event_data
from shared.logs import log_event
from shared.outbox import publish_pending, stage_event
from shared.ports import Clock, JobQuery, JobStore, Publisher, QueryOrder, TuningBackend, TuningJob
from shared.record_parts import RecordError, TuningView
from shared.records import JSON, JobRecord, from_rfc3339, to_rfc3339
from shared.settings import Settings
from shared.states import JobStatus, can_transition, status_for_tuning_state
from shared.submission import SubmitStep, submit_tuning_job
from shared.tuning_view import tuning_view

POLLED_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING}
)
"""What the poller queries. RECEIVED is left to the intake function that holds its lease."""

WITH_TUNING_JOB: frozenset[JobStatus] = frozenset(
    {JobStatus.SUBMITTING, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING}
)
"""Statuses whose records are reconciled with ``tunings.get`` (when they carry a job name)."""

STALL_WATCHED: frozenset[JobStatus] = frozenset({JobStatus.PENDING})
"""Statuses that produce ``job.stalled`` when a record sits in them too long, unless it only
waits for quota (:func:`waiting_for_quota`; QUEUED always does, so it is not watched)."""

TUNING_FAILED_CODE = "E_TUNING_JOB_FAILED"
TUNING_EXPIRED_CODE = "E_TUNING_JOB_EXPIRED"
TUNING_VANISHED_CODE = "E_TUNING_JOB_VANISHED"
NO_JOB_NAME_CODE = "E_NO_TUNING_JOB_NAME"


class PollStep(StrEnum):
    """Boundaries inside one run; ``after_step(step, job_id)`` is called after each.

    The reliability suite raises from ``after_step`` to simulate a crash at that point: any
    exception raised there aborts the run (work not started yet is skipped) and is re-raised
    from :func:`run_poll` unchanged. ``job_id`` is ``""`` for run-level steps.
    """

    DRAINED = "DRAINED"
    """Run level: pending outbox entries of earlier runs were published."""
    QUERIED = "QUERIED"
    """Run level: the active records were read (all pages)."""
    FETCHED = "FETCHED"
    """Per record: ``tunings.get`` answered (or said NotFound)."""
    COMMITTED = "COMMITTED"
    """Per record: a changed record (transition, view, stall mark) was written."""
    PUBLISHED = "PUBLISHED"
    """Per record: its pending outbox entries were published and marked."""
    SUBMITTED = "SUBMITTED"
    """Per record: ``submit_tuning_job`` returned (adopted, submitted, queued again or failed)."""


StepHook = Callable[[PollStep, str], None]


@dataclass(frozen=True)
class PollOptions:
    """Tunables of one run (built from :class:`~shared.settings.Settings` in production)."""

    concurrency: int = 16
    """Concurrent ``tunings.get`` calls (and record writes)."""
    stall_after_seconds: int = 6 * 3600
    deployment: str = "sftpilot"
    """The ``managed-by`` label value given to jobs this deployment submits."""
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    """A SUBMITTING record without a job name is repaired once its writer is this long gone."""
    page_size: int = 500
    queue_retry_seconds: int = 300
    """How long the head of the queue waits between two submission attempts while nothing we
    track has ended. Each attempt that meets a full quota adds two history entries, so trying
    every minute for days would bloat the record; a job of ours ending triggers an attempt at once."""

    def __post_init__(self) -> None:
        for name in ("concurrency", "stall_after_seconds", "lease_seconds", "page_size", "queue_retry_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PollOptions.{name} must be positive, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PollOptions:
        """The deployment's poller options."""
        return cls(
            concurrency=settings.poll_concurrency,
            stall_after_seconds=settings.stall_after_seconds,
            deployment=settings.deployment,
            lease_seconds=settings.lease_seconds,
        )


@dataclass(frozen=True)
class PollError:
    """One record-level failure of a run (the run itself went on)."""

    job_id: str
    operation: str
    code: str
    message: str
    retryable: bool

    def to_dict(self) -> JSON:
        """JSON view for the summary."""
        return {
            "job_id": self.job_id,
            "operation": self.operation,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }


@dataclass
class PollSummary:
    """What one run did. ``changed`` counts records whose status or tuning view was rewritten."""

    checked: int = 0
    changed: int = 0
    published: int = 0
    submitted: int = 0
    adopted: int = 0
    vanished: int = 0
    stalled: int = 0
    errors: list[PollError] = field(default_factory=list)

    def to_dict(self) -> JSON:
        """The JSON summary the HTTP function returns and logs."""
        return {
            "checked": self.checked,
            "changed": self.changed,
            "published": self.published,
            "submitted": self.submitted,
            "adopted": self.adopted,
            "vanished": self.vanished,
            "stalled": self.stalled,
            "errors": [e.to_dict() for e in self.errors],
        }


# --- pure planning: what a record should become (used outside and inside the transaction) -----


def waiting_for_quota(record: JobRecord) -> bool:
    """True while the record only waits for tuning quota: QUEUED (a create answered 429), or a
    job Vertex accepted and holds in ``TUNING_JOB_STATE_WAITING_FOR_QUOTA``.

    >>> from shared.records import DatasetRef, new_record, utcnow
    >>> rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), utcnow())
    >>> view = TuningView(waiting_for_quota=True)
    >>> waiting_for_quota(rec.with_changes(utcnow(), status=JobStatus.PENDING, tuning=view))
    True
    """
    if record.status is JobStatus.QUEUED:
        return True
    return not record.status.is_terminal and bool(record.tuning and record.tuning.waiting_for_quota)


def _is_older_than_stored(stored: TuningView | None, job: TuningJob) -> bool:
    """True when ``job`` is an older observation than the one already stored (a racing poller)."""
    if not stored or job.update_time is None:
        return False
    try:
        seen = from_rfc3339(stored.update_time)
    except (TypeError, ValueError):
        return False
    return seen is not None and job.update_time < seen


def _record_error(status: JobStatus, view: TuningView) -> RecordError | None:
    """``record.error`` for a failed or expired job, in :class:`~shared.errors.ErrorInfo` shape."""
    backend_error = view.error or {}
    if status is JobStatus.FAILED:
        message = backend_error.get("message") or "the tuning job failed without an error message"
        return RecordError(code=TUNING_FAILED_CODE, message=message, details={"rpc_code": backend_error.get("code")})
    if status is JobStatus.EXPIRED:
        message = backend_error.get("message") or "the tuning job expired before it finished"
        return RecordError(code=TUNING_EXPIRED_CODE, message=message, details={"rpc_code": backend_error.get("code")})
    return None


def plan_reconcile(record: JobRecord, job: TuningJob, now: datetime, stall_after: timedelta) -> JobRecord | None:
    """The record after observing ``job``, or None when nothing needs writing.

    Pure, so it can run against the queried snapshot (to skip the transaction when nothing
    changed) and again inside the transaction against the fresh record.
    """
    if record.status.is_terminal or record.tuning_job != job.name or _is_older_than_stored(record.tuning, job):
        return None
    view = tuning_view(job)
    stored = record.tuning
    if stored is not None and stored.quota_wait_ended_at:
        view = replace(view, quota_wait_ended_at=stored.quota_wait_ended_at)
    elif stored is not None and stored.waiting_for_quota and not view.waiting_for_quota:
        view = replace(view, quota_wait_ended_at=to_rfc3339(now))  # the stall clock starts here, not at PENDING
    target = status_for_tuning_state(job.state)
    updated = record
    if target is not record.status and can_transition(record.status, target):
        updated = record.transition(
            target,
            now,
            note=f"tuning job is {job.state.value}",
            tuning=view,
            error=_record_error(target, view) or record.error,
        )
        event_type = COMPLETION_EVENT_FOR_STATUS.get(target) if target.is_job_completion else None
        if event_type is not None:
            updated = stage_event(updated, event_type, job_event_data(updated))
    elif view != record.tuning:
        # Same status (or a move the state machine refuses, e.g. CANCELLING -> RUNNING): keep the
        # status, refresh what we show (metrics, times, checkpoints).
        updated = record.with_changes(now, tuning=view)
    updated = plan_stall(updated, now, stall_after) or updated
    return None if updated is record else updated


def plan_vanished(record: JobRecord, job_name: str, now: datetime) -> JobRecord | None:
    """VANISHED with a reason, when the backend says the record's job does not exist."""
    if record.status.is_terminal or record.tuning_job != job_name:
        return None
    return record.transition(
        JobStatus.VANISHED,
        now,
        note="tuning job not found",
        error=RecordError(
            code=TUNING_VANISHED_CODE,
            message=f"tuning job {job_name} was not found (NotFound): it was deleted outside sftpilot",
            details={"tuning_job": job_name, "last_seen_state": record.tuning.state if record.tuning else None},
        ),
    )


def waiting_since(record: JobRecord) -> datetime:
    """When the record started its current wait (PENDING, or QUEUED incl. quota retries).

    QUEUED records may bounce through SUBMITTING while retrying a full quota: the wait started
    at the first entry of the trailing run of QUEUED/SUBMITTING history entries.
    """
    same = {JobStatus.QUEUED, JobStatus.SUBMITTING} if record.status is JobStatus.QUEUED else {record.status}
    since: datetime | None = None
    for entry in reversed(record.history):
        if entry.status not in same:
            break
        since = entry.at
    since = since or record.updated_at
    # A PENDING job that waited for quota first is measured from the end of that wait.
    quota_wait_ended = from_rfc3339(record.tuning.quota_wait_ended_at if record.tuning else None)
    return max(since, quota_wait_ended) if quota_wait_ended else since


def plan_stall(record: JobRecord, now: datetime, stall_after: timedelta) -> JobRecord | None:
    """Mark and stage one ``job.stalled`` for a record waiting too long, else None.

    Waiting for quota is not a stall (a busy project is normal, and the record says so).
    """
    if record.stalled_notified or record.status not in STALL_WATCHED or waiting_for_quota(record):
        return None
    since = waiting_since(record)
    waited = now - since
    if waited < stall_after:
        return None
    marked = record.with_changes(now, stalled_notified=True)
    return stage_event(
        marked,
        EventType.JOB_STALLED,
        {
            "dataset": record.dataset.uri,
            "tuning_job": record.tuning_job,
            "status": record.status.value,
            "since": to_rfc3339(since),
            "stalled_for_seconds": int(waited.total_seconds()),
        },
        event_id=event_id_for(record.id, "stalled"),
    )


def last_attempt_at(record: JobRecord) -> datetime:
    """When the record last entered QUEUED (its latest submission attempt, or the intake's)."""
    for entry in reversed(record.history):
        if entry.status is JobStatus.QUEUED:
            return entry.at
    return record.updated_at


def submission_is_orphaned(record: JobRecord, now: datetime, lease_seconds: int) -> bool:
    """True for a SUBMITTING record without a job name whose writer is gone (lease expired)."""
    if record.status is not JobStatus.SUBMITTING or record.tuning_job:
        return False
    if record.lease is not None:
        return record.lease.expired(now)
    return now - record.updated_at >= timedelta(seconds=lease_seconds)


# --- the run --------------------------------------------------------------------------------


class _HookAbort(Exception):
    """Carries an exception raised by ``after_step`` out of a worker thread."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


@dataclass
class _Outcome:
    """What one worker did to one record (merged into the summary by the main thread)."""

    changed: int = 0
    published: int = 0
    submitted: int = 0
    adopted: int = 0
    vanished: int = 0
    stalled: int = 0
    errors: list[PollError] = field(default_factory=list)
    ended: int = 0
    """Records this worker moved to a terminal status (capacity freed)."""
    quota_full: bool = False
    stop_queue: bool = False

    def add_to(self, summary: PollSummary) -> None:
        summary.changed += self.changed
        summary.published += self.published
        summary.submitted += self.submitted
        summary.adopted += self.adopted
        summary.vanished += self.vanished
        summary.stalled += self.stalled
        summary.errors.extend(self.errors)


_T = TypeVar("_T")


class _Run:
    """State of one :func:`run_poll` call."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        tuning: TuningBackend,
        publisher: Publisher,
        clock: Clock,
        options: PollOptions,
        owner: str,
        after_step: StepHook | None,
    ) -> None:
        self.jobs = jobs
        self.tuning = tuning
        self.publisher = publisher
        self.clock = clock
        self.options = options
        self.owner = owner
        self.after_step = after_step
        self.stall_after = timedelta(seconds=options.stall_after_seconds)
        self.summary = PollSummary()
        self.ended = 0
        """Records moved to a terminal status by this run: tuning capacity was freed."""
        self._aborted = threading.Event()

    # --- plumbing ---

    def step(self, step: PollStep, job_id: str = "") -> None:
        if self.after_step is None:
            return
        try:
            self.after_step(step, job_id)
        except BaseException as exc:
            self._aborted.set()
            raise _HookAbort(exc) from exc

    def query_all(self, query: JobQuery) -> list[JobRecord]:
        """Every page of ``query``, read before anything is written (stable under updates)."""
        records: list[JobRecord] = []
        token: str | None = None
        while True:
            page = self.jobs.query(replace(query, page_token=token))
            records.extend(page.records)
            token = page.next_page_token
            if not token:
                return records

    def fan_out(self, items: Iterable[_T], work: Callable[[_T], _Outcome]) -> None:
        """Run ``work`` on every item with bounded concurrency; merge outcomes in order."""
        pending = list(items)
        if not pending:
            return
        workers = min(self.options.concurrency, len(pending))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll")
        try:
            futures: list[Future[_Outcome]] = [executor.submit(self._guarded, work, item) for item in pending]
            for future in futures:
                outcome = future.result()
                outcome.add_to(self.summary)
                self.ended += outcome.ended
        except _HookAbort as abort:
            executor.shutdown(wait=True, cancel_futures=True)
            raise abort.original from None
        finally:
            executor.shutdown(wait=True)

    def _guarded(self, work: Callable[[_T], _Outcome], item: _T) -> _Outcome:
        if self._aborted.is_set():
            return _Outcome()  # a simulated crash elsewhere: do not start new work
        return work(item)

    def failure(self, outcome: _Outcome, job_id: str, operation: str, exc: BaseException) -> None:
        info = ErrorInfo.from_exception(exc)
        error = PollError(job_id, operation, info.code, info.message, is_retryable(exc))
        outcome.errors.append(error)
        log_event(
            "WARNING",
            "poll: record not reconciled",
            job_id=job_id,
            operation=operation,
            code=info.code,
            error=info.message,
            retryable=error.retryable,
        )

    def commit(self, job_id: str, plan: Callable[[JobRecord], JobRecord | None]) -> tuple[JobRecord, bool]:
        """Transactional write of ``plan(current)``; returns the stored record and whether it wrote."""
        wrote = [False]

        def mutate(current: JobRecord) -> JobRecord | None:
            result = plan(current)
            wrote[0] = result is not None  # the transaction's last attempt is the one that counts
            return result

        stored = self.jobs.update(job_id, mutate)
        if wrote[0]:
            self.step(PollStep.COMMITTED, job_id)
        return stored, wrote[0]

    def publish(self, outcome: _Outcome, job_id: str) -> None:
        try:
            outcome.published += publish_pending(
                job_id, jobs=self.jobs, publisher=self.publisher, clock=self.clock, owner=self.owner
            )
        except _HookAbort:
            raise
        except Exception as exc:  # left pending: the next run drains it
            self.failure(outcome, job_id, "publish", exc)
            return
        self.step(PollStep.PUBLISHED, job_id)

    # --- phases ---

    def drain_outbox(self) -> None:
        stuck = self.query_all(JobQuery(pending_outbox=True, limit=self.options.page_size))

        def drain(record: JobRecord) -> _Outcome:
            outcome = _Outcome()
            self.publish(outcome, record.id)
            return outcome

        self.fan_out(stuck, drain)
        self.step(PollStep.DRAINED)

    def reconcile(self, record: JobRecord) -> _Outcome:
        outcome = _Outcome()
        name = record.tuning_job
        assert name is not None
        job: TuningJob | None
        try:
            job = self.tuning.get_job(name)
        except NotFoundError:
            job = None
        except Exception as exc:
            self.failure(outcome, record.id, "get_job", exc)
            return outcome
        if job is not None:
            job = with_curves(self.tuning, job, record.tuning)
        self.step(PollStep.FETCHED, record.id)
        now = self.clock()

        def plan(current: JobRecord) -> JobRecord | None:
            if job is None:
                return plan_vanished(current, name, now)
            return plan_reconcile(current, job, now, self.stall_after)

        if plan(record) is None:
            return outcome  # nothing changed against the snapshot: no transaction, no write
        try:
            stored, wrote = self.commit(record.id, plan)
        except _HookAbort:
            raise
        except Exception as exc:
            self.failure(outcome, record.id, "update", exc)
            return outcome
        if wrote:
            if stored.status is not record.status or stored.tuning != record.tuning:
                outcome.changed += 1
            if stored.status.is_terminal and not record.status.is_terminal:
                outcome.ended += 1
            if stored.status is JobStatus.VANISHED and record.status is not JobStatus.VANISHED:
                outcome.vanished += 1
            if stored.stalled_notified and not record.stalled_notified:
                outcome.stalled += 1
            if stored.has_pending_outbox:
                self.publish(outcome, record.id)
        return outcome

    def submit(self, record: JobRecord) -> tuple[_Outcome, JobRecord]:
        """Adopt or submit one record through the shared submission path."""
        outcome = _Outcome()
        took_lease = [False]  # only the lease holder counts what happened (racing pollers)

        def seen(step: SubmitStep) -> None:
            if step is SubmitStep.SUBMITTING_RECORDED:
                took_lease[0] = True

        try:
            stored = submit_tuning_job(
                record.id,
                jobs=self.jobs,
                tuning=self.tuning,
                deployment=self.options.deployment,
                clock=self.clock,
                owner=self.owner,
                lease_seconds=self.options.lease_seconds,
                after_step=seen,
            )
        except QuotaExceededError:
            outcome.quota_full = True
            return outcome, record
        except ClaimInProgressError as busy:  # a concurrent poller or the intake is submitting it
            log_event("INFO", "poll: submission in progress elsewhere", job_id=record.id, holder=busy.owner)
            outcome.stop_queue = True
            return outcome, record
        except Exception as exc:
            self.failure(outcome, record.id, "submit", exc)
            outcome.stop_queue = is_retryable(exc)  # keep upload order: retry this one first next run
            return outcome, record
        self.step(PollStep.SUBMITTED, record.id)
        if took_lease[0] and stored.tuning_job and not record.tuning_job:
            if record.status is JobStatus.SUBMITTING:
                outcome.adopted += 1
            else:
                outcome.submitted += 1
        if stored.status is JobStatus.QUEUED or waiting_for_quota(stored):
            outcome.quota_full = True  # a 429, or Vertex accepted the job but holds it for quota
        if took_lease[0] and stored.status.is_terminal:
            outcome.changed += 1  # FAILED_TO_SUBMIT, with its job.failed staged
        if stored.has_pending_outbox:
            self.publish(outcome, record.id)
        return outcome, stored

    def stall_check(self, record: JobRecord) -> _Outcome:
        outcome = _Outcome()
        now = self.clock()
        if plan_stall(record, now, self.stall_after) is None:
            return outcome
        try:
            stored, wrote = self.commit(record.id, lambda current: plan_stall(current, now, self.stall_after))
        except _HookAbort:
            raise
        except Exception as exc:
            self.failure(outcome, record.id, "update", exc)
            return outcome
        if wrote:
            outcome.stalled += 1
            if stored.has_pending_outbox:
                self.publish(outcome, record.id)
        return outcome

    def submissions(self, active: list[JobRecord]) -> None:
        """Repair orphaned submissions, then submit QUEUED records in upload order.

        The head of the queue is tried when a job of ours ended in this run, or when its last
        attempt is ``queue_retry_seconds`` old (capacity may be freed by jobs we do not track).
        Submission stops at the first record the quota refuses, so upload order is kept, and
        after as many new jobs as this run saw jobs end (the capacity known to be free; one
        probe when nothing ended): trying more would only earn a 429 for each extra record.
        Jobs of ours that Vertex holds for quota take freed slots first, so each one lowers that
        capacity (and while one waits, nothing is probed).
        """
        now = self.clock()
        in_order = sorted(active, key=lambda r: (r.queue_position, r.id))
        orphans = [r for r in in_order if submission_is_orphaned(r, now, self.options.lease_seconds)]
        queued = [r for r in in_order if r.status is JobStatus.QUEUED]
        for record in orphans:
            outcome, _ = self.guard_submit(record)
            outcome.add_to(self.summary)
        still_queued: list[JobRecord] = []
        retry_after = timedelta(seconds=self.options.queue_retry_seconds)
        held = sum(1 for r in active if r.status is not JobStatus.QUEUED and waiting_for_quota(r))
        capacity = max(self.ended, 1) - held
        blocked = False
        for record in queued:
            if not blocked and not self.ended and now - last_attempt_at(record) < retry_after:
                blocked = True  # nothing freed capacity that we know of: do not knock yet
            if blocked or capacity <= 0:
                still_queued.append(record)
                continue
            outcome, stored = self.guard_submit(record)
            outcome.add_to(self.summary)
            blocked = outcome.quota_full or outcome.stop_queue
            if stored.tuning_job and not record.tuning_job:
                capacity -= 1
            if stored.status is JobStatus.QUEUED:
                still_queued.append(stored)
        self.fan_out(still_queued, self.stall_check)

    def guard_submit(self, record: JobRecord) -> tuple[_Outcome, JobRecord]:
        try:
            return self.submit(record)
        except _HookAbort as abort:
            raise abort.original from None


def _split(records: Iterable[JobRecord]) -> Iterator[tuple[str, JobRecord]]:
    """Tag each active record with what this run does with it."""
    for record in records:
        if record.status in WITH_TUNING_JOB and record.tuning_job:
            yield "reconcile", record
        elif record.status in WITH_TUNING_JOB and record.status is not JobStatus.SUBMITTING:
            yield "broken", record
        else:
            yield "other", record


def run_poll(
    *,
    jobs: JobStore,
    tuning: TuningBackend,
    publisher: Publisher,
    clock: Clock,
    options: PollOptions,
    owner: str,
    after_step: StepHook | None = None,
) -> PollSummary:
    """Reconcile every active job record with the tuning backend; see the module docstring.

    Safe to run concurrently with itself (Cloud Scheduler is at-least-once): no completion
    event is published twice and no transition is lost. Record-level failures are reported in
    ``PollSummary.errors`` and retried by the next run; a failure to read the records at all
    (store unavailable) raises, so the caller can answer 500.

    Args:
        owner: identifies this invocation in publish claims (e.g. ``poller-<uuid>``).
        after_step: called after each :class:`PollStep`; an exception raised there aborts the
            run and is re-raised (crash injection in the reliability tests).
    """
    run = _Run(
        jobs=jobs,
        tuning=tuning,
        publisher=publisher,
        clock=clock,
        options=options,
        owner=owner,
        after_step=after_step,
    )
    try:
        run.drain_outbox()
        active = run.query_all(
            JobQuery(statuses=POLLED_STATUSES, order=QueryOrder.NEWEST_FIRST, limit=options.page_size)
        )
        run.summary.checked = len(active)
        run.step(PollStep.QUERIED)
    except _HookAbort as abort:
        raise abort.original from None
    to_reconcile: list[JobRecord] = []
    for kind, record in _split(active):
        if kind == "reconcile":
            to_reconcile.append(record)
        elif kind == "broken":
            run.summary.errors.append(
                PollError(
                    record.id,
                    "reconcile",
                    NO_JOB_NAME_CODE,
                    f"record is {record.status.value} but has no tuning job name",
                    False,
                )
            )
    run.fan_out(to_reconcile, run.reconcile)
    run.submissions(active)
    result = run.summary.to_dict()
    log_event(
        "INFO" if not run.summary.errors else "WARNING",
        "poll finished",
        owner=owner,
        **{k: v for k, v in result.items() if k != "errors"},
        errors=len(run.summary.errors),
        error_samples=result["errors"][:5] or None,
    )
    return run.summary
