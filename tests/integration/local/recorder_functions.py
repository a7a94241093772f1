"""Test-only Cloud Functions source: records every delivery so tests can see exactly what arrived.

Served by functions-framework exactly like functions/main.py (same four target names). Each
call appends one JSON line to ``$RECORDER_DIR/<target>.jsonl``. Objects whose name contains
``fail-once`` make the upload function fail their first delivery; events with attribute
``fail=always`` make the completion function fail every time (retry / dead-letter tests).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import flask
import functions_framework

_lock = threading.Lock()
_ENV_KEYS = (
    "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "SFTPILOT_BUCKET",
    "SFTPILOT_EVENTS_TOPIC",
    "SFTPILOT_TUNING_BASE_URL",
    "SFTPILOT_TUNING_LOCATION",
    "SFTPILOT_API_TOKEN",
)


def _record(target: str, entry: dict) -> int:
    """Append an entry; returns how many entries with the same ``key`` existed before."""
    path = Path(os.environ["RECORDER_DIR"]) / f"{target}.jsonl"
    with _lock:
        previous = []
        if path.exists():
            previous = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        entry["env"] = {k: os.environ.get(k) for k in _ENV_KEYS}
        with path.open("a") as out:
            out.write(json.dumps(entry) + "\n")
    return sum(1 for p in previous if p.get("key") == entry.get("key"))


def _attributes(event) -> dict:
    return {k: v for k, v in event.get_attributes().items() if k != "data"}


@functions_framework.cloud_event
def on_dataset_uploaded(event) -> None:
    data = event.get_data()
    attempts_before = _record(
        "on_dataset_uploaded", {"key": event["id"], "attributes": _attributes(event), "data": data}
    )
    if "fail-once" in data.get("name", "") and attempts_before == 0:
        raise RuntimeError("failing the first delivery on purpose")


@functions_framework.http
def poll_tuning_jobs(request: flask.Request):
    _record(
        "poll_tuning_jobs",
        {
            "key": "poll",
            "method": request.method,
            "headers": dict(request.headers),
            "body": request.get_data(as_text=True),
        },
    )
    return {"polled": True}


@functions_framework.cloud_event
def on_tuning_completed(event) -> None:
    message = event.get_data()["message"]
    attributes = message.get("attributes", {})
    _record(
        "on_tuning_completed",
        {
            "key": message.get("messageId"),
            "attributes": _attributes(event),
            "message_attributes": attributes,
            "message_data": base64.b64decode(message.get("data", "")).decode(),
            "subscription": event.get_data().get("subscription"),
        },
    )
    if attributes.get("fail") == "always":
        raise RuntimeError("failing every delivery on purpose")


@functions_framework.http
def jobs_api(request: flask.Request):
    expected = f"Bearer {os.environ.get('SFTPILOT_API_TOKEN', '')}"
    if request.headers.get("Authorization") != expected:
        return {"error": "unauthenticated"}, 401
    return {"jobs": [], "next_page_token": None}
