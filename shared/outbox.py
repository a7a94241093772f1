"""Transactional outbox: an event is committed with the transition that caused it, then published.

Why: a function can crash between "record says SUCCEEDED" and "event published". With the
outbox the transition and an :class:`~shared.records.OutboxEntry` are one write; publishing
happens afterwards and is repeated by the next poll until it is marked done. Two publishers
racing on one entry are serialised by an effect claim (``publish:<event_id>``) so the same
event is not published twice, except when a publisher dies after Pub/Sub acknowledged but
before the claim completed — then the lease expires and the event goes out again *with the
same event id*, which subscribers use to deduplicate (at-least-once, documented).

Example:
    >>> from shared.adapters.fakes import FakeJobStore, FakePublisher
    >>> from shared.records import utcnow
    >>> jobs, pub = FakeJobStore(), FakePublisher()
    >>> publish_pending("missing", jobs=jobs, publisher=pub, clock=utcnow, owner="t")
    0
"""

from __future__ import annotations

from datetime import datetime

from shared.errors import PublishError
from shared.events import EventType, build_event
from shared.logs import log_event
from shared.ports import Clock, EffectState, JobStore, OutgoingEvent, Publisher, RecordMutation
from shared.records import JSON, JobRecord, OutboxEntry

PUBLISH_LEASE_SECONDS = 60.0


def outbox_entry(event: OutgoingEvent) -> OutboxEntry:
    """Wrap a built event for storage on the record."""
    return OutboxEntry(
        event_id=event.event_id,
        event_type=event.event_type,
        payload={"data": event.data, "attributes": event.attributes, "ordering_key": event.ordering_key},
    )


def stage_event(
    record: JobRecord,
    event_type: EventType,
    data: JSON,
    *,
    state: str | None = None,
    event_id: str | None = None,
) -> JobRecord:
    """Return ``record`` with one more outbox entry (idempotent per event id).

    Call it inside the same ``JobStore.update`` mutation that makes the transition.
    """
    event = build_event(
        event_type,
        job_id=record.id,
        lineage=record.lineage,
        state=state or record.status.value,
        data=data,
        event_id=event_id,
    )
    return record.add_outbox(outbox_entry(event))


def _as_event(entry: OutboxEntry) -> OutgoingEvent:
    payload = entry.payload
    return OutgoingEvent(
        event_id=entry.event_id,
        event_type=entry.event_type,
        data=payload["data"],
        attributes=dict(payload["attributes"]),
        ordering_key=payload.get("ordering_key", ""),
    )


def publish_pending(job_id: str, *, jobs: JobStore, publisher: Publisher, clock: Clock, owner: str) -> int:
    """Publish every unpublished outbox entry of one record; returns how many went out now.

    Raises PublishError (retryable) when Pub/Sub refuses: the entry stays pending.
    """
    record = jobs.get(job_id)
    if record is None:
        return 0
    sent = 0
    for entry in record.outbox:
        if entry.published_at is not None:
            continue
        claim_id = f"publish:{entry.event_id}"
        claim = jobs.acquire_effect(claim_id, owner, PUBLISH_LEASE_SECONDS, clock())
        if claim.state is EffectState.IN_PROGRESS:
            continue  # someone else is publishing it right now
        if claim.state is EffectState.ACQUIRED:
            try:
                message_id = publisher.publish(_as_event(entry))
            except PublishError:
                jobs.release_effect(claim_id, owner)
                raise
            jobs.complete_effect(claim_id, owner, {"message_id": message_id})
            sent += 1
            log_event(
                "INFO",
                "event published",
                job_id=job_id,
                event_id=entry.event_id,
                event_type=entry.event_type,
                message_id=message_id,
            )
        # ACQUIRED (just sent) or COMPLETED (sent earlier, mark was lost): mark it on the record.
        jobs.update(job_id, _marker(entry.event_id, clock()))
    return sent


def _marker(event_id: str, at: datetime) -> RecordMutation:
    return lambda record: _mark(record, event_id, at)


def _mark(record: JobRecord, event_id: str, at: datetime) -> JobRecord | None:
    if not any(e.event_id == event_id and e.published_at is None for e in record.outbox):
        return None
    return record.mark_published(event_id, at)
