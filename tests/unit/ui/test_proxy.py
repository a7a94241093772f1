"""The credential-adding proxy of ``sftpilot ui``: token added, only /ui forwarded, Host checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from shared.cli.ui_proxy import CachedToken, DashboardProxy, Target, resolve_target
from shared.errors import SettingsError


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict]]]:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)})
            self.send_response(303 if self.command == "POST" else 200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Set-Cookie", "sftpilot_csrf=abc; HttpOnly")
            self.send_header("Location", "../x")
            self.send_header("X-Internal", "dropped")
            self.end_headers()
            self.wfile.write(b"<p>ok</p>")

        do_GET = _answer
        do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream) -> Iterator[DashboardProxy]:
    url, _ = upstream
    running = DashboardProxy(Target(url, lambda: "secret-token", "test")).start()
    yield running
    running.close()


def test_forwards_ui_requests_with_the_token_and_keeps_it_from_the_browser(proxy, upstream):
    _, seen = upstream
    response = requests.get(proxy.url + "jobs/1?x=1", headers={"Authorization": "Bearer forged", "Cookie": "a=b"})
    assert response.status_code == 200 and response.text == "<p>ok</p>"
    assert seen[0]["path"] == "/ui/jobs/1?x=1"
    assert seen[0]["headers"]["Authorization"] == "Bearer secret-token"
    assert seen[0]["headers"]["Cookie"] == "a=b"
    assert "secret-token" not in response.text and "secret-token" not in str(response.headers)
    assert response.headers["Set-Cookie"].startswith("sftpilot_csrf=") and "X-Internal" not in response.headers


def test_posts_keep_their_form_and_redirects_are_not_followed(proxy, upstream):
    _, seen = upstream
    response = requests.post(proxy.url + "jobs/1/cancel", data={"csrf_token": "t"}, allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"] == "../x"
    assert seen[0]["body"] == b"csrf_token=t"


def test_only_ui_paths_and_the_proxys_own_host(proxy, upstream):
    _, seen = upstream
    assert requests.get(f"http://127.0.0.1:{proxy.port}/jobs").status_code == 404
    root = requests.get(f"http://127.0.0.1:{proxy.port}/", allow_redirects=False)
    assert root.status_code == 302 and root.headers["Location"] == "/ui/"
    rebound = requests.get(proxy.url, headers={"Host": f"evil.example:{proxy.port}"})
    assert rebound.status_code == 421
    assert seen == []


def test_an_unreachable_api_is_a_502_with_a_reason():
    dead = DashboardProxy(Target("http://127.0.0.1:1", lambda: "t", "test"), timeout=2).start()
    try:
        response = requests.get(dead.url)
        assert response.status_code == 502 and "did not answer" in response.text
    finally:
        dead.close()


def test_target_resolution(tmp_path: Path):
    explicit = resolve_target({"SFTPILOT_API_URL": "https://api.example/", "SFTPILOT_API_TOKEN": "t"}, tmp_path)
    assert explicit.api_url == "https://api.example" and explicit.token() == "t"
    with pytest.raises(SettingsError, match="no local stack is running"):
        resolve_target({}, tmp_path)


def test_cached_tokens_are_fetched_again_when_old():
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    expiring = CachedToken(fetch, lifetime=-1)
    assert expiring() == "token-1" and expiring() == "token-2"
    lasting = CachedToken(fetch, lifetime=3600)
    assert lasting() == "token-3" and lasting() == "token-3"
