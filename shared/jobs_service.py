"""Query and operate on job records: the domain behind the jobs API and the CLI.

Example:
    >>> from shared.adapters.fakes import FakeJobStore
    >>> parse_list_filters({"state": "RUNNING,QUEUED", "limit": "10"}).limit
    10
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.budget import job_cost_summary
from shared.errors import InvalidParameterError, JobNotCancellableError, RecordNotFoundError
from shared.events import EventType, job_event_data
from shared.labels import LINEAGE_RE
from shared.outbox import stage_event
from shared.ports import Clock, JobPage, JobQuery, JobStore, TuningBackend
from shared.record_parts import CancelRequest, TuningView
from shared.records import JSON, JobRecord, from_rfc3339, to_rfc3339
from shared.states import JobStatus

MAX_PAGE_SIZE = 200
_PAGE_TOKEN = re.compile(r"^[A-Za-z0-9_=\-]{1,512}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
CANCELLABLE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.PENDING, JobStatus.RUNNING})


def parse_list_filters(params: Mapping[str, str]) -> JobQuery:
    """Turn untrusted query parameters into a :class:`JobQuery`, or raise InvalidParameterError.

    Accepted: ``state`` (comma-separated statuses), ``lineage``, ``dataset`` (``gs://b/o`` or
    ``gs://b/o#gen``), ``since`` (RFC 3339), ``limit`` (1-200, default 50), ``page_token``.
    """
    known = {"state", "lineage", "dataset", "since", "limit", "page_token"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidParameterError(unknown[0], params[unknown[0]], f"one of {sorted(known)}")
    statuses: frozenset[JobStatus] | None = None
    if "state" in params:
        names = [s.strip().upper() for s in params["state"].split(",") if s.strip()]
        try:
            if not names:
                raise ValueError("no status named")
            statuses = frozenset(JobStatus(n) for n in names)
        except ValueError:
            raise InvalidParameterError(
                "state", params["state"], f"comma-separated statuses from {[s.value for s in JobStatus]}"
            ) from None
    lineage = params.get("lineage")
    if lineage is not None and not LINEAGE_RE.match(lineage):
        raise InvalidParameterError("lineage", lineage, "a lineage name (1-63 of a-z, 0-9, _ and -)")
    dataset = params.get("dataset")
    if dataset is not None and not re.match(r"^gs://[a-z0-9._-]+/.+?(#\d+)?$", dataset):
        raise InvalidParameterError("dataset", dataset, "gs://bucket/object or gs://bucket/object#generation")
    since = None
    if "since" in params:
        try:
            if not _RFC3339.match(params["since"]):
                raise ValueError("not RFC 3339")
            since = from_rfc3339(params["since"])
        except ValueError:
            raise InvalidParameterError("since", params["since"], "an RFC 3339 timestamp") from None
    raw_limit = params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
        raise InvalidParameterError("limit", raw_limit, f"an integer from 1 to {MAX_PAGE_SIZE}")
    token = params.get("page_token")
    if token is not None and not _PAGE_TOKEN.match(token):
        raise InvalidParameterError("page_token", token, "a token returned as next_page_token")
    return JobQuery(
        statuses=statuses,
        lineage=lineage,
        dataset=dataset,
        since=since,
        limit=int(raw_limit),
        page_token=token,
    )


def check_job_id(job_id: str) -> str:
    """Job ids are 32 lowercase hex characters; anything else is a 400, not a lookup."""
    if not _JOB_ID.match(job_id):
        raise InvalidParameterError("id", job_id, "a job id (32 lowercase hex characters)")
    return job_id


def list_jobs(jobs: JobStore, query: JobQuery) -> JobPage:
    """One page of records, newest first.

    Raises InvalidParameterError when the store rejects the page token.
    """
    try:
        return jobs.query(query)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        if query.page_token:
            raise InvalidParameterError("page_token", query.page_token, "a token returned as next_page_token") from None
        raise


def get_job(jobs: JobStore, job_id: str) -> JobRecord:
    """The full record; RecordNotFoundError when unknown."""
    record = jobs.get(check_job_id(job_id))
    if record is None:
        raise RecordNotFoundError(job_id)
    return record


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did: the record afterwards and whether the tuning API was called."""

    record: JobRecord
    called_backend: bool


def cancel_job(job_id: str, *, principal: str, jobs: JobStore, tuning: TuningBackend, clock: Clock) -> CancelResult:
    """Cancel a job and record who asked and when.

    QUEUED jobs (never submitted) end CANCELLED at once with a ``job.cancelled`` event.
    PENDING/RUNNING jobs get ``tunings.cancel`` and move to CANCELLING; the poller records the
    final state (Vertex may still end SUCCEEDED). Cancelling a CANCELLING job is a no-op.
    """
    record = get_job(jobs, job_id)
    if record.status is JobStatus.CANCELLING:
        return CancelResult(record, called_backend=False)
    if record.status not in CANCELLABLE:
        raise JobNotCancellableError(job_id, record.status.value)
    now = clock()
    request = CancelRequest(by=principal, at=to_rfc3339(now))
    if record.status is JobStatus.QUEUED:

        def cancel_queued(current: JobRecord) -> JobRecord | None:
            if current.status is not JobStatus.QUEUED:
                raise JobNotCancellableError(job_id, current.status.value)
            moved = current.transition(
                JobStatus.CANCELLED,
                now,
                note=f"cancelled by {principal} before submission",
                cancel_request=request,
            )
            return stage_event(moved, EventType.JOB_CANCELLED, job_event_data(moved))

        return CancelResult(jobs.update(job_id, cancel_queued), called_backend=False)
    assert record.tuning_job is not None
    tuning.cancel_job(record.tuning_job)

    def mark_cancelling(current: JobRecord) -> JobRecord | None:
        if current.status in (JobStatus.PENDING, JobStatus.RUNNING):
            return current.transition(
                JobStatus.CANCELLING, now, note=f"cancel requested by {principal}", cancel_request=request
            )
        return current.with_changes(now, cancel_request=request)

    return CancelResult(jobs.update(job_id, mark_cancelling), called_backend=True)


def summarize(record: JobRecord) -> JSON:
    """The stable list view (``sftpilot jobs list --json`` relies on these keys)."""
    view = record.tuning or TuningView()
    smoke = record.smoke_test
    return {
        "id": record.id,
        "status": record.status.value,
        "lineage": record.lineage,
        "dataset": record.dataset.uri,
        "tuning_job": record.tuning_job,
        "tuned_model": view.tuned_model,
        "smoke_test": None if not smoke or not smoke.to_dict() else ("passed" if smoke.passed else "failed"),
        "gate": record.gate.verdict if record.gate else None,
        "cost": job_cost_summary(record),
        "created_at": to_rfc3339(record.created_at),
        "updated_at": to_rfc3339(record.updated_at),
    }
