"""Test controls: scripted faults and a request log.

``POST /__script`` adds a rule; the next matching API requests get its canned answer::

    {"match": "tuningJobs",      # substring of the path (or a regex with "regex": true)
     "method": "POST",           # optional; any method when absent
     "status": 429,              # optional; absent = only delay, then answer normally
     "body": {...} | "raw": "text",   # default: the Google error envelope for the status
     "times": 2,                 # how many requests it applies to; -1 = forever (default 1)
     "delay": 0.5}               # seconds to wait before answering (default 0)

``GET /__requests`` returns the log of API requests (method, path, query, body), newest last;
``POST /__reset`` clears rules, log and (unless ``{"state": false}``) every resource.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from deploy.local.tuning_server.wire import JSON, ApiError, invalid_argument


@dataclass
class FaultRule:
    """One scripted answer."""

    rule_id: int
    match: str
    regex: bool
    method: str | None
    status: int | None
    body: Any
    raw: str | None
    times: int
    delay: float
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        """True when this rule still has uses left and matches the request."""
        if self.times == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return re.search(self.match, path) is not None if self.regex else self.match in path

    def describe(self) -> JSON:
        """JSON view for the control endpoints."""
        return {
            "id": self.rule_id,
            "match": self.match,
            "regex": self.regex,
            "method": self.method,
            "status": self.status,
            "times": self.times,
            "delay": self.delay,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class ScriptedAnswer:
    """What a matching rule makes the server do."""

    delay: float
    status: int | None
    body: bytes
    content_type: str


class FaultInjector:
    """Rules and the request log, shared by every request thread."""

    def __init__(self, log_size: int = 2000) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._log: deque[JSON] = deque(maxlen=log_size)

    def add(self, spec: JSON) -> FaultRule:
        """Add a rule from its JSON spec (validated)."""
        match = spec.get("match")
        if not isinstance(match, str) or not match:
            raise invalid_argument("__script: 'match' (a path substring or regex) is required.")
        status = spec.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise invalid_argument("__script: 'status' must be an HTTP status code.")
        times = spec.get("times", 1)
        delay = spec.get("delay", 0)
        if not isinstance(times, int) or times < -1:
            raise invalid_argument("__script: 'times' must be an integer >= -1.")
        if not isinstance(delay, int | float) or delay < 0:
            raise invalid_argument("__script: 'delay' must be a number >= 0.")
        method = spec.get("method")
        raw = spec.get("raw")
        if regex := bool(spec.get("regex", False)):
            try:
                re.compile(match)
            except re.error as error:
                raise invalid_argument(f"__script: invalid regex: {error}") from error
        with self._lock:
            rule = FaultRule(
                rule_id=self._next_id,
                match=match,
                regex=regex,
                method=method.upper() if isinstance(method, str) else None,
                status=status,
                body=spec.get("body"),
                raw=raw if isinstance(raw, str) else None,
                times=times,
                delay=float(delay),
            )
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def rules(self) -> list[JSON]:
        """Every rule with its hit count."""
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def take(self, method: str, path: str) -> ScriptedAnswer | None:
        """Consume one use of the first matching rule, if any."""
        with self._lock:
            for rule in self._rules:
                if not rule.applies(method, path):
                    continue
                rule.hits += 1
                if rule.times > 0:
                    rule.times -= 1
                if rule.raw is not None:
                    body, content_type = rule.raw.encode(), "text/plain; charset=utf-8"
                elif rule.body is not None:
                    body, content_type = json.dumps(rule.body).encode(), "application/json"
                elif rule.status is not None and rule.status != 200:
                    error = ApiError(rule.status, f"Scripted failure (rule {rule.rule_id}).")
                    body, content_type = json.dumps(error.body()).encode(), "application/json"
                else:
                    body, content_type = b"{}", "application/json"
                return ScriptedAnswer(delay=rule.delay, status=rule.status, body=body, content_type=content_type)
        return None

    def record(self, method: str, path: str, query: str, body: Any) -> None:
        """Append one API request to the log."""
        with self._lock:
            self._log.append({"method": method, "path": path, "query": query, "body": body})

    def requests(self) -> list[JSON]:
        """The request log, oldest first."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Forget every rule and the log."""
        with self._lock:
            self._rules.clear()
            self._log.clear()
