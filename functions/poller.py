"""HTTP entry point ``poll_tuning_jobs``: Cloud Scheduler (OIDC) or the local scheduler loop calls it.

Answers 200 with the run's JSON summary (record-level errors are inside it and retried by the
next run), and 500 only when the run could not proceed at all (settings invalid, job store
unreachable), so Cloud Scheduler records a failed attempt.
"""

from __future__ import annotations

import json
import uuid

import flask
import functions_framework

from shared.errors import ErrorInfo
from shared.logs import log_event
from shared.poller import PollOptions, run_poll
from shared.wiring import services_from_env


def _json(body: object, status: int) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


@functions_framework.http
def poll_tuning_jobs(request: flask.Request) -> flask.Response:
    """Reconcile every active job record once; the body of the request is ignored."""
    owner = f"poller-{uuid.uuid4().hex[:12]}"
    try:
        services = services_from_env()
        summary = run_poll(
            jobs=services.jobs,
            tuning=services.tuning,
            publisher=services.publisher,
            clock=services.clock,
            options=PollOptions.from_settings(services.settings),
            owner=owner,
        )
    except Exception as exc:  # the run could not proceed: report it, never a traceback
        info = ErrorInfo.from_exception(exc)
        log_event("ERROR", "poll failed", owner=owner, code=info.code, error=info.message)
        return _json({"error": {"code": info.code, "message": info.message}, "owner": owner}, 500)
    return _json({**summary.to_dict(), "owner": owner}, 200)
