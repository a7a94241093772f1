"""The local stand-in for Eventarc's Cloud Storage trigger.

fake-gcs-server publishes classic GCS Pub/Sub notifications (``OBJECT_FINALIZE`` with the
object resource as JSON). In GCP a gen2 function never sees those: Eventarc delivers a
binary-mode CloudEvent ``google.cloud.storage.object.v1.finalized`` with source
``//storage.googleapis.com/projects/_/buckets/B``, subject ``objects/NAME`` and the object
resource as data (``generation`` and ``size`` as strings). This bridge streaming-pulls the
notification subscription and POSTs exactly that to the upload function: ack on 2xx, nack
otherwise, so the subscription's retry policy redelivers like Eventarc retries a failed
function.

Run it as ``python -m deploy.local.bridge --subscription projects/P/subscriptions/S --target URL``.

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
from collections.abc import Mapping
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
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-subject": f"objects/{name}",
        "ce-time": event_time,
        "ce-bucket": bucket,
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
    ) -> None:
        self.subscription_path = subscription_path
        self.target_url = target_url
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only: never through a proxy
        self.delivered = 0
        self.failed = 0

    def deliver(self, message_id: str, attributes: Mapping[str, str], data: bytes) -> bool:
        """POST one notification as a CloudEvent; True when it should be acked."""
        request = notification_to_cloudevent(message_id, attributes, data)
        if request is None:
            log_event("DEBUG", "bridge: ignoring notification", event_type=attributes.get("eventType"))
            return True
        try:
            response = self._session.post(
                self.target_url, data=request.body, headers=request.headers, timeout=self.request_timeout
            )
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

    def run(self, stop: threading.Event, ready_file: Path | None = None) -> None:
        """Pull until ``stop`` is set (the subscription must exist)."""
        from google.cloud import pubsub_v1  # noqa: PLC0415 - keep import-time light for the CLI

        subscriber = pubsub_v1.SubscriberClient()
        flow = pubsub_v1.types.FlowControl(max_messages=self.max_in_flight)

        def callback(message: Any) -> None:
            ok = self.deliver(message.message_id, dict(message.attributes), message.data)
            if ok:
                message.ack()
            else:
                message.nack()

        future = subscriber.subscribe(self.subscription_path, callback=callback, flow_control=flow)
        log_event("INFO", "bridge: pulling", subscription=self.subscription_path, target=self.target_url)
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text("ready\n")
        try:
            while not stop.wait(0.5):
                if future.done():
                    future.result()  # raises the streaming-pull failure
        finally:
            future.cancel()
            subscriber.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deploy.local.bridge``."""
    parser = argparse.ArgumentParser(description="GCS notifications -> Eventarc-style CloudEvents")
    parser.add_argument("--subscription", required=True, help="projects/P/subscriptions/S")
    parser.add_argument("--target", required=True, help="URL of the upload function")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--max-in-flight", type=int, default=4)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bridge = NotificationBridge(args.subscription, args.target, max_in_flight=args.max_in_flight)
    try:
        bridge.run(stop, args.ready_file)
    except Exception as exc:
        log_event("ERROR", "bridge: stopped on error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
