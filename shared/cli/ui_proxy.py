"""A small local proxy that lets a browser open the dashboard: it adds the caller's credentials.

A browser cannot send ``Authorization: Bearer``; the jobs API (local stack or Cloud Run) wants
it on every request. ``sftpilot ui`` runs this proxy on ``127.0.0.1``: it forwards ``/ui/...``
(nothing else) to the API and adds the token, which never reaches the browser or a page.

Where the token comes from (:func:`resolve_target`):

1. ``SFTPILOT_API_URL`` set: ``SFTPILOT_API_TOKEN`` if set, else a Google identity token for
   that URL - google-auth's ``id_token.fetch_id_token`` (service-account key or metadata server;
   https://googleapis.dev/python/google-auth/latest/reference/google.oauth2.id_token.html), else
   ``gcloud auth print-identity-token`` for a user login. Identity tokens live an hour: they are
   fetched again after 45 minutes.
2. Otherwise a running local stack (``sftpilot local up`` / ``demo``): its URL and static token.

Requests whose ``Host`` is not the proxy's own address are refused (DNS rebinding), and only
``GET``/``POST`` under ``/ui`` are forwarded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from shared.errors import SettingsError

TOKEN_LIFETIME_SECONDS = 45 * 60
_FORWARDED_REQUEST_HEADERS = ("cookie", "content-type", "accept", "sec-fetch-site", "user-agent")
_FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "set-cookie",
    "location",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "cache-control",
    "allow",
)


@dataclass(frozen=True)
class Target:
    """Where the API is and how to get a bearer token for it."""

    api_url: str
    token: Callable[[], str]
    source: str
    """Human description (``local stack``, ``SFTPILOT_API_TOKEN``, ``google-auth identity token``)."""


class CachedToken:
    """A token fetched on first use and again once ``lifetime`` seconds old."""

    def __init__(self, fetch: Callable[[], str], lifetime: float = TOKEN_LIFETIME_SECONDS) -> None:
        self._fetch = fetch
        self._lifetime = lifetime
        self._value = ""
        self._at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if not self._value or time.monotonic() - self._at > self._lifetime:
                self._value = self._fetch()
                self._at = time.monotonic()
            return self._value


def google_identity_token(audience: str) -> str:
    """An identity token for ``audience`` from google-auth, else from gcloud (user logins)."""
    try:
        import google.auth.transport.requests  # noqa: PLC0415
        from google.oauth2 import id_token  # noqa: PLC0415

        token = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)  # type: ignore[no-untyped-call]
        return str(token)
    except Exception:  # no service account or metadata server: a user login through gcloud
        from shared.api_client import gcloud_identity_token  # noqa: PLC0415

        return gcloud_identity_token()


def resolve_target(env: Mapping[str, str], state_dir: Path) -> Target:
    """The API and its credentials (see the module docstring); SettingsError when there is none."""
    url = env.get("SFTPILOT_API_URL", "").rstrip("/")
    if url:
        static = env.get("SFTPILOT_API_TOKEN", "")
        if static:
            return Target(url, lambda: static, "SFTPILOT_API_TOKEN")
        return Target(url, CachedToken(lambda: google_identity_token(url)), "google-auth identity token")
    from deploy.local.stack import running_stack_env  # noqa: PLC0415 - only for the local stack

    stack = running_stack_env(state_dir) or {}
    stack_url = stack.get("SFTPILOT_API_URL", "").rstrip("/")
    stack_token = stack.get("SFTPILOT_API_TOKEN", "")
    if stack_url and stack_token:
        return Target(stack_url, lambda: stack_token, f"local stack in {state_dir}")
    raise SettingsError(
        "SFTPILOT_API_URL",
        None,
        f"the jobs API URL (no local stack is running in {state_dir}; start one with `sftpilot local up`)",
    )


class DashboardProxy:
    """A threaded HTTP server on 127.0.0.1 forwarding ``/ui`` to :class:`Target` with its token."""

    def __init__(self, target: Target, port: int = 0, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._session = requests.Session()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What to open in a browser."""
        return f"http://127.0.0.1:{self.port}/ui/"

    def start(self) -> DashboardProxy:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard-proxy", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One forwarded request: status, response headers, body."""
        outgoing = {k: v for k, v in headers.items() if k.lower() in _FORWARDED_REQUEST_HEADERS}
        outgoing["Authorization"] = f"Bearer {self.target.token()}"
        response = self._session.request(
            method,
            self.target.api_url + path,
            headers=outgoing,
            data=body or None,
            timeout=self.timeout,
            allow_redirects=False,
        )
        kept = [(k, v) for k, v in response.headers.items() if k.lower() in _FORWARDED_RESPONSE_HEADERS]
        return response.status_code, kept, response.content


def _handler_for(proxy: DashboardProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sftpilot-ui"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the CLI prints the URL, not an access log

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            allowed_hosts = {f"127.0.0.1:{proxy.port}", f"localhost:{proxy.port}"}
            if self.headers.get("Host", "") not in allowed_hosts:
                self._reply(421, [("Content-Type", "text/plain")], b"wrong Host for this proxy\n")
                return
            if self.path in {"/", ""}:
                self._reply(302, [("Location", "/ui/")], b"")
                return
            if not (self.path == "/ui" or self.path.startswith(("/ui/", "/ui?"))):
                self._reply(404, [("Content-Type", "text/plain")], b"only /ui/ is served here\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)) if length else b""
            try:
                status, headers, content = proxy.forward(method, self.path, dict(self.headers.items()), body)
            except Exception as exc:
                message = f"the jobs API at {proxy.target.api_url} did not answer: {type(exc).__name__}\n"
                self._reply(502, [("Content-Type", "text/plain")], message.encode())
                return
            self._reply(status, headers, content)

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler
