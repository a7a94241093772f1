"""Submitting a validated record's tuning job exactly once, whatever crashes or duplicates.

Used by the intake (first attempt) and by the poller (QUEUED records when quota frees, and
SUBMITTING records whose writer died). The guard against a second job has three parts:

1. **Lease.** Moving to SUBMITTING is a transaction that also takes a lease
   (``record.lease``). Whoever holds a live lease owns the submission; anyone else gets
   :class:`~shared.errors.ClaimInProgressError` (retryable) and does nothing.
2. **Label reconcile.** With the lease held, the backend is asked for jobs labelled
   ``sftpilot-key=<job id>``: one found (a crash after ``create_job`` and before the record
   update) is adopted instead of creating a second job.
3. **Record after create.** The job name is stored right after ``create_job`` returns.

Outcomes: the job's status (PENDING, ...) with ``tuning_job`` set; QUEUED when the quota is full
(429, no event: the poller retries in upload order); FAILED_TO_SUBMIT with a staged
``job.failed`` event when the backend refuses the request for good; a retryable error is
re-raised after the lease is released, leaving SUBMITTING for the next attempt or the poller.

Example:
    >>> from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
    >>> from shared.records import DatasetRef, new_record, utcnow
    >>> jobs, tuning = FakeJobStore(), FakeTuningBackend()
    >>> rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), utcnow())
    >>> _ = jobs.create(rec)
    >>> out = submit_tuning_job(rec.id, jobs=jobs, tuning=tuning, deployment="demo", clock=utcnow, owner="doc")
    >>> out.status.value, out.tuning_job is not None
    ('PENDING', True)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from shared.claims import DEFAULT_LEASE_SECONDS, new_lease, release_record, take_record
from shared.continuous import continuation_of
from shared.errors import (
    BackendError,
    ClaimInProgressError,
    ErrorInfo,
    QuotaExceededError,
    RecordNotFoundError,
    is_retryable,
)
from shared.events import EventType, job_event_data
from shared.logs import log_event
from shared.outbox import stage_event
from shared.ports import Clock, JobStore, TuningBackend, TuningJob, TuningJobSpec
from shared.record_parts import RecordError, ResolvedConfig, TuningView
from shared.records import JobRecord, to_rfc3339
from shared.states import JobStatus, status_for_tuning_state
from shared.tuning_config import DEFAULT_BASE_MODEL, DEFAULT_DISPLAY_NAME, TuningConfig, render_display_name
from shared.tuning_view import tuning_view

KEY_LABEL: Final = "sftpilot-key"
LINEAGE_LABEL: Final = "sftpilot-lineage"
MANAGED_BY_LABEL: Final = "managed-by"

SUBMITTABLE: Final[frozenset[JobStatus]] = frozenset({JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.SUBMITTING})
"""Statuses from which a submission may (still) be attempted."""


class SubmitStep(StrEnum):
    """Boundaries inside one submission (``after_step`` is called after each; tests crash there)."""

    SUBMITTING_RECORDED = "SUBMITTING_RECORDED"
    """SUBMITTING + lease committed; nothing asked of the backend yet."""
    JOB_CREATED = "JOB_CREATED"
    """``create_job`` returned; the record does not know the job yet (the classic crash window)."""
    JOB_RECORDED = "JOB_RECORDED"
    """The job name and status are on the record (also after an adoption)."""


def job_labels(record: JobRecord, deployment: str) -> dict[str, str]:
    """User labels from the config with ours on top (ours cannot be overridden)."""
    labels = {str(k): str(v) for k, v in (record.config.labels if record.config else {}).items()}
    labels.update({KEY_LABEL: record.id, LINEAGE_LABEL: record.lineage, MANAGED_BY_LABEL: deployment})
    return labels


def build_spec(record: JobRecord, deployment: str) -> TuningJobSpec:
    """The tuning request for a record, from ``record.config`` and ``record.validation``.

    ``record.config["display_name"]`` is the name the intake rendered from the template; a
    record without a config (or with a template still in it) is rendered here from the upload
    time, so every attempt asks for the same name.

    >>> from shared.records import DatasetRef, new_record, utcnow
    >>> rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), utcnow())
    >>> spec = build_spec(rec, "demo")
    >>> spec.training_dataset_uri, spec.display_name, spec.labels["managed-by"]
    ('gs://b/datasets/faq/v1.jsonl', 'faq-v1-7', 'demo')
    """
    config = record.config or ResolvedConfig.from_dict(TuningConfig().to_dict())
    display_name = str(config.display_name or DEFAULT_DISPLAY_NAME)
    if "{" in display_name:
        display_name = render_display_name(
            TuningConfig(display_name=display_name),
            lineage=record.lineage,
            name=record.dataset.stem,
            generation=record.dataset.generation,
            when=record.event_time or record.created_at,
        )
    validation_set = (record.validation.validation_set if record.validation else None) or {}
    lr = config.learning_rate_multiplier
    continuation = continuation_of(config)
    return TuningJobSpec(
        base_model=continuation.base_model if continuation else str(config.base_model or DEFAULT_BASE_MODEL),
        pre_tuned_model=continuation.tuned_model_name if continuation else None,
        pre_tuned_checkpoint_id=continuation.checkpoint_id if continuation else None,
        training_dataset_uri=record.dataset.gcs_uri,
        display_name=display_name,
        validation_dataset_uri=validation_set.get("uri"),
        description=str(config.description or ""),
        epochs=config.epochs,
        adapter_size=config.adapter_size,
        learning_rate_multiplier=None if lr is None else float(lr),
        export_last_checkpoint_only=bool(config.export_last_checkpoint_only or False),
        labels=job_labels(record, deployment),
        kms_key_name=config.kms_key_name,
        service_account=config.service_account,
        evaluation_config=config.evaluation_config,
    )


def submit_tuning_job(
    job_id: str,
    *,
    jobs: JobStore,
    tuning: TuningBackend,
    deployment: str,
    clock: Clock,
    owner: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    after_step: Callable[[SubmitStep], None] | None = None,
) -> JobRecord:
    """Adopt or create the record's tuning job; returns the record as stored afterwards.

    Idempotent: a record past SUBMITTING is returned unchanged. A RECEIVED record must be
    leased by ``owner`` (the intake) or have no live lease.

    Raises:
        RecordNotFoundError: no such record.
        ClaimInProgressError: another invocation holds a live lease on the submission.
        Retryable errors (transient backend, store, ...): lease released, record left SUBMITTING.
    """
    record = jobs.get(job_id)
    if record is None:
        raise RecordNotFoundError(job_id)
    if record.status not in SUBMITTABLE:
        return record
    now = clock()
    lease = new_lease(owner, now, lease_seconds)
    stored = jobs.update(job_id, lambda current: take_record(current, lease, now, SUBMITTABLE, to=JobStatus.SUBMITTING))
    if stored.status not in SUBMITTABLE:
        return stored
    if stored.status is not JobStatus.SUBMITTING or stored.lease is None or stored.lease.owner != owner:
        holder = stored.lease
        raise ClaimInProgressError(
            claim_id=f"submit:{job_id}",
            owner=holder.owner if holder else "unknown",
            expires_at=(to_rfc3339(holder.expires_at) or "") if holder else "",
        )
    _step(after_step, SubmitStep.SUBMITTING_RECORDED)
    try:
        return _adopt_or_create(
            stored, jobs=jobs, tuning=tuning, deployment=deployment, clock=clock, owner=owner, after_step=after_step
        )
    except Exception as exc:
        if is_retryable(exc):
            _release(jobs, job_id, owner, clock)
        raise


def _adopt_or_create(
    record: JobRecord,
    *,
    jobs: JobStore,
    tuning: TuningBackend,
    deployment: str,
    clock: Clock,
    owner: str,
    after_step: Callable[[SubmitStep], None] | None,
) -> JobRecord:
    try:
        existing = find_jobs_by_key(tuning, record.id)
    except BackendError as exc:
        if is_retryable(exc):
            raise
        # The adapter already falls back to an unfiltered listing when the label filter is
        # refused; a listing that fails for good must not fail the submission (adoption only
        # matters after a crash right after create, far rarer than a refused list call).
        log_event(
            "WARNING",
            "could not list tuning jobs by label; creating without the adoption check",
            job_id=record.id,
            error=str(exc),
        )
        existing = []
    if existing:
        if len(existing) > 1:
            log_event(
                "ERROR",
                "several tuning jobs carry one sftpilot-key; adopting the oldest",
                job_id=record.id,
                lineage=record.lineage,
                tuning_jobs=[j.name for j in existing],
            )
        adopted, adopted_at = existing[0], clock()
        stored = jobs.update(record.id, lambda current: _record_job(current, adopted, adopted_at, adopted_job=True))
        log_event(
            "INFO",
            "adopted existing tuning job",
            job_id=record.id,
            lineage=record.lineage,
            tuning_job=adopted.name,
            state=adopted.state.value,
        )
        _step(after_step, SubmitStep.JOB_RECORDED)
        return stored
    try:
        spec = build_spec(record, deployment)
    except Exception as exc:  # a stored config we cannot turn into a request: fatal for this record
        if is_retryable(exc):
            raise
        return _fail(jobs, record.id, exc, clock(), owner)
    try:
        job = tuning.create_job(spec)
    except QuotaExceededError as exc:
        queued_at, code = clock(), exc.http_code
        stored = jobs.update(record.id, lambda current: _queue(current, owner, queued_at, code))
        log_event(
            "INFO",
            "tuning quota full: queued",
            job_id=record.id,
            lineage=record.lineage,
            queue_position=stored.queue_position,
        )
        return stored
    except BackendError as exc:
        if is_retryable(exc):
            raise
        return _fail(jobs, record.id, exc, clock(), owner)
    _step(after_step, SubmitStep.JOB_CREATED)
    created_at = clock()
    stored = jobs.update(record.id, lambda current: _record_job(current, job, created_at, adopted_job=False))
    log_event(
        "INFO",
        "tuning job created",
        job_id=record.id,
        lineage=record.lineage,
        tuning_job=job.name,
        base_model=spec.base_model,
        display_name=spec.display_name,
    )
    _step(after_step, SubmitStep.JOB_RECORDED)
    return stored


def find_jobs_by_key(tuning: TuningBackend, job_id: str) -> list[TuningJob]:
    """Jobs labelled ``sftpilot-key=<job_id>``, oldest first (normally zero or one)."""
    found = list(tuning.list_jobs(labels={KEY_LABEL: job_id}))
    return sorted(
        found,
        key=lambda j: (j.create_time is None, j.create_time.timestamp() if j.create_time else 0.0, j.name),
    )


# --- pure record mutations (may run more than once inside a transaction) ------------------------


def _record_job(record: JobRecord, job: TuningJob, now: datetime, *, adopted_job: bool) -> JobRecord | None:
    if record.status is not JobStatus.SUBMITTING:
        return None  # someone else recorded (or adopted) it already
    target = status_for_tuning_state(job.state)
    verb = "adopted" if adopted_job else "created"
    view: TuningView | None = _view(job)
    if target.is_terminal:
        # An adopted job that already ended: record it as PENDING with no stored view, so the
        # poller's next reconcile sees the change and makes the terminal transition with its
        # completion event (the one place completion events are produced).
        target, view = JobStatus.PENDING, None
    return record.transition(
        target,
        now,
        note=f"{verb} tuning job {job.name} ({job.state.value})",
        tuning_job=job.name,
        tuning=view,
        lease=None,
    )


def _queue(record: JobRecord, owner: str, now: datetime, http_code: int) -> JobRecord | None:
    if record.status is not JobStatus.SUBMITTING or (record.lease and record.lease.owner != owner):
        return None
    return record.transition(JobStatus.QUEUED, now, note=f"tuning quota full ({http_code})", lease=None)


def _fail(jobs: JobStore, job_id: str, exc: BaseException, now: datetime, owner: str) -> JobRecord:
    info = ErrorInfo.from_exception(exc)
    error = RecordError(code=info.code, message=info.message, details=_jsonable(info.details))

    def mutate(record: JobRecord) -> JobRecord | None:
        if record.status is not JobStatus.SUBMITTING or (record.lease and record.lease.owner != owner):
            return None
        failed = record.transition(
            JobStatus.FAILED_TO_SUBMIT, now, note=f"tuning API refused the job: {info.code}", error=error, lease=None
        )
        return stage_event(failed, EventType.JOB_FAILED, job_event_data(failed))

    stored = jobs.update(job_id, mutate)
    log_event(
        "ERROR",
        "tuning job could not be submitted",
        job_id=job_id,
        lineage=stored.lineage,
        error_code=info.code,
        error=info.message,
    )
    return stored


def _release(jobs: JobStore, job_id: str, owner: str, clock: Clock) -> None:
    """Drop our lease after a retryable failure so the next attempt can start at once."""

    released_at = clock()
    try:
        jobs.update(job_id, lambda record: release_record(record, owner, released_at, SUBMITTABLE))
    except Exception as exc:  # best effort: the lease also expires on its own
        log_event("WARNING", "could not release the submission lease", job_id=job_id, error=str(exc))


def _view(job: TuningJob) -> TuningView:
    return tuning_view(job)


def _jsonable(details: dict[str, object]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in details.items()}


def _step(hook: Callable[[SubmitStep], None] | None, step: SubmitStep) -> None:
    if hook is not None:
        hook(step)
