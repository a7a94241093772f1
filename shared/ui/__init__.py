"""The operators' dashboard, served by the jobs API function under ``/ui/``.

Imported only when a ``/ui/`` path is hit (:meth:`shared.jobs_api.JobsApi.handle_ui` imports it
lazily), so the functions' cold start does not pay for it. Pages are plain HTML with
server-side SVG charts, one stylesheet and one small script served from ``/ui/static/``:
nothing is loaded from elsewhere (works offline; CSP forbids anything else).

Routes:

* ``GET /ui/`` - all jobs (filters ``lineage``, ``state``; pages like ``GET /jobs``).
* ``GET /ui/jobs/{id}`` - one job; ``GET /ui/jobs/{id}/live.json`` - what the page polls.
* ``POST /ui/jobs/{id}/cancel`` - the same rules and permission as ``POST /jobs/{id}:cancel``,
  plus a CSRF token (double-submit: an ``HttpOnly; SameSite=Strict`` cookie and a hidden form
  field must match; a ``Sec-Fetch-Site: cross-site`` request is refused).
* ``GET /ui/lineages/{lineage}`` - the lineage's models over time.

Safety: every request is authenticated exactly like the API (``Authorization: Bearer``; a
browser gets there through ``sftpilot ui``, a local proxy that adds it). Everything taken from
records (dataset text, model answers, configs) is HTML-escaped; no token or credential is ever
written into a page.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import orjson

from shared import jobs_service
from shared.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidParameterError,
    JobNotCancellableError,
    RecordNotFoundError,
)
from shared.logs import log_event
from shared.ports import JobQuery
from shared.records import JobRecord, to_rfc3339
from shared.ui import pages
from shared.ui.assets import ASSETS

if TYPE_CHECKING:
    from shared.jobs_api import JobsApi, Principal

CSRF_COOKIE = "sftpilot_csrf"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 25
LINEAGE_MAX_RECORDS = 500

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)

_JOB = re.compile(r"^/ui/jobs/(?P<id>[^/]+)$")
_LIVE = re.compile(r"^/ui/jobs/(?P<id>[^/]+)/live\.json$")
_CANCEL = re.compile(r"^/ui/jobs/(?P<id>[^/]+)/cancel$")
_LINEAGE = re.compile(r"^/ui/lineages/(?P<lineage>[^/]+)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True)
class UiResponse:
    """Status, body bytes, content type and headers of one dashboard answer."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def handle_ui(
    api: JobsApi,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    form: Mapping[str, str],
) -> UiResponse:
    """Serve one ``/ui`` request; never raises for user input."""
    lowered = {key.lower(): value for key, value in headers.items()}
    base = _base_for(path)
    try:
        if path == "/ui":
            return _secure(UiResponse(308, b"", headers=(("Location", "ui/"),)))
        principal = api.auth.authenticate(lowered.get("authorization"))
        response = _route(api, method.upper(), path, params, lowered, form, principal)
    except AuthenticationError as exc:
        response = _html(
            401,
            pages.message_page(
                "Not signed in",
                f"{exc}. Open the dashboard with `sftpilot ui`: it adds your credentials.",
                base=base,
            ),
        )
    except ForbiddenError as exc:
        response = _html(403, pages.message_page("Not allowed", str(exc), base=base))
    except (InvalidParameterError, RecordNotFoundError) as exc:
        status = 404 if isinstance(exc, RecordNotFoundError) else 400
        response = _html(
            status, pages.message_page("Not found" if status == 404 else "Bad request", str(exc), base=base)
        )
    except JobNotCancellableError as exc:
        response = _html(409, pages.message_page("Cannot cancel", str(exc), base=base))
    except Exception as exc:
        log_event("ERROR", "dashboard request failed", path=path, error=repr(exc))
        response = _html(500, pages.message_page("Internal error", "internal error; try again", base=base))
    return _secure(response)


def _route(
    api: JobsApi,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    form: Mapping[str, str],
    principal: Principal,
) -> UiResponse:
    if path == "/ui/":
        return _only(method, "GET", lambda: _jobs(api, params))
    if path.startswith("/ui/static/"):
        asset = ASSETS.get(path.removeprefix("/ui/static/"))
        if asset is not None:
            content_type, text = asset
            return _only(method, "GET", lambda: UiResponse(200, text.encode(), content_type))
    if match := _JOB.match(path):
        job_id = match["id"]
        return _only(method, "GET", lambda: _job(api, job_id, headers, principal))
    if match := _LIVE.match(path):
        job_id = match["id"]
        return _only(method, "GET", lambda: _live(api, job_id))
    if match := _CANCEL.match(path):
        job_id = match["id"]
        return _only(method, "POST", lambda: _cancel(api, job_id, headers, form, principal))
    if match := _LINEAGE.match(path):
        lineage = match["lineage"]
        return _only(method, "GET", lambda: _lineage(api, lineage))
    return _html(404, pages.message_page("Not found", f"no page at {path}", base=_base_for(path)))


