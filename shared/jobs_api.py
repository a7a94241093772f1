"""The jobs API, independent of the web framework: request in, status + JSON body out.

Routes (see ``shared/openapi.yaml``):

* ``GET /healthz`` - liveness, no authentication.
* ``GET /jobs`` - newest first, filters ``state lineage dataset since limit page_token``.
* ``GET /jobs/{id}`` - the full record.
* ``POST /jobs/{id}:cancel`` - cancel; only principals on the allow-list.
* ``/ui/...`` - the operators' dashboard (:mod:`shared.ui`, same authentication).

Every error has the same shape, ``{"error": {"code", "message", "status", "details"}}``; user
input never produces a 500.

Authentication: in GCP the function is deployed without unauthenticated access, so Cloud Run
has already checked the caller's identity token; we verify it again to learn the principal
(needed for the cancel allow-list). The local stack uses a static bearer token instead.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import jobs_service
from shared.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidParameterError,
    JobNotCancellableError,
    RecordNotFoundError,
    SftpilotError,
    is_retryable,
)
from shared.logs import log_event
from shared.ports import Clock, JobStore, TuningBackend
from shared.record_parts import part_dict

if TYPE_CHECKING:
    from shared.ui import UiResponse

TokenVerifier = Callable[[str, list[str]], Mapping[str, Any]]
"""(token, accepted audiences) -> verified claims; raises ValueError when the token is not valid."""

_JOB_PATH = re.compile(r"^/jobs/(?P<id>[^/:]+)$")
_CANCEL_PATH = re.compile(r"^/jobs/(?P<id>[^/:]+):cancel$")


@dataclass(frozen=True)
class ApiResponse:
    """Status code and JSON body."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Principal:
    """Who is calling, and whether they may cancel jobs."""

    name: str
    can_cancel: bool


