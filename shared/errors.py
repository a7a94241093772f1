"""Every failure sftpilot knows about, each a class carrying its data.

Retryable vs fatal is decided in exactly one place: :func:`is_retryable`. Entry points use it
to map an exception to "raise so the platform redelivers" or "record and acknowledge".

Example:
    >>> is_retryable(TransientBackendError(operation="get", http_code=503, message="try later"))
    True
    >>> is_retryable(InvalidArgumentError(operation="create", http_code=400, message="bad dataset"))
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


class SftpilotError(Exception):
    """Base class. ``code`` is a stable machine-readable identifier."""

    code: ClassVar[str] = "E_SFTPILOT"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view: the stable code, the message and the fields."""
        data: dict[str, object] = {"code": self.code, "message": str(self)}
        for name, value in vars(self).items():
            if not name.startswith("_"):
                data[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return data


# --- configuration -------------------------------------------------------------------------


class SettingsError(SftpilotError):
    """A deployment setting (environment variable or settings file) is missing or invalid."""

    code = "E_SETTINGS"

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"setting {setting}={value!r} is invalid: expected {expected}")


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a tuning.yaml: where (dotted path) and what."""

    path: str
    message: str
    source: str = ""
    """The file the problem is in (``gs://...``, a local path, or ``deployment defaults``)."""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready view (``config_errors`` entries of ``dataset.rejected``)."""
        return {"path": self.path, "message": self.message, "source": self.source}


class TuningConfigError(SftpilotError):
    """A tuning.yaml (or the deployment defaults) is not valid. Carries every problem found."""

    code = "E_TUNING_CONFIG"

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        listed = "; ".join(f"{p.path}: {p.message}" for p in problems)
        super().__init__(f"{source}: {listed}")


# --- domain ----------------------------------------------------------------------------------


class InvalidTransitionError(SftpilotError):
    """A status change that the state machine forbids (backwards or out of a terminal status)."""

    code = "E_INVALID_TRANSITION"

    def __init__(self, current: str, new: str) -> None:
        self.current = current
        self.new = new
        super().__init__(f"transition {current} -> {new} is not allowed")


class EventParseError(SftpilotError):
    """An incoming event does not have the shape we expect. Fatal: redelivery cannot fix it."""

    code = "E_EVENT_PARSE"

    def __init__(self, field: str, expected: str, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"event field {field!r}: expected {expected}, got {got!r}")


class ClaimInProgressError(SftpilotError):
    """Another invocation holds a live lease on this work; retry after the lease expires."""

    code = "E_CLAIM_IN_PROGRESS"

    def __init__(self, claim_id: str, owner: str, expires_at: str) -> None:
        self.claim_id = claim_id
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(f"{claim_id} is being processed by {owner} until {expires_at}")


class RecordNotFoundError(SftpilotError):
    """No job record with this id."""

    code = "E_RECORD_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job record {job_id!r}")


class InvalidParameterError(SftpilotError):
    """A user-supplied parameter (API query, CLI option) is malformed."""

    code = "E_INVALID_PARAMETER"

    def __init__(self, parameter: str, value: object, expected: str) -> None:
        self.parameter = parameter
        self.value = value
        self.expected = expected
        super().__init__(f"parameter {parameter!r}: expected {expected}, got {value!r}")


class JobNotCancellableError(SftpilotError):
    """Cancel was asked for a job that has already ended (or was never started)."""

    code = "E_NOT_CANCELLABLE"

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id} is {status}: only QUEUED, SUBMITTING, PENDING or RUNNING jobs can be cancelled")


class AuthenticationError(SftpilotError):
    """No valid credentials on a request (HTTP 401)."""

    code = "E_UNAUTHENTICATED"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"authentication required: {reason}")


class ForbiddenError(SftpilotError):
    """The authenticated principal may not perform this action (HTTP 403)."""

    code = "E_FORBIDDEN"

    def __init__(self, principal: str, action: str) -> None:
        self.principal = principal
        self.action = action
        super().__init__(f"{principal} is not allowed to {action}")


# --- storage ---------------------------------------------------------------------------------


class BlobNotFoundError(SftpilotError):
    """The object does not exist (or not at the requested generation)."""

    code = "E_BLOB_NOT_FOUND"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"object not found: {uri}")


class BlobReadError(SftpilotError):
    """Reading an object failed part-way (network, server). Retryable."""

    code = "E_BLOB_READ"

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"reading {uri} failed: {reason}")


class StoreUnavailableError(SftpilotError):
    """The job store could not be reached or a transaction kept conflicting. Retryable."""

    code = "E_STORE_UNAVAILABLE"

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"job store {operation} failed: {reason}")


