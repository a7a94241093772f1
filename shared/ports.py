"""The ports: what the domain needs from the outside world, and the value types they speak.

Adapters in :mod:`shared.adapters` implement these for GCP (google-genai/Vertex, Firestore,
Pub/Sub, GCS) and the embedded local stack; :mod:`shared.adapters.fakes` implements them in
memory for unit tests. One contract test suite checks fakes and real adapters alike.

Domain functions take ports as arguments; they never build clients or read settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, Protocol

from shared.records import JSON, JobRecord
from shared.states import JobStatus, TuningState

Clock = Callable[[], datetime]
"""Returns timezone-aware UTC now. Injected so tests control time (leases, stall detection)."""


# --- blob store --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    """Metadata of one stored object."""

    bucket: str
    name: str
    generation: int
    size: int
    updated: datetime | None = None
    content_type: str | None = None


class BlobStore(Protocol):
    """Object storage (GCS)."""

    def open_read(self, bucket: str, name: str, generation: int | None = None) -> AbstractContextManager[IO[bytes]]:
        """Stream an object; raises BlobNotFoundError, BlobReadError (mid-stream failures too)."""
        ...

    def read_bytes(self, bucket: str, name: str, max_bytes: int = 1 << 20) -> bytes | None:
        """Small objects (configs); None if absent; BlobReadError if larger than max_bytes."""
        ...

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str) -> int:
        """Write (overwrite) an object; returns its new generation."""
        ...

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        """Metadata, or None when the object does not exist."""
        ...

    def list(self, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        """Objects under a prefix, in name order."""
        ...


# --- job store ---------------------------------------------------------------------------------


class QueryOrder(StrEnum):
    """Orderings the job store supports (each backed by a declared index)."""

    NEWEST_FIRST = "NEWEST_FIRST"
    """``created_at`` descending: the jobs API and CLI listings."""
    QUEUE_ORDER = "QUEUE_ORDER"
    """``queue_position`` ascending: QUEUED records in upload order."""


@dataclass(frozen=True)
class JobQuery:
    """A filter over job records. Unset fields do not filter."""

    statuses: frozenset[JobStatus] | None = None
    lineage: str | None = None
    dataset: str | None = None
    """``gs://bucket/name`` (all generations) or ``gs://bucket/name#gen`` (one)."""
    since: datetime | None = None
    """Only records created at or after this time."""
    pending_outbox: bool | None = None
    order: QueryOrder = QueryOrder.NEWEST_FIRST
    limit: int = 50
    page_token: str | None = None


@dataclass(frozen=True)
class JobPage:
    """One page of records and the opaque token of the next page (None on the last page)."""

    records: list[JobRecord]
    next_page_token: str | None = None


class EffectState(StrEnum):
    """Outcome of trying to claim a side effect (idempotency record)."""

    ACQUIRED = "ACQUIRED"
    """The caller owns the effect now and must run it, then complete it."""
    COMPLETED = "COMPLETED"
    """Someone already ran it; ``result`` holds what they recorded."""
    IN_PROGRESS = "IN_PROGRESS"
    """Someone holds a live lease; retry after ``expires_at``."""


@dataclass(frozen=True)
class EffectClaim:
    """The answer of :meth:`JobStore.acquire_effect`."""

    effect_id: str
    state: EffectState
    owner: str
    expires_at: datetime | None = None
    result: JSON | None = None


RecordMutation = Callable[[JobRecord], JobRecord | None]
"""Given the current record, return the new one, or None to write nothing. May run twice."""


