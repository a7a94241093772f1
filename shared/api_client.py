"""A small client for the jobs API, used by the CLI (and by anyone's scripts).

Example:
    >>> client = JobsClient("http://127.0.0.1:1", token="t", timeout=0.2)
    >>> try:
    ...     client.list_jobs()
    ... except ApiUnavailableError as exc:
    ...     print(exc.code)
    E_API_UNAVAILABLE
"""

from __future__ import annotations

import subprocess
from typing import Any

import requests

from shared.errors import SftpilotError


class ApiUnavailableError(SftpilotError):
    """The jobs API could not be reached."""

    code = "E_API_UNAVAILABLE"

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the jobs API at {url}: {reason}")


class ApiError(SftpilotError):
    """The jobs API answered with an error body (``{"error": {...}}``)."""

    code = "E_API"

    def __init__(self, status: int, error_code: str, message: str) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        super().__init__(f"{status} {error_code}: {message}")


def gcloud_identity_token() -> str:
    """An identity token from the gcloud CLI (for a jobs API deployed in GCP)."""
    try:
        done = subprocess.run(
            ["gcloud", "auth", "print-identity-token"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ApiUnavailableError(
            "gcloud", f"no SFTPILOT_API_TOKEN and gcloud gave no identity token ({exc})"
        ) from None
    return done.stdout.strip()


class JobsClient:
    """``GET /jobs``, ``GET /jobs/{id}``, ``POST /jobs/{id}:cancel``."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = self._session.request(method, url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApiUnavailableError(self.base_url, type(exc).__name__) from None
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise ApiUnavailableError(self.base_url, f"HTTP {response.status_code} without a JSON body") from None
        if response.status_code != 200:
            error = body.get("error", {})
            raise ApiError(response.status_code, str(error.get("code", "?")), str(error.get("message", response.text)))
        return body

    def list_jobs(self, **filters: str) -> dict[str, Any]:
        """One page: ``{"jobs": [...], "next_page_token": ...}``."""
        return self._call("GET", "/jobs", {k: v for k, v in filters.items() if v})

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The full record."""
        return self._call("GET", f"/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Request cancellation."""
        return self._call("POST", f"/jobs/{job_id}:cancel")
