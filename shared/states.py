"""State machines as data.

Two vocabularies live here:

* :class:`TuningState` mirrors Vertex AI's ``JobState`` strings (what ``tunings.get`` returns).
* :class:`JobStatus` is *our* record status in Firestore. It covers the life of a dataset
  generation from the upload event to the end of its tuning job.

Transitions of :class:`JobStatus` are forward-only and are checked in exactly one function,
:func:`check_transition`. Terminal sets are explicit frozensets, like ``has_ended`` in
google-genai.

Example:
    >>> check_transition(JobStatus.RUNNING, JobStatus.SUCCEEDED)
    >>> JobStatus.SUCCEEDED.is_terminal
    True
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import InvalidTransitionError

WAITING_FOR_QUOTA = "TUNING_JOB_STATE_WAITING_FOR_QUOTA"
"""Vertex ``TuningJob.tuningJobState`` while an accepted job waits for the concurrent-job quota.

A full quota may not answer 429 on create: the job is accepted and held (PENDING) with this
output-only detail state. It is a wait, not a stall. Sources:
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#TuningJobState
https://googleapis.github.io/js-genai/release_docs/enums/types.TuningJobState.html
"""


class TuningState(StrEnum):
    """Vertex AI ``JobState`` of a tuning job, exactly as the REST API spells it."""

    UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
    QUEUED = "JOB_STATE_QUEUED"
    """Accepted by Vertex, waiting for resources."""
    PENDING = "JOB_STATE_PENDING"
    """Created, not started yet (what a fresh create returns)."""
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLING = "JOB_STATE_CANCELLING"
    """Cancel requested; can still end SUCCEEDED, FAILED or CANCELLED."""
    CANCELLED = "JOB_STATE_CANCELLED"
    PAUSED = "JOB_STATE_PAUSED"
    EXPIRED = "JOB_STATE_EXPIRED"
    UPDATING = "JOB_STATE_UPDATING"
    PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"

    @property
    def has_ended(self) -> bool:
        """True for the states google-genai's ``TuningJob.has_ended`` treats as final."""
        return self in TUNING_ENDED_STATES

    @classmethod
    def parse(cls, raw: str | None) -> TuningState:
        """Parse a state string case-insensitively; unknown strings map to UNSPECIFIED.

        >>> TuningState.parse("job_state_running")
        <TuningState.RUNNING: 'JOB_STATE_RUNNING'>
        """
        if not raw:
            return cls.UNSPECIFIED
        try:
            return cls(raw.upper())
        except ValueError:
            return cls.UNSPECIFIED


TUNING_ENDED_STATES: frozenset[TuningState] = frozenset(
    {TuningState.SUCCEEDED, TuningState.FAILED, TuningState.CANCELLED, TuningState.EXPIRED}
)


class JobStatus(StrEnum):
    """Status of an sftpilot job record (one per dataset generation)."""

    RECEIVED = "RECEIVED"
    """Upload event claimed; validation in progress under a lease."""
    REJECTED = "REJECTED"
    """Dataset or its tuning.yaml is invalid; no tuning job was started. Terminal."""
    DROPPED = "DROPPED"
    """The upload event was older than the configured maximum age; recorded, not processed. Terminal."""
    QUEUED = "QUEUED"
    """Valid, waiting for tuning quota; the poller submits it in upload order."""
    SUBMITTING = "SUBMITTING"
    """Written just before ``tunings.tune``; a crash here is repaired by a label lookup."""
    FAILED_TO_SUBMIT = "FAILED_TO_SUBMIT"
    """The tuning API refused the job with a non-retryable error. Terminal."""
    PENDING = "PENDING"
    """Tuning job exists (Vertex QUEUED/PENDING)."""
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    """Tuning job succeeded. Terminal (smoke test and cleanup are recorded beside it)."""
    FAILED = "FAILED"
    """Tuning job failed. Terminal."""
    CANCELLED = "CANCELLED"
    """Tuning job cancelled. Terminal."""
    EXPIRED = "EXPIRED"
    """Tuning job expired. Terminal."""
    VANISHED = "VANISHED"
    """The tuning job no longer exists in the backend (NotFound). Terminal."""

    @property
    def is_terminal(self) -> bool:
        """True when nothing will ever change this record's status again."""
        return self in TERMINAL_STATUSES

    @property
    def is_job_completion(self) -> bool:
        """True for the terminal statuses that announce a completion event."""
        return self in COMPLETION_STATUSES


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {
        JobStatus.REJECTED,
        JobStatus.DROPPED,
        JobStatus.FAILED_TO_SUBMIT,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.EXPIRED,
        JobStatus.VANISHED,
    }
)

COMPLETION_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)

ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(JobStatus) - TERMINAL_STATUSES
"""Statuses the poller reconciles (everything not terminal)."""

_JOB_EXISTS = frozenset(
    {
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.CANCELLING,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.EXPIRED,
        JobStatus.VANISHED,
    }
)

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RECEIVED: frozenset({JobStatus.REJECTED, JobStatus.DROPPED, JobStatus.QUEUED, JobStatus.SUBMITTING}),
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTING, JobStatus.CANCELLED, JobStatus.FAILED_TO_SUBMIT}),
    # Adoption after a crash may find the job in any state, and quota can push it back to QUEUED.
    JobStatus.SUBMITTING: _JOB_EXISTS | {JobStatus.QUEUED, JobStatus.FAILED_TO_SUBMIT},
    JobStatus.PENDING: _JOB_EXISTS - {JobStatus.PENDING},
    JobStatus.RUNNING: _JOB_EXISTS - {JobStatus.PENDING, JobStatus.RUNNING},
    JobStatus.CANCELLING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.VANISHED}
    ),
}
"""Forward-only transition table. Terminal statuses have no outgoing edges."""


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """True when ``current -> new`` is an allowed forward move (staying put is not a move)."""
    return new in ALLOWED_TRANSITIONS.get(current, frozenset())


def check_transition(current: JobStatus, new: JobStatus) -> None:
    """The one place transitions are enforced.

    Raises:
        InvalidTransitionError: when ``new`` is not reachable from ``current``.
    """
    if not can_transition(current, new):
        raise InvalidTransitionError(current=current.value, new=new.value)


_TUNING_TO_STATUS: dict[TuningState, JobStatus] = {
    TuningState.QUEUED: JobStatus.PENDING,
    TuningState.PENDING: JobStatus.PENDING,
    TuningState.UNSPECIFIED: JobStatus.PENDING,
    TuningState.RUNNING: JobStatus.RUNNING,
    TuningState.UPDATING: JobStatus.RUNNING,
    TuningState.PAUSED: JobStatus.RUNNING,
    TuningState.PARTIALLY_SUCCEEDED: JobStatus.RUNNING,
    TuningState.CANCELLING: JobStatus.CANCELLING,
    TuningState.SUCCEEDED: JobStatus.SUCCEEDED,
    TuningState.FAILED: JobStatus.FAILED,
    TuningState.CANCELLED: JobStatus.CANCELLED,
    TuningState.EXPIRED: JobStatus.EXPIRED,
}


def status_for_tuning_state(state: TuningState) -> JobStatus:
    """Map a Vertex job state to our record status.

    Vertex QUEUED and PENDING both become PENDING: our own QUEUED means "not submitted yet,
    waiting for quota", which Vertex never sees.

    >>> status_for_tuning_state(TuningState.CANCELLING)
    <JobStatus.CANCELLING: 'CANCELLING'>
    """
    return _TUNING_TO_STATUS[state]
