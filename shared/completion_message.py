"""Typed view of the Pub/Sub CloudEvent that carries an sftpilot event to ``on_tuning_completed``.

In GCP the function is triggered by Eventarc with a structured CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` whose data is
``{"message": {"data": <base64>, "attributes": {...}, "messageId": .., "publishTime": ..},
"subscription": ..}``. Locally a push subscription posts the raw envelope and
functions-framework converts it into the same CloudEvent (without ``subscription``).

The message body is one of our own events (see :mod:`shared.events`). Every event of the topic
arrives here, including ones this function does not handle (``smoke_test.*``, ``model.deleted``,
...): those parse with only their type checked, so the handler can ignore them cheaply.

Example:
    >>> import base64, json
    >>> body = {"event_id": "k:SUCCEEDED", "type": "job.succeeded", "job_id": "k", "lineage": "faq",
    ...         "state": "SUCCEEDED"}
    >>> data = {"message": {"data": base64.b64encode(json.dumps(body).encode()).decode(),
    ...                     "attributes": {"type": "job.succeeded"}, "messageId": "7"}}
    >>> msg = parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED, "id": "7"}, data)
    >>> msg.job_id, msg.is_handled
    ('k', True)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import EventParseError
from shared.events import EventType
from shared.records import JSON, from_rfc3339

PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
"""The CloudEvent type of every Pub/Sub-triggered invocation."""

HANDLED_EVENT_TYPES: frozenset[str] = frozenset(
    {
        EventType.JOB_SUCCEEDED.value,
        EventType.JOB_FAILED.value,
        EventType.JOB_CANCELLED.value,
        EventType.JOB_EXPIRED.value,
    }
)
"""The completion events this function acts on; every other type on the topic is ignored."""


@dataclass(frozen=True)
class CompletionMessage:
    """One sftpilot event delivered through Pub/Sub."""

    event_type: str
    """Our event type, e.g. ``job.succeeded`` (from the ``type`` attribute, else the body)."""
    event_id: str
    """Our deterministic event id (``<job_id>:<STATE>``); empty only for ignored types."""
    job_id: str
    lineage: str
    state: str
    body: JSON
    """The decoded event JSON (envelope + data fields)."""
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    publish_time: datetime | None = None
    subscription: str = ""
    cloud_event_id: str = ""
    cloud_event_source: str = ""

    @property
    def is_handled(self) -> bool:
        """True for the completion events :func:`shared.completion.handle_completion` acts on."""
        return self.event_type in HANDLED_EVENT_TYPES


def _require_mapping(value: Any, field_name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EventParseError(field_name, "a JSON object", _preview(value))
    return value


def _preview(value: Any) -> object:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _decode_body(raw: Any) -> JSON:
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("ascii", errors="replace")
    if not isinstance(raw, str) or not raw:
        raise EventParseError("message.data", "a non-empty base64 string", _preview(raw))
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise EventParseError("message.data", "base64-encoded JSON", _preview(raw)) from None
    try:
        body = json.loads(decoded)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventParseError("message.data", "base64-encoded JSON (an sftpilot event)", _preview(decoded)) from None
    if not isinstance(body, dict):
        raise EventParseError("message.data", "a JSON object (an sftpilot event)", _preview(body))
    return body


def _string_field(body: Mapping[str, Any], attributes: Mapping[str, str], name: str, *, required: bool) -> str:
    value = attributes.get(name) or body.get(name)
    if value is None or value == "":
        if required:
            raise EventParseError(f"message.data.{name}", "a non-empty string", value)
        return ""
    if not isinstance(value, str):
        raise EventParseError(f"message.data.{name}", "a string", _preview(value))
    return value


def parse_completion_event(cloud_event_attributes: Mapping[str, Any], data: Any) -> CompletionMessage:
    """Decode a ``messagePublished`` CloudEvent into a :class:`CompletionMessage`.

    Raises:
        EventParseError: naming the field, what was expected and what arrived (fatal: a
            redelivery carries the same bytes).
    """
    ce_type = cloud_event_attributes.get("type")
    if ce_type != PUBSUB_MESSAGE_PUBLISHED:
        raise EventParseError("type", PUBSUB_MESSAGE_PUBLISHED, ce_type)
    envelope = _require_mapping(data, "data")
    message = _require_mapping(envelope.get("message"), "data.message")
    raw_attributes = message.get("attributes") or {}
    attributes = {str(k): str(v) for k, v in _require_mapping(raw_attributes, "message.attributes").items()}
    body = _decode_body(message.get("data"))
    event_type = _string_field(body, attributes, "type", required=True)
    handled = event_type in HANDLED_EVENT_TYPES
    publish_time_raw = message.get("publishTime") or message.get("publish_time")
    try:
        publish_time = from_rfc3339(publish_time_raw) if isinstance(publish_time_raw, str) else None
    except ValueError:
        publish_time = None
    return CompletionMessage(
        event_type=event_type,
        event_id=_string_field(body, attributes, "event_id", required=handled),
        job_id=_string_field(body, attributes, "job_id", required=handled),
        lineage=_string_field(body, attributes, "lineage", required=False),
        state=_string_field(body, attributes, "state", required=False),
        body=body,
        attributes=attributes,
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        publish_time=publish_time,
        subscription=str(envelope.get("subscription") or ""),
        cloud_event_id=str(cloud_event_attributes.get("id") or ""),
        cloud_event_source=str(cloud_event_attributes.get("source") or ""),
    )