class PublishError(SftpilotError):
    """A Pub/Sub publish was not acknowledged by the server. A failed publish is not "done"."""

    code = "E_PUBLISH"

    def __init__(self, topic: str, event_id: str, reason: str) -> None:
        self.topic = topic
        self.event_id = event_id
        self.reason = reason
        super().__init__(f"publishing {event_id} to {topic} failed: {reason}")


# --- tuning backend --------------------------------------------------------------------------


class BackendError(SftpilotError):
    """Base of the tuning-backend errors: the operation, the HTTP code and the server's message.

    ``code`` is sftpilot's stable error code (as on every :class:`SftpilotError`); the HTTP
    status is ``http_code``, in the constructor too.
    """

    code = "E_BACKEND"

    def __init__(self, operation: str, http_code: int, message: str, status: str = "") -> None:
        self.operation = operation
        self.http_code = http_code
        self.status = status
        self.message = message
        super().__init__(f"{operation} failed ({http_code} {status}): {message}")


class QuotaExceededError(BackendError):
    """429 / RESOURCE_EXHAUSTED: the concurrent tuning-job quota is full. Queue, don't fail."""

    code = "E_QUOTA_EXCEEDED"


class InvalidArgumentError(BackendError):
    """400 / INVALID_ARGUMENT or FAILED_PRECONDITION: the request itself is wrong. Fatal."""

    code = "E_INVALID_ARGUMENT"


class NotFoundError(BackendError):
    """404 / NOT_FOUND: the job, model or endpoint does not exist."""

    code = "E_NOT_FOUND"


class PermissionDeniedError(BackendError):
    """401/403: the service account lacks a role. Fatal until an operator fixes IAM."""

    code = "E_PERMISSION_DENIED"


class TransientBackendError(BackendError):
    """5xx, timeouts, connection errors. Retryable."""

    code = "E_BACKEND_TRANSIENT"


class CleanupPendingError(SftpilotError):
    """A cleanup step's long-running operation (undeploy/delete) has not finished yet. Retryable.

    The operation names are recorded on the job records; the redelivery resumes from them.
    """

    code = "E_CLEANUP_PENDING"

    def __init__(self, job_id: str, operations: tuple[str, ...]) -> None:
        self.job_id = job_id
        self.operations = operations
        super().__init__(f"cleanup of {job_id} waits for {len(operations)} operation(s): {', '.join(operations)}")


class SmokeTestDeadlineError(SftpilotError):
    """The completion function's time budget ran out mid smoke test. Retryable: the calls done so
    far are kept on the record and the redelivery continues from there."""

    code = "E_SMOKE_TEST_DEADLINE"

    def __init__(self, done: int, total: int, remaining_seconds: float) -> None:
        self.done = done
        self.total = total
        self.remaining_seconds = remaining_seconds
        super().__init__(
            f"time budget nearly used: {done}/{total} smoke-test calls done, {remaining_seconds:.0f} s left "
            "(too little for one more call); the redelivery continues"
        )


_RETRYABLE: tuple[type[Exception], ...] = (
    CleanupPendingError,
    ClaimInProgressError,
    SmokeTestDeadlineError,
    BlobReadError,
    StoreUnavailableError,
    PublishError,
    TransientBackendError,
    QuotaExceededError,
    ConnectionError,
    TimeoutError,
)


def is_retryable(exc: BaseException) -> bool:
    """The one place that decides whether a failure is worth a redelivery.

    Our own classes are classified by type. Raw client-library errors that escaped an adapter
    are classified by their family (google.api_core 5xx/429/aborted, requests/httpx transport).
    """
    if isinstance(exc, _RETRYABLE):
        return True
    if isinstance(exc, SftpilotError):
        return False
    try:
        from google.api_core import exceptions as gexc  # noqa: PLC0415 - keep import-time light
    except ImportError:  # pragma: no cover - api_core is a core dependency
        return False
    transient_google = (
        gexc.ServerError,
        gexc.TooManyRequests,
        gexc.Aborted,
        gexc.DeadlineExceeded,
        gexc.ServiceUnavailable,
        gexc.RetryError,
    )
    if isinstance(exc, transient_google):
        return True
    name = type(exc).__module__ + "." + type(exc).__qualname__
    return name.startswith(("requests.exceptions.", "httpx", "urllib3.exceptions."))


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as recorded on a job record (the exception's stable code and message)."""

    code: str
    message: str
    details: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Record any exception without leaking a traceback into user-facing data."""
        if isinstance(exc, SftpilotError):
            return cls(code=exc.code, message=str(exc), details=exc.to_dict())
        return cls(code="E_INTERNAL", message=f"{type(exc).__name__}: {exc}")
