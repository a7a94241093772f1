"""The typed upload event: a GCS ``google.cloud.storage.object.v1.finalized`` CloudEvent.

Parsed with plain dict checks rather than ``google.events``' protobuf classes: the payload is a
flat JSON object, and hand-written checks name the exact field, what was expected and what
arrived (:class:`~shared.errors.EventParseError`), which a protobuf parse error does not.
``generation``, ``metageneration`` and ``size`` arrive as decimal strings (int64 in JSON); they
are accepted as strings or integers.

Example:
    >>> ev = parse_upload_event(
    ...     {"id": "1", "source": "//storage.googleapis.com/projects/_/buckets/b",
    ...      "type": FINALIZED_EVENT_TYPE, "time": "2026-11-21T10:00:00Z"},
    ...     {"bucket": "b", "name": "datasets/faq/v1.jsonl", "generation": "17", "size": "42"})
    >>> (ev.bucket, ev.name, ev.generation, ev.size, ev.uri)
    ('b', 'datasets/faq/v1.jsonl', 17, 42, 'gs://b/datasets/faq/v1.jsonl#17')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.errors import EventParseError
from shared.records import from_rfc3339

FINALIZED_EVENT_TYPE: Final = "google.cloud.storage.object.v1.finalized"
_SOURCE_RE: Final = re.compile(r"^//storage\.googleapis\.com/projects/[^/]+/buckets/(?P<bucket>[^/]+)$")
_TRACEPARENT_RE: Final = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class UploadEvent:
    """One object-finalized notification, typed."""

    event_id: str
    """CloudEvent ``id`` (with ``source``: the platform's duplicate identity)."""
    source: str
    event_type: str
    bucket: str
    name: str
    generation: int
    size: int | None = None
    time: datetime | None = None
    """CloudEvent ``time`` (when GCS emitted the event); falls back to the object's ``updated``."""
    content_type: str | None = None
    metageneration: int | None = None
    trace_id: str | None = None
    """W3C trace id from the ``traceparent`` extension, when the platform sent one."""

    @property
    def uri(self) -> str:
        """``gs://bucket/name#generation``."""
        return f"gs://{self.bucket}/{self.name}#{self.generation}"

    @property
    def is_finalized(self) -> bool:
        """True for object-finalized events (the only kind that triggers work)."""
        return self.event_type == FINALIZED_EVENT_TYPE


def from_cloud_event(event: Any) -> UploadEvent:
    """Parse a ``cloudevents`` CloudEvent (what functions-framework hands the handler)."""
    get_attributes = getattr(event, "get_attributes", None)
    if get_attributes is None:
        raise EventParseError("(event)", "a CloudEvent", type(event).__name__)
    return parse_upload_event(dict(get_attributes()), getattr(event, "data", None))


def parse_upload_event(attributes: Mapping[str, Any], data: Any) -> UploadEvent:
    """Parse CloudEvent attributes + data (a dict, or JSON bytes/str) into an :class:`UploadEvent`.

    Raises:
        EventParseError: naming the field, what was expected and what arrived.
    """
    payload = _payload(data)
    event_id = _required_str(attributes, "id", "a non-empty CloudEvent id")
    source = _required_str(attributes, "source", "a CloudEvent source")
    event_type = _required_str(attributes, "type", "a CloudEvent type")
    bucket = _required_str(payload, "bucket", "the bucket name", prefix="data.")
    match = _SOURCE_RE.match(source)
    if match and match.group("bucket") != bucket:
        raise EventParseError("data.bucket", f"the bucket named in source ({match.group('bucket')!r})", bucket)
    name = _required_str(payload, "name", "the object name", prefix="data.")
    generation = _integer(payload, "generation", required=True)
    assert generation is not None
    time = _time(attributes.get("time"), "time")
    if time is None:
        time = _time(payload.get("updated"), "data.updated")
    content_type = payload.get("contentType")
    return UploadEvent(
        event_id=event_id,
        source=source,
        event_type=event_type,
        bucket=bucket,
        name=name,
        generation=generation,
        size=_integer(payload, "size", required=False),
        time=time,
        content_type=content_type if isinstance(content_type, str) else None,
        metageneration=_integer(payload, "metageneration", required=False),
        trace_id=_trace_id(attributes.get("traceparent")),
    )


def _payload(data: Any) -> Mapping[str, Any]:
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            shown = data[:80] if isinstance(data, str) else bytes(data[:80])
            raise EventParseError("data", "a JSON object (the GCS object resource)", shown) from None
    if not isinstance(data, Mapping):
        raise EventParseError("data", "a JSON object (the GCS object resource)", data)
    return data


def _required_str(mapping: Mapping[str, Any], key: str, expected: str, prefix: str = "") -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise EventParseError(prefix + key, expected, value)
    return value


def _integer(payload: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise EventParseError(f"data.{key}", "a non-negative integer (a decimal string in GCS events)", value)


def _time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventParseError(field, "an RFC 3339 timestamp", value)
    try:
        return from_rfc3339(value)
    except ValueError:
        raise EventParseError(field, "an RFC 3339 timestamp", value) from None


def _trace_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT_RE.match(value.strip())
    return match.group("trace") if match else None
