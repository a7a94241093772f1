"""The local stand-in for Eventarc's Cloud Storage trigger.

fake-gcs-server publishes classic GCS Pub/Sub notifications (``OBJECT_FINALIZE`` with the
object resource as JSON). In GCP a gen2 function never sees those: Eventarc delivers a
binary-mode CloudEvent ``google.cloud.storage.object.v1.finalized`` with source
``//storage.googleapis.com/projects/_/buckets/B``, subject ``objects/NAME`` and the object
resource as data (``generation`` and ``size`` as strings). This bridge pulls (unary pulls) the
notification subscription and POSTs exactly that to the upload function: ack on 2xx, nack
otherwise, so the subscription's retry policy redelivers like Eventarc retries a failed
function.

Header values are percent-encoded as the CloudEvents HTTP binding requires (object names may
hold any UTF-8 character, HTTP headers only printable ASCII; see :func:`encode_header_value`).
A message the bridge cannot turn into a request (corrupt JSON, ...) is logged, published to
the dead-letter topic with the reason, and acked: one bad notification never stops the bridge
from delivering the next ones.

Run it as ``python -m deploy.local.bridge --subscription projects/P/subscriptions/S --target URL
[--dead-letter-topic projects/P/topics/T]``.

Example:
    >>> req = notification_to_cloudevent("17", {"eventType": "OBJECT_FINALIZE", "bucketId": "b",
    ...     "objectId": "datasets/faq/v1.jsonl", "eventTime": "2026-01-01T00:00:00Z"},
    ...     b'{"name": "datasets/faq/v1.jsonl", "bucket": "b", "generation": 5, "size": 9}')
    >>> req.headers["ce-type"], req.headers["ce-subject"], req.data["generation"]
    ('google.cloud.storage.object.v1.finalized', 'objects/datasets/faq/v1.jsonl', '5')
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from shared.logs import log_event

GCS_CLOUDEVENT_TYPES: dict[str, str] = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
}
"""GCS notification ``eventType`` -> Eventarc CloudEvent type."""

PULL_WAIT_SECONDS = 2.0
"""How long one pull waits for messages: also how soon a stop request is noticed."""
_HEADER_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}
"""Characters a header value may carry unencoded: printable ASCII except '"' and '%'."""


def encode_header_value(value: str) -> str:
    """Percent-encode a CloudEvents attribute for an HTTP header.

    The CloudEvents HTTP protocol binding, section 3.1.3.2 "HTTP Header Values"
    (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md#3132-http-header-values):
    string values are UTF-8 encoded and space, '"', '%' and every character outside printable
    ASCII (U+0021-U+007E) is percent-encoded, byte by byte. The CloudEvents Python SDK that
    functions-framework uses (cloudevents 1.12 ``from_http``) does not percent-decode, so the
    function sees ``subject`` encoded; intake reads the object name from the event *data*
    (``data.name``, JSON, exact), never from the subject.

    >>> encode_header_value("objects/datasets/faq/v1.jsonl")
    'objects/datasets/faq/v1.jsonl'
    >>> encode_header_value("objects/datasets/faq/\u4e2d 1%.jsonl")
    'objects/datasets/faq/%E4%B8%AD%201%25.jsonl'
    """
    return "".join(ch if ch in _HEADER_SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in value)


_STRING_FIELDS = ("generation", "metageneration", "size")
"""Object-resource fields the JSON API (and so Eventarc) encodes as strings (int64)."""


@dataclass(frozen=True)
class CloudEventRequest:
    """One binary-mode CloudEvent HTTP request: ``ce-*`` headers plus the JSON data."""

    headers: dict[str, str]
    data: dict[str, Any]

    @property
    def body(self) -> bytes:
        """The request body (the object resource JSON)."""
        return json.dumps(self.data, separators=(",", ":")).encode()


def notification_to_cloudevent(message_id: str, attributes: Mapping[str, str], data: bytes) -> CloudEventRequest | None:
    """The Eventarc CloudEvent for one GCS notification, or None for event kinds we do not map."""
    event_type = GCS_CLOUDEVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None:
        return None
    payload: dict[str, Any] = json.loads(data) if data else {}
    if not isinstance(payload, dict):
        raise ValueError(f"notification data is JSON {type(payload).__name__}, expected an object")
    bucket = attributes.get("bucketId") or str(payload.get("bucket", ""))
    name = attributes.get("objectId") or str(payload.get("name", ""))
    payload.setdefault("bucket", bucket)
    payload.setdefault("name", name)
    if "generation" not in payload and attributes.get("objectGeneration"):
        payload["generation"] = attributes["objectGeneration"]
    if event_type == GCS_CLOUDEVENT_TYPES["OBJECT_FINALIZE"]:
        payload.setdefault("metageneration", "1")  # a new generation always starts at 1
    for key in _STRING_FIELDS:
        if key in payload and payload[key] is not None:
            payload[key] = str(payload[key])
    if "generation" in payload:  # the JSON API's id form (fake-gcs-server writes name#generation)
        payload["id"] = f"{bucket}/{name}/{payload['generation']}"
    # Eventarc's time for a finalize is the object's update time (sub-second precision); the
    # notification attribute only has whole seconds.
    event_time = str(payload.get("updated") or attributes.get("eventTime", ""))
    headers = {
        "ce-specversion": "1.0",
        "ce-id": message_id,
        "ce-type": event_type,
        "ce-source": encode_header_value(f"//storage.googleapis.com/projects/_/buckets/{bucket}"),
        "ce-subject": encode_header_value(f"objects/{name}"),
        "ce-time": encode_header_value(event_time),
        "ce-bucket": encode_header_value(bucket),
        "Content-Type": "application/json; charset=utf-8",
    }
    return CloudEventRequest(headers=headers, data=payload)


class NotificationBridge:
    """Streaming-pulls GCS notifications and delivers them to one function URL."""

    def __init__(
        self,
        subscription_path: str,
        target_url: str,
        *,
        max_in_flight: int = 4,
        request_timeout: float = 600.0,
        dead_letter: Callable[[str, Mapping[str, str], bytes, str], None] | None = None,
    ) -> None:
        self.subscription_path = subscription_path
        self.target_url = target_url
        self.dead_letter = dead_letter
        """Called with (message id, attributes, data, reason) for a message that cannot be delivered."""
        self.dead_lettered = 0
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only: never through a proxy
        self.delivered = 0
        self.failed = 0

    def deliver(self, message_id: str, attributes: Mapping[str, str], data: bytes) -> bool:
        """POST one notification as a CloudEvent; True when it should be acked.

        A message that cannot become a request at all is dead-lettered and acked (redelivering
        it would fail the same way forever); a failed POST is nacked for redelivery.
        """
        try:
            request = notification_to_cloudevent(message_id, attributes, data)
        except Exception as exc:  # any malformed message: park it, keep the bridge alive
            return self._park(message_id, attributes, data, f"cannot convert: {type(exc).__name__}: {exc}")
        if request is None:
            log_event("DEBUG", "bridge: ignoring notification", event_type=attributes.get("eventType"))
            return True
        try:
            response = self._session.post(
                self.target_url, data=request.body, headers=request.headers, timeout=self.request_timeout
            )
        except ValueError as exc:  # e.g. a header requests cannot encode: permanent, park it
            return self._park(message_id, attributes, data, f"cannot send: {type(exc).__name__}: {exc}")
        except requests.RequestException as exc:
            self.failed += 1
            log_event("WARNING", "bridge: delivery failed, will be redelivered", error=str(exc), id=message_id)
            return False
        if 200 <= response.status_code < 300:
            self.delivered += 1
            log_event(
                "INFO",
                "bridge: delivered",
                id=message_id,
                subject=request.headers["ce-subject"],
                status=response.status_code,
            )
            return True
        self.failed += 1
        log_event(
            "WARNING",
            "bridge: function answered non-2xx, will be redelivered",
            id=message_id,
            subject=request.headers["ce-subject"],
            status=response.status_code,
        )
        return False

    def _park(self, message_id: str, attributes: Mapping[str, str], data: bytes, reason: str) -> bool:
        """Log and dead-letter an undeliverable message; True (ack) once it is parked."""
        log_event("ERROR", "bridge: undeliverable notification", id=message_id, reason=reason)
        if self.dead_letter is None:
            return True
        try:
            self.dead_letter(message_id, attributes, data, reason)
        except Exception as exc:  # keep it on the subscription rather than lose it
            log_event("ERROR", "bridge: dead-lettering failed, will be redelivered", id=message_id, error=str(exc))
            return False
        self.dead_lettered += 1
        return True

    def run(self, stop: threading.Event, ready_file: Path | None = None) -> None:
        """Pull until ``stop`` is set (the subscription must exist).

        Synchronous (unary) pulls, not a streaming pull: after a crash the emulator keeps handing
        new messages to a dead process's stream for minutes (seen here: ~3 min), while a unary
        pull leases only the batch in hand, so a restarted bridge receives what arrives next at
        once and the dead one's batch comes back after the subscription's ack deadline.
        """
        from google.api_core import exceptions as api_exceptions  # noqa: PLC0415 - keep import-time light
        from google.cloud import pubsub_v1  # noqa: PLC0415 - keep import-time light for the CLI

        subscriber = pubsub_v1.SubscriberClient()
        log_event("INFO", "bridge: pulling", subscription=self.subscription_path, target=self.target_url)
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text("ready\n")

        def handle(received: Any) -> tuple[str, bool]:
            message = received.message
            try:
                ok = self.deliver(message.message_id, dict(message.attributes), message.data)
            except Exception as exc:  # an unforeseen failure must not leave the message hanging
                ok = self._park(message.message_id, dict(message.attributes), message.data, repr(exc))
            return received.ack_id, ok

        try:
            with ThreadPoolExecutor(max_workers=self.max_in_flight) as pool:
                while not stop.is_set():
                    try:
                        response = subscriber.pull(
                            request={"subscription": self.subscription_path, "max_messages": self.max_in_flight},
                            timeout=PULL_WAIT_SECONDS,
                        )
                    except (api_exceptions.DeadlineExceeded, api_exceptions.ServiceUnavailable):
                        continue  # nothing arrived in time, or a transient emulator hiccup: pull again
                    outcomes = list(pool.map(handle, response.received_messages))
                    acks = [ack_id for ack_id, ok in outcomes if ok]
                    nacks = [ack_id for ack_id, ok in outcomes if not ok]
                    if acks:
                        subscriber.acknowledge(request={"subscription": self.subscription_path, "ack_ids": acks})
                    if nacks:  # redeliver now rather than after the ack deadline
                        subscriber.modify_ack_deadline(
                            request={
                                "subscription": self.subscription_path,
                                "ack_ids": nacks,
                                "ack_deadline_seconds": 0,
                            }
                        )
        finally:
            subscriber.close()


def pubsub_dead_letter(topic_path: str) -> Callable[[str, Mapping[str, str], bytes, str], None]:
    """A dead-letter sink publishing the original message plus ``bridge_error`` / ``original_id``."""
    from google.cloud import pubsub_v1  # noqa: PLC0415

    publisher = pubsub_v1.PublisherClient()

    def publish(message_id: str, attributes: Mapping[str, str], data: bytes, reason: str) -> None:
        extra = {"bridge_error": reason[:1000], "original_id": message_id}
        publisher.publish(topic_path, data, **{**attributes, **extra}).result(timeout=30)

    return publish


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deploy.local.bridge``."""
    parser = argparse.ArgumentParser(description="GCS notifications -> Eventarc-style CloudEvents")
    parser.add_argument("--subscription", required=True, help="projects/P/subscriptions/S")
    parser.add_argument("--target", required=True, help="URL of the upload function")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument("--dead-letter-topic", default=None, help="projects/P/topics/T for undeliverable messages")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dead_letter = None if args.dead_letter_topic is None else pubsub_dead_letter(args.dead_letter_topic)
    bridge = NotificationBridge(
        args.subscription, args.target, max_in_flight=args.max_in_flight, dead_letter=dead_letter
    )
    try:
        bridge.run(stop, args.ready_file)
    except Exception as exc:
        log_event("ERROR", "bridge: stopped on error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
