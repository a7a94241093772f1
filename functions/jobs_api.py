"""HTTP entry point ``jobs_api``: Flask request in, :class:`shared.jobs_api.JobsApi` response out."""

from __future__ import annotations

import functools

import flask
import functions_framework

from shared.jobs_api import Authenticator, JobsApi, google_id_token_verifier
from shared.wiring import services_from_env


@functools.cache
def _api() -> JobsApi:
    services = services_from_env()
    settings = services.settings
    return JobsApi(
        jobs=services.jobs,
        tuning=lambda: services.tuning,
        clock=services.clock,
        auth=Authenticator(
            static_token=settings.api_token,
            audience=settings.api_audience,
            cancel_principals=settings.api_cancel_principals,
            verifier=google_id_token_verifier,
        ),
    )


@functions_framework.http
def jobs_api(request: flask.Request) -> flask.Response:
    """List, show and cancel job records (see shared/openapi.yaml); the dashboard under /ui/."""
    if request.path == "/ui" or request.path.startswith("/ui/"):
        page = _api().handle_ui(
            request.method,
            request.path,
            request.args.to_dict(flat=True),
            dict(request.headers),
            request.form.to_dict(flat=True) if request.method == "POST" else {},
        )
        return flask.Response(page.body, status=page.status, content_type=page.content_type, headers=list(page.headers))
    response = _api().handle(
        request.method, request.path, request.args.to_dict(flat=True), request.headers.get("Authorization")
    )
    return flask.Response(
        flask.json.dumps(response.body),
        status=response.status,
        mimetype="application/json",
        headers=list(response.headers),
    )