@dataclass(frozen=True)
class Authenticator:
    """Checks the ``Authorization: Bearer`` header.

    A request is accepted if the token equals ``static_token`` (local stack; full rights) or
    is a Google-signed ID token for one of the comma-separated ``audience`` values (GCP; cancel
    only for ``cancel_principals``). Service accounts mint tokens for the API's URL
    (``gcloud auth print-identity-token --audiences=URL``); user accounts cannot choose the
    audience, so a deployment that wants people to use the CLI with their own login adds
    gcloud's client id ``32555940559.apps.googleusercontent.com`` to the list. Cloud Run's IAM
    check (roles/run.invoker) still applies before any request reaches this code.
    """

    static_token: str = ""
    audience: str = ""
    cancel_principals: tuple[str, ...] = ()
    verifier: TokenVerifier | None = None

    def authenticate(self, authorization: str | None) -> Principal:
        """Return the caller or raise AuthenticationError."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("send 'Authorization: Bearer <token>'")
        token = authorization.removeprefix("Bearer ").strip()
        if self.static_token and hmac.compare_digest(token.encode(), self.static_token.encode()):
            return Principal(name="local-token", can_cancel=True)
        if self.verifier is None or not self.audience:
            raise AuthenticationError("token not accepted")
        try:
            claims = self.verifier(token, [a.strip() for a in self.audience.split(",") if a.strip()])
        except ValueError as exc:
            raise AuthenticationError(f"invalid identity token ({exc})") from None
        email = str(claims.get("email") or claims.get("sub") or "")
        return Principal(name=email, can_cancel=email in self.cancel_principals)


def google_id_token_verifier(token: str, audience: list[str]) -> Mapping[str, Any]:
    """Verify a Google-signed OIDC token (fetches Google's public certs, cached by google-auth)."""
    from google.auth.transport import requests as google_requests  # noqa: PLC0415 - only in GCP
    from google.oauth2 import id_token  # noqa: PLC0415

    claims: Mapping[str, Any] = id_token.verify_oauth2_token(  # type: ignore[no-untyped-call]
        token, google_requests.Request(), audience
    )
    return claims


@dataclass
class JobsApi:
    """Routes requests to :mod:`shared.jobs_service`."""

    jobs: JobStore
    tuning: Callable[[], TuningBackend]
    """Built only for cancel: reads never need a tuning client."""
    clock: Clock
    auth: Authenticator

    def handle(self, method: str, path: str, params: Mapping[str, str], authorization: str | None) -> ApiResponse:
        """Serve one request; never raises for user input."""
        path = path.rstrip("/") or "/"
        try:
            if path == "/healthz":
                return self._only(method, "GET", lambda: ApiResponse(200, {"status": "ok"}))
            principal = self.auth.authenticate(authorization)
            if path == "/jobs":
                return self._only(method, "GET", lambda: self._list(params))
            if match := _CANCEL_PATH.match(path):
                job_id = match["id"]
                return self._only(method, "POST", lambda: self._cancel(job_id, principal))
            if match := _JOB_PATH.match(path):
                job_id = match["id"]
                return self._only(method, "GET", lambda: self._get(job_id))
            return _error(404, "E_NOT_FOUND", f"no route for {path}; see /jobs, /jobs/{{id}}, /jobs/{{id}}:cancel")
        except AuthenticationError as exc:
            return _error(401, exc.code, str(exc))
        except ForbiddenError as exc:
            return _error(403, exc.code, str(exc), exc.to_dict())
        except InvalidParameterError as exc:
            return _error(400, exc.code, str(exc), exc.to_dict())
        except RecordNotFoundError as exc:
            return _error(404, exc.code, str(exc), exc.to_dict())
        except JobNotCancellableError as exc:
            return _error(409, exc.code, str(exc), exc.to_dict())
        except Exception as exc:
            retry = is_retryable(exc)
            log_event("ERROR", "jobs API request failed", path=path, error=repr(exc), retryable=retry)
            code = exc.code if isinstance(exc, SftpilotError) else "E_INTERNAL"
            return _error(503 if retry else 500, code, "internal error; try again" if retry else "internal error")

    @staticmethod
    def _only(method: str, allowed: str, action: Callable[[], ApiResponse]) -> ApiResponse:
        if method.upper() != allowed:
            refused = _error(405, "E_METHOD_NOT_ALLOWED", f"expected {allowed}, got {method.upper()}")
            return ApiResponse(refused.status, refused.body, headers=(("Allow", allowed),))
        return action()

    def handle_ui(
        self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str], form: Mapping[str, str]
    ) -> UiResponse:
        """Serve the dashboard (``/ui/...``); the UI package is imported only now, not at cold start."""
        from shared.ui import handle_ui  # noqa: PLC0415 - lazy: keep it out of the functions' cold start

        return handle_ui(self, method, path, params, headers, form)

    def _list(self, params: Mapping[str, str]) -> ApiResponse:
        query = jobs_service.parse_list_filters(params)
        page = jobs_service.list_jobs(self.jobs, query)
        return ApiResponse(
            200,
            {"jobs": [jobs_service.summarize(r) for r in page.records], "next_page_token": page.next_page_token},
        )

    def _get(self, job_id: str) -> ApiResponse:
        return ApiResponse(200, jobs_service.get_job(self.jobs, job_id).to_dict())

    def _cancel(self, job_id: str, principal: Principal) -> ApiResponse:
        if not principal.can_cancel:
            raise ForbiddenError(principal.name, "cancel jobs (not on SFTPILOT_API_CANCEL_PRINCIPALS)")
        result = jobs_service.cancel_job(
            job_id, principal=principal.name, jobs=self.jobs, tuning=self.tuning(), clock=self.clock
        )
        log_event("NOTICE", "job cancel requested", job_id=job_id, principal=principal.name)
        return ApiResponse(
            200,
            {
                "job": jobs_service.summarize(result.record),
                "cancel_request": part_dict(result.record.cancel_request),
                "called_backend": result.called_backend,
            },
        )


def _error(status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> ApiResponse:
    return ApiResponse(
        status, {"error": {"code": code, "message": message, "status": status, "details": dict(details or {})}}
    )
