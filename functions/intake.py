"""CloudEvent entry point ``on_dataset_uploaded`` (``google.cloud.storage.object.v1.finalized``).

Parse the event, run :func:`shared.intake.handle_upload`, map the result: every outcome
(submitted, queued, rejected, ignored, duplicate, dropped, failed to submit) returns normally
so the event is acknowledged; a retryable failure (decided by :func:`shared.errors.is_retryable`)
is re-raised, so functions-framework answers 500 and the platform redelivers; anything else is
logged with its stable code and acknowledged (redelivery would fail the same way). Invalid
settings are the exception: the event is refused so it waits for the deployment to be fixed.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.errors import ClaimInProgressError, ErrorInfo, EventParseError, SettingsError, is_retryable
from shared.intake import handle_upload
from shared.logs import log_event
from shared.upload_event import from_cloud_event
from shared.wiring import services_from_env


@functions_framework.cloud_event
def on_dataset_uploaded(event: Any) -> None:
    """Validate a newly uploaded dataset generation and start (at most) one tuning job for it."""
    try:
        upload = from_cloud_event(event)
    except EventParseError as exc:
        log_event("ERROR", "malformed upload event acknowledged without work", **_describe(exc), **_ids(event))
        return
    trace: str | None = None
    try:
        services = services_from_env()
    except SettingsError as exc:
        # A misconfigured deployment must not swallow uploads: fail so they wait for the fix.
        log_event("ERROR", "settings invalid; the event will be redelivered", **_describe(exc), **_ids(event))
        raise
    try:
        if upload.trace_id:
            trace = f"projects/{services.settings.project}/traces/{upload.trace_id}"
        handle_upload(
            upload,
            blobs=services.blobs,
            jobs=services.jobs,
            publisher=services.publisher,
            tuning=services.tuning,
            settings=services.settings,
            clock=services.clock,
            spend=services.spend,
            prices=services.prices,
        )
    except Exception as exc:
        fields = {**_describe(exc), "dataset": upload.uri, "event_id": upload.event_id}
        if is_retryable(exc):
            severity = "INFO" if isinstance(exc, ClaimInProgressError) else "WARNING"
            log_event(severity, "upload not finished: the event will be redelivered", trace=trace, **fields)
            raise
        log_event("ERROR", "upload failed permanently: event acknowledged", trace=trace, **fields)


def _describe(exc: BaseException) -> dict[str, Any]:
    info = ErrorInfo.from_exception(exc)
    return {"error_code": info.code, "error": info.message}


def _ids(event: Any) -> dict[str, Any]:
    try:
        return {"event_id": event["id"], "event_source": event["source"], "event_type": event["type"]}
    except Exception:  # a malformed event may lack even these
        return {}
