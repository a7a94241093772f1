"""Test support for the emulators: one shared stack per test process, plus isolation helpers.

pytest fixtures live in ``tests/integration/conftest.py`` and ``tests/contract/conftest.py``;
both use :func:`shared_emulators` so a session starts the emulators once, whichever test
directory asks first, and :func:`stop_shared_emulators` stops them at session end (and at
interpreter exit, whatever happens). Isolation is by unique names: every test gets its own
bucket, topic/subscription and Firestore collections (:func:`unique_name`), which is faster
than restarting an emulator and never leaks state between tests.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.stack import LocalStack, StackComponents

_lock = threading.Lock()
_stack: LocalStack | None = None
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def shared_emulators(project: str = "sftpilot-test") -> LocalStack:
    """The process-wide emulators-only stack, started on first call (a few seconds)."""
    global _stack  # noqa: PLW0603 - one stack per test process, by design
    with _lock:
        if _stack is None:
            state_dir = Path(tempfile.mkdtemp(prefix="sftpilot-emulators-"))
            stack = LocalStack(state_dir, project=project, components=StackComponents.EMULATORS)
            stack.start()
            _stack = stack
        return _stack


def stop_shared_emulators() -> None:
    """Stop the shared stack if it was started (idempotent)."""
    global _stack
    with _lock:
        stack, _stack = _stack, None
    if stack is not None:
        stack.stop()
        shutil.rmtree(stack.state_dir, ignore_errors=True)


def unique_name(prefix: str = "t") -> str:
    """A fresh lowercase resource name (valid for buckets, topics, subscriptions, collections)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class TopicHandle:
    """A per-test topic with one pull subscription attached."""

    topic_path: str
    subscription_path: str


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with _NO_PROXY.open(request, timeout=30) as response:
        raw = response.read()
    parsed: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    return parsed


def create_bucket(stack: LocalStack, name: str) -> str:
    """Create a bucket on fake-gcs-server; returns its name."""
    _call("POST", f"{stack.storage_url}/storage/v1/b?project={stack.project}", {"name": name})
    return name


def create_topic(
    stack: LocalStack, topic: str, subscription: str | None = None, *, ordered: bool = False
) -> TopicHandle:
    """Create a topic and a pull subscription (``ordered`` enables message ordering on it)."""
    topic_path = stack.topic_path(topic)
    _call("PUT", f"http://{stack.pubsub_host}/v1/{topic_path}", {})
    sub_path = stack.subscription_path(subscription or f"{topic}-sub")
    body: dict[str, Any] = {"topic": topic_path, "ackDeadlineSeconds": 30}
    if ordered:
        body["enableMessageOrdering"] = True
    _call("PUT", f"http://{stack.pubsub_host}/v1/{sub_path}", body)
    return TopicHandle(topic_path, sub_path)


def delete_topic(stack: LocalStack, topic_path: str) -> None:
    """Delete a topic (subscriptions stay, detached)."""
    try:
        _call("DELETE", f"http://{stack.pubsub_host}/v1/{topic_path}")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


def pull(stack: LocalStack, subscription_path: str, max_messages: int = 100) -> list[dict[str, Any]]:
    """Pull (and ack) what is available now: ``[{data: bytes, attributes, messageId, orderingKey}]``."""
    import base64  # noqa: PLC0415

    answer = _call(
        "POST",
        f"http://{stack.pubsub_host}/v1/{subscription_path}:pull",
        {"maxMessages": max_messages, "returnImmediately": True},
    )
    received = answer.get("receivedMessages", [])
    if received:
        _call(
            "POST",
            f"http://{stack.pubsub_host}/v1/{subscription_path}:acknowledge",
            {"ackIds": [m["ackId"] for m in received]},
        )
    messages = []
    for item in received:
        message = item["message"]
        messages.append(
            {
                "data": base64.b64decode(message.get("data", "")),
                "attributes": message.get("attributes", {}),
                "messageId": message.get("messageId"),
                "orderingKey": message.get("orderingKey", ""),
            }
        )
    return messages
