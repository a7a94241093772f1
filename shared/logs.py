"""Structured JSON logs in the shape Cloud Logging understands (one JSON object per line).

``severity`` and ``message`` are the fields Cloud Logging indexes; ``logging.googleapis.com/trace``
links a line to its request trace. Extra keyword fields (job key, lineage, ...) are kept as-is.

Example:
    >>> log_event("INFO", "record claimed", job_id="abc", lineage="faq")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_stream: TextIO | None = None
_min_level = 20
_LEVELS = {"DEBUG": 10, "INFO": 20, "NOTICE": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Set the minimum severity and (for tests) the output stream."""
    global _stream, _min_level  # noqa: PLW0603 - module-level logger configuration
    _min_level = _LEVELS.get(level.upper(), 20)
    _stream = stream


def set_level(level: str) -> None:
    """Set the minimum severity only (start-up applies ``SFTPILOT_LOG_LEVEL``; the stream is kept)."""
    global _min_level  # noqa: PLW0603 - module-level logger configuration
    _min_level = _LEVELS.get(level.upper(), 20)


def current_level() -> str:
    """Name of the minimum severity in force (tests restore it)."""
    return next(name for name, value in _LEVELS.items() if value == _min_level)


def log_event(severity: str, message: str, *, trace: str | None = None, **fields: Any) -> None:
    """Write one structured log line to stderr (Cloud Functions ships stderr to Cloud Logging)."""
    if _LEVELS.get(severity, 20) < _min_level:
        return
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "component": "sftpilot",
    }
    if trace:
        entry["logging.googleapis.com/trace"] = trace
    entry.update({k: v for k, v in fields.items() if v is not None})
    out = _stream or sys.stderr
    out.write(json.dumps(entry, default=str, sort_keys=False) + "\n")
    out.flush()