class JobStore(Protocol):
    """Job records (``jobs/{id}``) and side-effect claims (``effects/{id}``) in Firestore."""

    def create(self, record: JobRecord) -> bool:
        """Insert if absent (Firestore ``create()``). True if created, False if it existed."""
        ...

    def get(self, job_id: str) -> JobRecord | None:
        """One record, or None."""
        ...

    def update(self, job_id: str, mutate: RecordMutation) -> JobRecord:
        """Transactional read-modify-write. Returns the record as stored afterwards.

        ``mutate`` may be called more than once (transaction retries): keep it pure. Raises
        RecordNotFoundError when the record is missing, StoreUnavailableError on persistent
        contention.
        """
        ...

    def query(self, query: JobQuery) -> JobPage:
        """One page of records matching ``query``."""
        ...

    def acquire_effect(self, effect_id: str, owner: str, lease_seconds: float, now: datetime) -> EffectClaim:
        """Claim a side effect: create ``effects/{id}`` IN_PROGRESS, or take over an expired lease."""
        ...

    def complete_effect(self, effect_id: str, owner: str, result: JSON) -> None:
        """Mark a claimed effect COMPLETED with its result (only by its current owner)."""
        ...

    def release_effect(self, effect_id: str, owner: str) -> None:
        """Give a claim back after a retryable failure, so a redelivery can take it at once."""
        ...


# --- publisher ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingEvent:
    """A message for the sftpilot events topic (see :mod:`shared.events` for the schemas)."""

    event_id: str
    event_type: str
    data: JSON
    attributes: dict[str, str]
    ordering_key: str = ""


class Publisher(Protocol):
    """Publishes sftpilot events (Pub/Sub)."""

    def publish(self, event: OutgoingEvent) -> str:
        """Publish and wait for the server's ack; returns the message id. Raises PublishError."""
        ...


# --- tuning backend ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningJobSpec:
    """Everything needed to start one supervised tuning job."""

    base_model: str
    training_dataset_uri: str
    display_name: str
    validation_dataset_uri: str | None = None
    description: str = ""
    epochs: int | None = None
    adapter_size: int | None = None
    learning_rate_multiplier: float | None = None
    export_last_checkpoint_only: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    kms_key_name: str | None = None
    service_account: str | None = None
    pre_tuned_model: str | None = None
    """Continuous tuning: the tuned model (``projects/../models/ID[@v]``) to continue from."""
    pre_tuned_checkpoint_id: str | None = None


@dataclass(frozen=True)
class TunedCheckpoint:
    """An exported intermediate checkpoint and the endpoint it is deployed to."""

    checkpoint_id: str
    epoch: int | None
    step: int | None
    endpoint: str | None


MetricSeries = dict[str, list[tuple[int, float]]]
"""Scalar time series of one tuning job: metric name (e.g. ``train_total_loss``) -> (step, value)."""


@dataclass(frozen=True)
class TuningJob:
    """Backend-neutral view of a tuning job (what ``tunings.get`` told us)."""

    name: str
    state: TuningState
    base_model: str = ""
    display_name: str = ""
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    update_time: datetime | None = None
    tuned_model: str | None = None
    endpoint: str | None = None
    checkpoints: tuple[TunedCheckpoint, ...] = ()
    error_code: int | None = None
    error_message: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    data_stats: JSON | None = None
    metrics: JSON | None = None
    """Training progress/metrics when the backend exposes them (steps done, losses)."""
    detail_state: str | None = None
    """Vertex's ``tuningJobState`` sub-state (e.g. ``TUNING_JOB_STATE_WAITING_FOR_QUOTA``), if sent."""
    curves: JSON | None = None
    """Bounded metric curves copied by the poller (:mod:`shared.curves`); None when the backend has none."""

    @property
    def has_ended(self) -> bool:
        """Same meaning as google-genai's ``TuningJob.has_ended``."""
        return self.state.has_ended


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for an endpoint or model, with deterministic defaults."""

    contents: list[JSON]
    system_instruction: str | None = None
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int = 256
    thinking_budget: int | None = 0
    """0 turns thinking off on models that think (recommended for tuned 2.5 models)."""
    thinking_level: str | None = None
    """``MINIMAL``/``LOW``/... for families that take a level (Gemini 3); see shared.model_families."""
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class GenerationResult:
    """What an endpoint answered."""

    text: str
    finish_reason: str | None = None
    prompt_token_count: int | None = None
    output_token_count: int | None = None
    latency_seconds: float = 0.0


@dataclass(frozen=True)
class DeployedModelRef:
    """A model deployed on an endpoint (what undeploy needs)."""

    endpoint: str
    deployed_model_id: str


def unversioned_model_name(name: str) -> str:
    """``projects/../models/123@1`` -> ``projects/../models/123`` (what ``models.delete`` takes).

    >>> unversioned_model_name("projects/p/locations/l/models/123@1")
    'projects/p/locations/l/models/123'
    """
    head, sep, last = name.rpartition("/")
    return f"{head}{sep}{last.split('@', 1)[0]}"


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint's deployed models and how its traffic is split among them (percent)."""

    name: str
    deployed_model_ids: tuple[str, ...] = ()
    traffic_split: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """A tuned model's labels and where it is deployed."""

    name: str
    labels: dict[str, str]
    deployments: tuple[DeployedModelRef, ...] = ()
    create_time: datetime | None = None


