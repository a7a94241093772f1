"""The job record: one per dataset generation, stored in the ``jobs`` collection.

A record is a plain dataclass that serialises to a JSON-compatible dict (Firestore stores the
dict; the jobs API and ``sftpilot jobs show --json`` print it). Its parts (validation, config,
tuning view, error, smoke test, smoke-test progress, cleanup, gate, cost, cancel request) are the typed dataclasses of
:mod:`shared.record_parts`; a part given as a plain dict is read with its ``from_dict``. Timestamps are timezone-aware
UTC datetimes in Python and RFC 3339 strings on the wire.

Example:
    >>> key = record_key("b", "datasets/faq/v1.jsonl", 17)
    >>> len(key)
    32
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared.record_parts import (
    CancelRequest,
    CleanupRecord,
    CostRecord,
    GateRecord,
    Part,
    RecordError,
    ResolvedConfig,
    SmokeProgress,
    SmokeTestRecord,
    TuningView,
    Validation,
    load_part,
    part_dict,
)
from shared.states import JobStatus, check_transition

JSON = dict[str, Any]


def utcnow() -> datetime:
    """Timezone-aware now (kept in one place so clocks can be injected around it)."""
    return datetime.now(UTC)


def to_rfc3339(value: datetime | None) -> str | None:
    """``2026-11-21T10:00:00.123456Z`` or None.

    >>> to_rfc3339(datetime(2026, 1, 1, tzinfo=UTC))
    '2026-01-01T00:00:00.000000Z'
    """
    if value is None:
        return None
    # Always six fractional digits, so the strings sort in time order (queue_position relies on it).
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_rfc3339(value: str | datetime | None) -> datetime | None:
    """Parse what :func:`to_rfc3339` wrote (and Firestore's own datetimes)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def record_key(bucket: str, name: str, generation: int | str) -> str:
    """Deterministic record id for one object generation: a re-upload is rightly a new job.

    >>> record_key("b", "datasets/x/a.jsonl", 1) == record_key("b", "datasets/x/a.jsonl", "1")
    True
    """
    raw = f"{bucket}/{name}#{int(generation)}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class DatasetRef:
    """The uploaded object that started a job."""

    bucket: str
    name: str
    generation: int
    lineage: str
    size: int | None = None

    @property
    def uri(self) -> str:
        """``gs://bucket/name#generation`` (the stable dataset identifier)."""
        return f"gs://{self.bucket}/{self.name}#{self.generation}"

    @property
    def gcs_uri(self) -> str:
        """``gs://bucket/name`` (what the tuning API reads)."""
        return f"gs://{self.bucket}/{self.name}"

    @property
    def stem(self) -> str:
        """File name without folder and ``.jsonl``."""
        base = self.name.rsplit("/", 1)[-1]
        return base[: -len(".jsonl")] if base.endswith(".jsonl") else base

    @property
    def reports_prefix(self) -> str:
        """Folder (relative to the reports prefix) for this generation's reports."""
        return f"{self.lineage}/{self.stem}/{self.generation}"


@dataclass(frozen=True)
class HistoryEntry:
    """One status transition, kept forever on the record."""

    status: JobStatus
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class OutboxEntry:
    """An event committed together with the transition that caused it; published afterwards."""

    event_id: str
    event_type: str
    payload: JSON
    published_at: datetime | None = None


@dataclass(frozen=True)
class Lease:
    """In-progress lease of an invocation working on the record (powertools-style)."""

    owner: str
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        """True once another invocation may take the work over."""
        return now >= self.expires_at


@dataclass(frozen=True)
class JobRecord:
    """Everything sftpilot knows about one dataset generation."""

    id: str
    dataset: DatasetRef
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    event_id: str = ""
    event_time: datetime | None = None
    lease: Lease | None = None
    validation: Validation | None = None
    """Verdict, counts, stats, first issues and the report URI."""
    config: ResolvedConfig | None = None
    """The resolved tuning config (tuning.yaml merged over deployment defaults)."""
    tuning_job: str | None = None
    """Vertex tuning job resource name once known."""
    tuning: TuningView | None = None
    """Last seen view of the tuning job (state, times, tuned model, endpoint, checkpoints, ...)."""
    error: RecordError | None = None
    history: tuple[HistoryEntry, ...] = ()
    outbox: tuple[OutboxEntry, ...] = ()
    stalled_notified: bool = False
    smoke_test: SmokeTestRecord | None = None
    smoke_progress: SmokeProgress | None = None
    """Smoke-test calls done by an invocation that ran out of time (see shared.completion)."""
    cleanup: CleanupRecord | None = None
    gate: GateRecord | None = None
    """The quality gate's verdict, per-comparison scores and per-prompt table (:mod:`shared.gate`)."""
    cost: CostRecord | None = None
    """Actual billable tokens and cost after the job (the estimate is ``validation.cost``)."""
    cancel_request: CancelRequest | None = None
    queue_position: str = ""
    """Sort key for QUEUED records: upload time then id, so submission follows upload order."""

    def __post_init__(self) -> None:
        # A part given as a plain dict (a test, or a writer not yet converted) is read with the
        # part's from_dict, so a record always holds typed parts; mypy still flags such writers.
        for name, cls in _PART_FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))

    @property
    def lineage(self) -> str:
        """The lineage (dataset folder or configured name)."""
        return self.dataset.lineage

    @property
    def has_pending_outbox(self) -> bool:
        """True while an event committed with a transition has not been published yet."""
        return any(entry.published_at is None for entry in self.outbox)

    def transition(self, new: JobStatus, at: datetime, note: str = "", **changes: Any) -> JobRecord:
        """Return a copy moved to ``new`` (checked by the state machine) with history appended.

        >>> rec = new_record(DatasetRef("b", "datasets/l/a.jsonl", 1, "l"), utcnow())
        >>> rec.transition(JobStatus.SUBMITTING, utcnow()).status
        <JobStatus.SUBMITTING: 'SUBMITTING'>
        """
        check_transition(self.status, new)
        return replace(
            self,
            status=new,
            updated_at=at,
            history=(*self.history, HistoryEntry(status=new, at=at, note=note)),
            **changes,
        )

    def with_changes(self, at: datetime, **changes: Any) -> JobRecord:
        """Copy with fields changed and ``updated_at`` bumped (no status change)."""
        return replace(self, updated_at=at, **changes)

    def add_outbox(self, entry: OutboxEntry) -> JobRecord:
        """Append an event to the outbox unless one with the same id is already there."""
        if any(existing.event_id == entry.event_id for existing in self.outbox):
            return self
        return replace(self, outbox=(*self.outbox, entry))

    def mark_published(self, event_id: str, at: datetime) -> JobRecord:
        """Mark one outbox entry as published."""
        entries = tuple(
            replace(e, published_at=at) if e.event_id == event_id and e.published_at is None else e for e in self.outbox
        )
        return replace(self, outbox=entries)

    # --- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> JSON:
        """JSON-compatible dict (datetimes as RFC 3339); the stored and printed form."""
        data: JSON = {
            "id": self.id,
            "status": self.status.value,
            "lineage": self.dataset.lineage,
            "dataset": self.dataset.uri,
            "dataset_object": self.dataset.gcs_uri,
            "dataset_ref": asdict(self.dataset),
            "tuning_job": self.tuning_job,
            "created_at": to_rfc3339(self.created_at),
            "updated_at": to_rfc3339(self.updated_at),
            "event_id": self.event_id,
            "event_time": to_rfc3339(self.event_time),
            "lease": None
            if self.lease is None
            else {"owner": self.lease.owner, "expires_at": to_rfc3339(self.lease.expires_at)},
            "validation": part_dict(self.validation),
            "config": part_dict(self.config),
            "tuning": part_dict(self.tuning),
            "error": part_dict(self.error),
            "history": [{"status": h.status.value, "at": to_rfc3339(h.at), "note": h.note} for h in self.history],
            "outbox": [
                {
                    "event_id": o.event_id,
                    "event_type": o.event_type,
                    "payload": o.payload,
                    "published_at": to_rfc3339(o.published_at),
                }
                for o in self.outbox
            ],
            "pending_outbox": self.has_pending_outbox,
            "stalled_notified": self.stalled_notified,
            "smoke_test": part_dict(self.smoke_test),
            "smoke_progress": part_dict(self.smoke_progress),
            "cleanup": part_dict(self.cleanup),
            "gate": part_dict(self.gate),
            "cost": part_dict(self.cost),
            "cancel_request": part_dict(self.cancel_request),
            "queue_position": self.queue_position,
        }
        return data

    @classmethod
    def from_dict(cls, data: JSON) -> JobRecord:
        """Inverse of :meth:`to_dict` (tolerates Firestore datetimes and missing optional keys)."""
        ref = data["dataset_ref"]
        lease = data.get("lease")
        created = from_rfc3339(data["created_at"])
        updated = from_rfc3339(data["updated_at"])
        assert created is not None and updated is not None
        return cls(
            id=data["id"],
            dataset=DatasetRef(
                bucket=ref["bucket"],
                name=ref["name"],
                generation=int(ref["generation"]),
                lineage=ref["lineage"],
                size=ref.get("size"),
            ),
            status=JobStatus(data["status"]),
            created_at=created,
            updated_at=updated,
            event_id=data.get("event_id", ""),
            event_time=from_rfc3339(data.get("event_time")),
            lease=None
            if not lease
            else Lease(owner=lease["owner"], expires_at=from_rfc3339(lease["expires_at"]) or created),
            validation=load_part(Validation, data.get("validation")),
            config=load_part(ResolvedConfig, data.get("config")),
            tuning_job=data.get("tuning_job"),
            tuning=load_part(TuningView, data.get("tuning")),
            error=load_part(RecordError, data.get("error")),
            history=tuple(
                HistoryEntry(status=JobStatus(h["status"]), at=from_rfc3339(h["at"]) or created, note=h.get("note", ""))
                for h in data.get("history", [])
            ),
            outbox=tuple(
                OutboxEntry(
                    event_id=o["event_id"],
                    event_type=o["event_type"],
                    payload=o["payload"],
                    published_at=from_rfc3339(o.get("published_at")),
                )
                for o in data.get("outbox", [])
            ),
            stalled_notified=bool(data.get("stalled_notified", False)),
            smoke_test=load_part(SmokeTestRecord, data.get("smoke_test")),
            smoke_progress=load_part(SmokeProgress, data.get("smoke_progress")),
            cleanup=load_part(CleanupRecord, data.get("cleanup")),
            gate=load_part(GateRecord, data.get("gate")),
            cost=load_part(CostRecord, data.get("cost")),
            cancel_request=load_part(CancelRequest, data.get("cancel_request")),
            queue_position=data.get("queue_position", ""),
        )


_PART_FIELDS: dict[str, type[Part]] = {
    "validation": Validation,
    "config": ResolvedConfig,
    "tuning": TuningView,
    "error": RecordError,
    "smoke_test": SmokeTestRecord,
    "smoke_progress": SmokeProgress,
    "cleanup": CleanupRecord,
    "gate": GateRecord,
    "cost": CostRecord,
    "cancel_request": CancelRequest,
}
"""The record's typed parts by field name (also the JSON key)."""


def new_record(
    dataset: DatasetRef,
    now: datetime,
    *,
    event_id: str = "",
    event_time: datetime | None = None,
    lease: Lease | None = None,
) -> JobRecord:
    """A fresh RECEIVED record for a claimed upload event."""
    key = record_key(dataset.bucket, dataset.name, dataset.generation)
    return JobRecord(
        id=key,
        dataset=dataset,
        status=JobStatus.RECEIVED,
        created_at=now,
        updated_at=now,
        event_id=event_id,
        event_time=event_time,
        lease=lease,
        history=(HistoryEntry(status=JobStatus.RECEIVED, at=now, note="upload event claimed"),),
        queue_position=f"{to_rfc3339(event_time or now)}/{key}",
    )
