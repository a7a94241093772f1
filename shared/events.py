"""The event contract: types, deterministic ids, attributes and versioned JSON Schemas.

Every message on the sftpilot events topic has a JSON body that follows
``shared/schemas/events/<type>.schema.json`` and the attributes ``type``, ``job_id``,
``lineage``, ``state`` and ``schema_version`` so subscribers can filter, e.g.
``attributes.type = "job.succeeded" AND attributes.lineage = "support-bot"``.

Example:
    >>> ev = build_event(EventType.JOB_SUCCEEDED, job_id="k1", lineage="faq", state="SUCCEEDED",
    ...                  data={"dataset": "gs://b/d.jsonl#1"})
    >>> ev.event_id, ev.attributes["type"]
    ('k1:SUCCEEDED', 'job.succeeded')
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from shared.ports import OutgoingEvent
from shared.record_parts import ResolvedConfig, TuningView, part_dict
from shared.records import JSON, JobRecord, to_rfc3339, utcnow
from shared.states import JobStatus

SCHEMA_VERSION = "1"


class EventType(StrEnum):
    """Every event sftpilot publishes. Each has a schema file named after its value."""

    DATASET_REJECTED = "dataset.rejected"
    """Validation or config failed; no tuning job was started."""
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    """The tuning job failed, or could not be submitted at all."""
    JOB_CANCELLED = "job.cancelled"
    JOB_EXPIRED = "job.expired"
    JOB_STALLED = "job.stalled"
    """A job sat in PENDING longer than the configured stall time, not waiting for quota (published once)."""
    SMOKE_TEST_PASSED = "smoke_test.passed"
    SMOKE_TEST_FAILED = "smoke_test.failed"
    MODEL_DELETED = "model.deleted"
    """A superseded tuned model of the lineage was retired (or would be, in dry-run)."""
    MODEL_PROMOTED = "model.promoted"
    """The quality gate promoted a new model: it is the lineage's live model now."""
    MODEL_HELD = "model.held"
    """The quality gate held a new model back: not better enough; the live model is unchanged."""
    MODEL_REJECTED = "model.rejected"
    """The quality gate rejected a new model: worse, or its smoke test failed; live unchanged."""


COMPLETION_EVENT_FOR_STATUS: dict[JobStatus, EventType] = {
    JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.FAILED_TO_SUBMIT: EventType.JOB_FAILED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
    JobStatus.EXPIRED: EventType.JOB_EXPIRED,
    JobStatus.REJECTED: EventType.DATASET_REJECTED,
}
"""The single event a record announces when it reaches each of these terminal statuses."""


def event_id_for(job_id: str, suffix: str) -> str:
    """Deterministic event id ``<job id>:<suffix>``: duplicates collapse onto one id."""
    return f"{job_id}:{suffix}"


def build_event(
    event_type: EventType,
    *,
    job_id: str,
    lineage: str,
    state: str,
    data: JSON,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> OutgoingEvent:
    """Assemble a message: body = envelope fields + ``data``; attributes for filtering.

    The default id is ``<job_id>:<state>`` (one completion event per terminal state).
    """
    eid = event_id or event_id_for(job_id, state)
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": eid,
        "type": event_type.value,
        "job_id": job_id,
        "lineage": lineage,
        "state": state,
        "occurred_at": to_rfc3339(occurred_at or utcnow()),
        **data,
    }
    attributes = {
        "type": event_type.value,
        "job_id": job_id,
        "lineage": lineage,
        "state": state,
        "schema_version": SCHEMA_VERSION,
        "event_id": eid,
    }
    return OutgoingEvent(
        event_id=eid, event_type=event_type.value, data=body, attributes=attributes, ordering_key=job_id
    )


def encode_body(event: OutgoingEvent) -> bytes:
    """The message bytes (compact, stable key order)."""
    return json.dumps(event.data, sort_keys=True, separators=(",", ":")).encode()


@cache
def load_schema(event_type: str) -> JSON:
    """The JSON Schema of one event type, shipped inside the package."""
    text = resources.files("shared.schemas.events").joinpath(f"{event_type}.schema.json").read_text()
    schema: JSON = json.loads(text)
    return schema


def job_event_data(record: JobRecord) -> JSON:
    """The data fields of ``job.*`` completion events, from a record's stored tuning view."""
    view = record.tuning or TuningView()
    config = record.config or ResolvedConfig()
    return {
        "dataset": record.dataset.uri,
        "tuning_job": record.tuning_job,
        "base_model": config.base_model,
        "display_name": config.display_name,
        "tuned_model": view.tuned_model,
        "endpoint": view.endpoint,
        "checkpoints": view.checkpoints,
        "error": part_dict(record.error) or view.error,
        "create_time": view.create_time,
        "start_time": view.start_time,
        "end_time": view.end_time,
        "data_stats": view.data_stats,
    }