class TuningBackend(Protocol):
    """Vertex AI tuning (google-genai) or the local Vertex-compatible server: same adapter."""

    def create_job(self, spec: TuningJobSpec) -> TuningJob:
        """Start a job. Never retried blindly: callers reconcile by label first."""
        ...

    def get_job(self, name: str) -> TuningJob:
        """Current view of a job; NotFoundError if it vanished."""
        ...

    def list_jobs(self, labels: dict[str, str] | None = None, page_size: int = 100) -> Iterator[TuningJob]:
        """All jobs, optionally only those carrying all the given labels (pages fetched lazily)."""
        ...

    def cancel_job(self, name: str) -> None:
        """Request cancellation (the job moves to CANCELLING, then usually CANCELLED)."""
        ...

    def read_metric_series(self, name: str) -> MetricSeries | None:
        """The job's scalar metric series (loss, token accuracy per step); None if the backend keeps none."""
        ...

    def generate(self, endpoint: str, request: GenerationRequest) -> GenerationResult:
        """Generate on a full ``projects/../endpoints/ID`` or a base model name."""
        ...

    def get_model(self, name: str) -> ModelInfo:
        """Labels and deployments of a tuned model; NotFoundError if deleted."""
        ...

    def get_endpoint(self, endpoint: str) -> EndpointInfo:
        """Deployed models and traffic split of an endpoint; NotFoundError if deleted."""
        ...

    # The cleanup mutations below start a long-running operation and return at once: the name
    # of the operation while it runs, None when it already finished without error (an operation
    # that finished with an error raises that error). Poll it with get_operation. None of them
    # is retried by the adapter: the caller retries the one step that failed (shared.retry).

    def undeploy_model(
        self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None = None
    ) -> str | None:
        """Undeploy a model from an endpoint (``traffic_split``: the endpoint's new split); NotFoundError if gone."""
        ...

    def delete_endpoint(self, endpoint: str) -> str | None:
        """Delete an (empty) endpoint; NotFoundError if already gone."""
        ...

    def delete_model(self, name: str) -> str | None:
        """Delete an undeployed model (a ``@version`` suffix is dropped); NotFoundError if already gone."""
        ...

    def get_operation(self, name: str) -> bool:
        """True when the operation has finished without error; False while it runs; its error if it failed."""
        ...


# --- spending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendReservation:
    """The answer of :meth:`SpendLedger.reserve`."""

    accepted: bool
    spent_usd: float
    """What the lineage-month had reserved before this job (this job's own amount excluded)."""
    amount_usd: float
    """This job's reserved amount (0 when refused)."""


class SpendLedger(Protocol):
    """Per-lineage, per-month spending, reserved atomically before a job is submitted."""

    def reserve(self, key: str, job_id: str, amount_usd: float, limit_usd: float | None) -> SpendReservation:
        """Add ``amount_usd`` for ``job_id`` to ``key`` unless that would exceed ``limit_usd``.

        Atomic: two reservations at once cannot both slip under the limit. Idempotent per job:
        a second call for the same job returns its first answer without counting it twice.
        """
        ...

    def get(self, key: str) -> JSON | None:
        """The ledger document of ``key`` (``{key, reserved_usd, jobs: {job_id: {...}}}``), or None."""
        ...

    def record_actual(self, key: str, job_id: str, actual: JSON) -> None:
        """Store a finished job's actual billable tokens/cost next to its reservation."""
        ...
