"""``sftpilot events tail``: print sftpilot events as they are published.
``sftpilot events dead-letters``: show (and ``--replay``) what landed on the dead-letter topic.

It creates a temporary subscription on the events topic (with a server-side filter in GCP;
the emulator ignores filters, so events are filtered here too), streams messages until Ctrl-C,
``--max-events`` or ``--timeout``, and deletes the subscription on the way out.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from shared.cli.common import friendly_errors
from shared.settings import ClientSettings


def subscription_filter(types: tuple[str, ...], lineage: str | None) -> str:
    """A Pub/Sub filter expression on our attributes.

    >>> subscription_filter(("job.succeeded", "job.failed"), "faq")
    '(attributes.type = "job.succeeded" OR attributes.type = "job.failed") AND attributes.lineage = "faq"'
    """
    clauses = []
    if types:
        clauses.append("(" + " OR ".join(f'attributes.type = "{t}"' for t in types) + ")")
    if lineage:
        clauses.append(f'attributes.lineage = "{lineage}"')
    return " AND ".join(clauses)


def wanted(attributes: dict[str, str], types: tuple[str, ...], lineage: str | None) -> bool:
    """The same filter, applied client-side."""
    return (not types or attributes.get("type") in types) and (not lineage or attributes.get("lineage") == lineage)


def format_event(attributes: dict[str, str], body: dict[str, Any]) -> str:
    """One line per event for humans.

    >>> format_event({"type": "job.succeeded", "job_id": "abc", "lineage": "faq", "state": "SUCCEEDED"},
    ...              {"occurred_at": "2026-01-01T00:00:00Z", "tuned_model": "m@1"})
    '2026-01-01T00:00:00Z  job.succeeded       faq  abc  SUCCEEDED  tuned_model=m@1'
    """
    extra = ""
    for key in ("reason", "tuned_model", "model", "passed", "stalled_for_seconds", "error"):
        if body.get(key) not in (None, "", []):
            extra = f"  {key}={body[key]}"
            break
    return (
        f"{body.get('occurred_at', '')}  {attributes.get('type', '?'):<18}  {attributes.get('lineage', '')}  "
        f"{attributes.get('job_id', '')}  {attributes.get('state', '')}{extra}"
    )


@click.group("events")
def events_group() -> None:
    """Subscribe to sftpilot events."""


@events_group.command("tail")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable), e.g. job.succeeded.")
@click.option("--lineage", help="Only this lineage.")
@click.option("--max-events", type=click.IntRange(1, None), help="Stop after this many events.")
@click.option("--timeout", type=click.FloatRange(0.1, None), help="Stop after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: {attributes, data}.")
@friendly_errors
def tail(
    types: tuple[str, ...], lineage: str | None, max_events: int | None, timeout: float | None, as_json: bool
) -> None:
    """Print events as they arrive (Ctrl-C to stop)."""
    from google.cloud.pubsub_v1 import SubscriberClient  # noqa: PLC0415 - heavy import only for this command

    settings = ClientSettings.from_env()
    topic = settings.events_topic_path
    project = topic.split("/")[1]
    subscriber = SubscriberClient()
    subscription = f"projects/{project}/subscriptions/sftpilot-tail-{uuid.uuid4().hex[:12]}"
    expression = subscription_filter(types, lineage)
    subscriber.create_subscription(
        request={"name": subscription, "topic": topic, "filter": expression, "ack_deadline_seconds": 30}
    )
    click.echo(f"tailing {topic} via {subscription}" + (f" filter {expression}" if expression else ""), err=True)
    done = threading.Event()
    count = 0
    lock = threading.Lock()

    def on_message(message: Any) -> None:
        nonlocal count
        message.ack()
        attributes = dict(message.attributes)
        if not wanted(attributes, types, lineage):
            return
        try:
            body = json.loads(message.data)
        except ValueError:
            body = {"raw": message.data.decode("utf-8", "replace")}
        with lock:
            if done.is_set():
                return
            click.echo(
                json.dumps({"attributes": attributes, "data": body}) if as_json else format_event(attributes, body)
            )
            count += 1
            if max_events is not None and count >= max_events:
                done.set()

    future = subscriber.subscribe(subscription, on_message)
    restore = _stop_on_signals(done.set)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            done.wait(0.2)
    finally:
        restore()
        future.cancel()
        with contextlib.suppress(Exception):  # a cancelled stream raises; nothing to report
            future.result(timeout=5)
        subscriber.delete_subscription(request={"subscription": subscription})
        subscriber.close()
        click.echo(f"deleted {subscription}; {count} event(s)", err=True)


DEAD_LETTER_SOURCE_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"
"""Attribute Pub/Sub adds to a forwarded message: the subscription it was dead-lettered from
(https://cloud.google.com/pubsub/docs/handling-failures#track-delivery-attempts)."""


@events_group.command("dead-letters")
@click.option(
    "--subscription",
    required=True,
    help="The dead-letter hold subscription (projects/P/subscriptions/S): in GCP "
    "<dead_letter_topic>-hold, on the local stack sftpilot-dead-letters-keep.",
)
@click.option("--max-messages", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--replay", is_flag=True, help="Republish each message to its original topic, then acknowledge it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: {attributes, data, source}.")
@friendly_errors
def dead_letters(subscription: str, max_messages: int, replay: bool, as_json: bool) -> None:
    """Show the messages held on the dead-letter subscription; --replay sends them back.

    Without --replay nothing changes: the messages are released again at once (ack deadline 0).
    With --replay each goes back to the topic of the subscription it was dead-lettered from
    (same data, its attributes without Pub/Sub's dead-letter bookkeeping) and is acknowledged
    only after the publish succeeded.
    """
    from google.api_core.exceptions import DeadlineExceeded  # noqa: PLC0415 - heavy import only here
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient  # noqa: PLC0415 - heavy import

    subscriber = SubscriberClient()
    publisher = PublisherClient() if replay else None
    topics: dict[str, str] = {}
    try:
        try:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": max_messages}, timeout=15)
            received = list(response.received_messages)
        except DeadlineExceeded:  # nothing arrived within the wait: the subscription is empty
            received = []
        done: list[str] = []
        for item in received:
            message = item.message
            attributes = dict(message.attributes)
            source = attributes.get(DEAD_LETTER_SOURCE_ATTRIBUTE, "")
            try:
                body: Any = json.loads(message.data)
            except ValueError:
                body = {"raw": message.data.decode("utf-8", "replace")}
            if as_json:
                click.echo(json.dumps({"attributes": attributes, "data": body, "source": source}))
            else:
                click.echo(f"{message.publish_time}  from {source or '?'}  {format_event(attributes, body)}")
            if publisher is None:
                continue
            if not source:
                click.echo(f"  not replayed: no {DEAD_LETTER_SOURCE_ATTRIBUTE} attribute", err=True)
                continue
            if source not in topics:
                topics[source] = subscriber.get_subscription(request={"subscription": source}).topic
            kept = {k: v for k, v in attributes.items() if not k.startswith("CloudPubSubDeadLetter")}
            publisher.publish(topics[source], message.data, **kept).result(timeout=60)
            done.append(item.ack_id)
        if done:
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": done})
        left = [item.ack_id for item in received if item.ack_id not in set(done)]
        if left:
            subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": left, "ack_deadline_seconds": 0}
            )
        verb = f"replayed {len(done)} of" if replay else "showed"
        click.echo(f"{verb} {len(received)} dead-lettered message(s) from {subscription}", err=True)
    finally:
        subscriber.close()


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Route Ctrl-C/SIGTERM to ``stop`` so the subscription is always deleted."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
