"""HTTP glue: a threading stdlib server in front of :class:`~.app.TuningApp`.

>>> server = TuningServer(ServerConfig(state_dir=Path("/tmp/state"), port=0))  # doctest: +SKIP
>>> server.start_background(); server.url  # doctest: +SKIP
'http://127.0.0.1:40123'
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deploy.local.tuning_server.app import TuningApp
from deploy.local.tuning_server.config import ServerConfig

log = logging.getLogger("sftpilot.tuning_server")


class _Handler(BaseHTTPRequestHandler):
    server_version = "sftpilot-local-vertex/1.0"
    protocol_version = "HTTP/1.1"
    app: TuningApp  # set on the subclass made per server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = self.app.handle(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve
    do_PATCH = _serve
    do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class TuningServer:
    """The local Vertex-compatible tuning server: HTTP front end plus the job runner."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.app = TuningApp(config)
        handler = type("BoundHandler", (_Handler,), {"app": self.app})
        self.httpd = ThreadingHTTPServer((config.host, config.port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for google-genai's ``HttpOptions(base_url=...)``."""
        return f"http://{self.config.host}:{self.port}"

    def serve_forever(self) -> None:
        """Start the runner and serve until :meth:`shutdown` (blocking)."""
        self.app.start()
        log.info("local tuning server listening on %s (state in %s)", self.url, self.config.state_dir)
        self.httpd.serve_forever(poll_interval=0.2)

    def start_background(self) -> None:
        """Serve from a daemon thread (in-process tests)."""
        self._thread = threading.Thread(target=self.serve_forever, name="tuning-server", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving and stop the workers (jobs stay RUNNING on disk, see the restart policy)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.app.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
