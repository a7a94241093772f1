"""Wire-level helpers: Google-shaped errors, key normalisation, timestamps, int64 strings.

Vertex speaks proto3 JSON: it accepts both ``camelCase`` and ``snake_case`` field names on
input (google-genai sends some nested objects such as ``thinkingConfig`` and ``encryptionSpec``
snake_case) and answers camelCase, with int64 values as strings. These helpers make the server
do the same.

>>> normalize_keys({"thinking_config": {"thinking_budget": 0}, "labels": {"my_key": "v"}})
{'thinkingConfig': {'thinkingBudget': 0}, 'labels': {'my_key': 'v'}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

JSON = dict[str, Any]

# Canonical google.rpc.Code names per HTTP status, as Google APIs pair them.
_CANONICAL_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# google.rpc.Code numbers, used inside a job's ``error`` (which carries rpc codes, not HTTP codes).
RPC_CANCELLED = 1
RPC_INVALID_ARGUMENT = 3
RPC_FAILED_PRECONDITION = 9
RPC_INTERNAL = 13

# Values under these keys are user data (label maps, function arguments): never renamed.
_OPAQUE_KEYS = frozenset({"labels", "args", "response", "extraBody", "metadata"})


class ApiError(Exception):
    """An error answered to the client in the Google envelope.

    >>> ApiError(404, "TuningJob 7 not found").body()
    {'error': {'code': 404, 'message': 'TuningJob 7 not found', 'status': 'NOT_FOUND'}}
    """

    def __init__(self, http_status: int, message: str, status: str | None = None) -> None:
        self.http_status = http_status
        self.message = message
        self.status = status or _CANONICAL_STATUS.get(http_status, HTTPStatus(http_status).name)
        super().__init__(f"{http_status} {self.status}: {message}")

    def body(self) -> JSON:
        """``{"error": {"code", "message", "status"}}``."""
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> ApiError:
    """400 INVALID_ARGUMENT."""
    return ApiError(400, message, "INVALID_ARGUMENT")


def failed_precondition(message: str) -> ApiError:
    """400 FAILED_PRECONDITION (what Vertex answers for e.g. deleting a deployed model)."""
    return ApiError(400, message, "FAILED_PRECONDITION")


def not_found(message: str) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, message, "NOT_FOUND")


def snake_to_camel(key: str) -> str:
    """``thinking_budget`` -> ``thinkingBudget``; camelCase keys are returned unchanged."""
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalize_keys(value: Any) -> Any:
    """Recursively rename snake_case keys to camelCase, leaving user-data maps untouched."""
    if isinstance(value, list):
        return [normalize_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: JSON = {}
    for key, item in value.items():
        camel = snake_to_camel(key) if isinstance(key, str) else key
        out[camel] = item if camel in _OPAQUE_KEYS else normalize_keys(item)
    return out


def now_rfc3339() -> str:
    """Current UTC time as ``2026-01-02T03:04:05.123456Z``."""
    return to_rfc3339(datetime.now(UTC))


def to_rfc3339(moment: datetime) -> str:
    """A timezone-aware datetime as RFC 3339 with microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def int64(value: int | None) -> str | None:
    """proto3 JSON spells int64 as a string."""
    return None if value is None else str(int(value))


def drop_none(data: JSON) -> JSON:
    """The mapping without keys whose value is None (proto3 JSON omits unset fields)."""
    return {key: value for key, value in data.items() if value is not None}
