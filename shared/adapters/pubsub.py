"""Publisher on Cloud Pub/Sub (google-cloud-pubsub); the emulator when ``PUBSUB_EMULATOR_HOST`` is set.

``publish`` waits for the server's acknowledgement (bounded by ``timeout_seconds``) and raises
:class:`~shared.errors.PublishError` otherwise: a publish that failed is never "done", and
nothing is left buffered when a function returns. Messages with an ordering key go through a
publisher with message ordering enabled; after a failed ordered publish the key is resumed so
the next attempt (the caller's retry) is not rejected by the client.

Example:
    >>> publisher = PubSubPublisher("projects/p/topics/sftpilot-events")  # doctest: +SKIP
    >>> publisher.publish(build_event(...))  # doctest: +SKIP
    '4711'
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import TimeoutError as FutureTimeoutError

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import pubsub_v1

from shared.errors import PublishError
from shared.events import encode_body
from shared.ports import OutgoingEvent

_RESERVED_KWARGS = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})
"""Attribute names that would collide with ``PublisherClient.publish`` keyword arguments."""


class PubSubPublisher:
    """:class:`shared.ports.Publisher` for one topic (client created on first use, thread-safe)."""

    def __init__(
        self,
        topic_path: str,
        timeout_seconds: float = 30.0,
        client: pubsub_v1.PublisherClient | None = None,
    ) -> None:
        if not topic_path.startswith("projects/") or "/topics/" not in topic_path:
            raise ValueError(f"topic_path must look like projects/P/topics/T, got {topic_path!r}")
        self.topic_path = topic_path
        self.timeout_seconds = timeout_seconds
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> pubsub_v1.PublisherClient:
        """The publisher client, with message ordering enabled."""
        with self._lock:
            if self._client is None:
                options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
                self._client = pubsub_v1.PublisherClient(publisher_options=options)
            return self._client

    def publish(self, event: OutgoingEvent) -> str:
        """Publish and wait for the server's ack; returns the message id. Raises PublishError."""
        clash = _RESERVED_KWARGS & set(event.attributes)
        if clash:
            raise PublishError(self.topic_path, event.event_id, f"reserved attribute names {sorted(clash)}")
        client = self.client
        retry = Retry(initial=0.1, maximum=5.0, multiplier=2.0, timeout=self.timeout_seconds, predicate=_transient)
        try:
            future = client.publish(
                self.topic_path,
                encode_body(event),
                ordering_key=event.ordering_key,
                retry=retry,
                timeout=self.timeout_seconds,
                **event.attributes,
            )
            message_id: str = future.result(timeout=self.timeout_seconds)
        except FutureTimeoutError:
            self._resume(event.ordering_key)
            raise PublishError(self.topic_path, event.event_id, f"no ack within {self.timeout_seconds:.0f} s") from None
        except Exception as exc:
            self._resume(event.ordering_key)
            raise PublishError(self.topic_path, event.event_id, f"{type(exc).__name__}: {exc}") from exc
        return message_id

    def close(self) -> None:
        """Flush and stop the client (pending publishes are sent first)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _resume(self, ordering_key: str) -> None:
        """An ordered publish that failed pauses its key in the client: resume it for the retry."""
        if ordering_key and self._client is not None:
            # Best effort: if resuming fails, the next publish reports the error itself.
            with contextlib.suppress(Exception):
                self._client.resume_publish(self.topic_path, ordering_key)


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.Aborted,
            gexc.ResourceExhausted,
            gexc.Unknown,
            gexc.Cancelled,
        ),
    )