def _only(method: str, allowed: str, action: Callable[[], UiResponse]) -> UiResponse:
    if method != allowed:
        return UiResponse(405, f"expected {allowed}".encode(), "text/plain; charset=utf-8", (("Allow", allowed),))
    return action()


def _jobs(api: JobsApi, params: Mapping[str, str]) -> UiResponse:
    filters = {k: v.strip() for k, v in params.items() if k in {"lineage", "state", "page_token"} and v.strip()}
    now = api.clock()
    try:
        query = jobs_service.parse_list_filters({**filters, "limit": str(PAGE_SIZE)})
    except InvalidParameterError as exc:
        return _html(400, pages.jobs_page([], filters=filters, next_token=None, now=now, error=str(exc)))
    page = jobs_service.list_jobs(api.jobs, query)
    return _html(200, pages.jobs_page(page.records, filters=filters, next_token=page.next_page_token, now=now))


def _job(api: JobsApi, job_id: str, headers: Mapping[str, str], principal: Principal) -> UiResponse:
    record = jobs_service.get_job(api.jobs, job_id)
    token = csrf_cookie(headers.get("cookie", ""))
    cookie_headers: tuple[tuple[str, str], ...] = ()
    if token is None:
        token = secrets.token_urlsafe(32)
        cookie_headers = (("Set-Cookie", f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),)
    html = pages.job_page(
        record,
        csrf_token=token,
        can_cancel=principal.can_cancel,
        cancellable=record.status in jobs_service.CANCELLABLE,
        now=api.clock(),
    )
    return replace(_html(200, html), headers=cookie_headers)


def _live(api: JobsApi, job_id: str) -> UiResponse:
    record = jobs_service.get_job(api.jobs, job_id)
    return UiResponse(200, orjson.dumps(live_state(record)), "application/json")


def live_state(record: JobRecord) -> dict[str, object]:
    """The small JSON a job page polls (the page reloads its content when it changes)."""
    return {
        "id": record.id,
        "status": record.status.value,
        "updated_at": to_rfc3339(record.updated_at),
        "terminal": record.status.is_terminal,
    }


def _cancel(
    api: JobsApi, job_id: str, headers: Mapping[str, str], form: Mapping[str, str], principal: Principal
) -> UiResponse:
    check_csrf(headers, form)
    api._cancel(job_id, principal)  # same rules, permission and log line as POST /jobs/{id}:cancel
    return UiResponse(303, b"", headers=(("Location", f"../{job_id}"),))


def _lineage(api: JobsApi, lineage: str) -> UiResponse:
    jobs_service.parse_list_filters({"lineage": lineage})  # same validation as GET /jobs?lineage=
    records: list[JobRecord] = []
    token: str | None = None
    while len(records) < LINEAGE_MAX_RECORDS:
        page = jobs_service.list_jobs(
            api.jobs, JobQuery(lineage=lineage, limit=jobs_service.MAX_PAGE_SIZE, page_token=token)
        )
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            break
    return _html(200, pages.lineage_page(lineage, records, now=api.clock()))


def csrf_cookie(cookie_header: str) -> str | None:
    """The CSRF token from a ``Cookie`` header, or None when absent or malformed.

    >>> csrf_cookie("a=1; sftpilot_csrf=" + "x" * 43)
    'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
    """
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == CSRF_COOKIE and _TOKEN.match(value):
            return value
    return None


def check_csrf(headers: Mapping[str, str], form: Mapping[str, str]) -> None:
    """Raise ForbiddenError unless the form's token matches the cookie and the request is same-site."""
    if headers.get("sec-fetch-site", "") == "cross-site":
        raise ForbiddenError("a cross-site request", "cancel jobs from another site")
    cookie = csrf_cookie(headers.get("cookie", ""))
    sent = form.get(CSRF_FIELD, "")
    if cookie is None or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise ForbiddenError("this form", "cancel without a valid CSRF token (reload the job page and try again)")


def _html(status: int, html: str) -> UiResponse:
    return UiResponse(status, html.encode())


def _secure(response: UiResponse) -> UiResponse:
    return replace(response, headers=(*response.headers, *SECURITY_HEADERS))


def _base_for(path: str) -> str:
    """Relative way back to ``/ui/`` from ``path`` (pages only use relative links)."""
    depth = max(0, path.count("/") - 2) if path.startswith("/ui/") else 0
    return "../" * depth
