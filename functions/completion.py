"""CloudEvent entry point ``on_tuning_completed``: every message of the sftpilot events topic.

Parse the Pub/Sub CloudEvent, call :func:`shared.completion.handle_completion`, map the outcome:

* DONE / DUPLICATE / IGNORED -> return (HTTP 2xx: Pub/Sub acknowledges the message);
* a retryable failure (claim held by another invocation, transient backend, store or publish
  error) -> raise (HTTP 500: Pub/Sub redelivers with backoff);
* a message we cannot parse or a fatal failure -> log it and return: a redelivery would carry
  the same bytes and fail the same way.

Our own ``smoke_test.*`` and ``model.deleted`` events arrive on the same topic (the trigger has
no filter in GCP and the emulator ignores subscription filters): they are ignored with a log line.
"""

from __future__ import annotations

import uuid

import functions_framework
from cloudevents.http import CloudEvent

from shared.completion import CompletionOptions, handle_completion
from shared.completion_message import parse_completion_event
from shared.errors import ErrorInfo, EventParseError, SettingsError, is_retryable
from shared.logs import log_event
from shared.wiring import services_from_env


@functions_framework.cloud_event
def on_tuning_completed(event: CloudEvent) -> None:
    """Smoke-test a finished tuning job and retire the models it supersedes (see module docstring)."""
    try:
        message = parse_completion_event(event.get_attributes(), event.get_data())
    except EventParseError as exc:
        log_event(
            "ERROR",
            "event not understood; acknowledged (a redelivery cannot fix it)",
            cloud_event_id=event.get("id"),
            error=exc.to_dict(),
        )
        return
    if not message.is_handled:
        log_event(
            "INFO",
            "event ignored: not a completion event",
            event_type=message.event_type,
            event_id=message.event_id or None,
            job_id=message.job_id or None,
        )
        return
    owner = f"completion-{message.message_id or 'x'}-{uuid.uuid4().hex[:8]}"
    try:
        services = services_from_env()
    except SettingsError as exc:
        # A misconfigured deployment must not swallow events: fail so they wait for the fix.
        log_event("ERROR", "settings invalid; the event will be redelivered", error=exc.to_dict())
        raise
    try:
        outcome = handle_completion(
            message,
            jobs=services.jobs,
            tuning=services.tuning,
            blobs=services.blobs,
            publisher=services.publisher,
            clock=services.clock,
            options=CompletionOptions.from_settings(services.settings),
            owner=owner,
            spend=services.spend,
        )
    except Exception as exc:
        info = ErrorInfo.from_exception(exc)
        fields = {"event_id": message.event_id, "job_id": message.job_id, "code": info.code, "error": info.message}
        if is_retryable(exc):
            log_event("WARNING", "completion failed; will be redelivered", owner=owner, **fields)
            raise
        log_event("ERROR", "completion failed; acknowledged (not retryable)", owner=owner, **fields)
        return
    log_event("INFO", "completion handled", owner=owner, **outcome.to_log())
