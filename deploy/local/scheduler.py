"""The local stand-in for Cloud Scheduler: POST the poll function every N seconds.

Requests carry the headers Cloud Scheduler sends (``User-Agent: Google-Cloud-Scheduler``,
``X-CloudScheduler: true``, ``X-CloudScheduler-JobName``, ``X-CloudScheduler-ScheduleTime``).
Non-2xx answers and connection errors are logged; the next tick simply tries again, as Cloud
Scheduler does once its own retries are used up.

Run it as ``python -m deploy.local.scheduler --url URL --interval 10``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from types import FrameType

import requests

from shared.logs import log_event

JOB_NAME = "projects/local/locations/local/jobs/sftpilot-poll"


def tick(session: requests.Session, url: str, timeout: float) -> int | None:
    """One scheduled POST; returns the HTTP status, or None on a transport error."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": JOB_NAME,
        "X-CloudScheduler-ScheduleTime": now,
        "Content-Type": "application/json",
    }
    try:
        response = session.post(url, data=b"{}", headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        log_event("WARNING", "scheduler: poll request failed", url=url, error=str(exc))
        return None
    if 200 <= response.status_code < 300:
        log_event("INFO", "scheduler: poll ok", status=response.status_code, body=response.text[:200])
    else:
        log_event("WARNING", "scheduler: poll answered non-2xx", status=response.status_code, body=response.text[:500])
    return response.status_code


def run(url: str, interval: float, stop: threading.Event, timeout: float = 540.0, first_delay: float = 1.0) -> None:
    """Tick until ``stop`` is set: first after ``first_delay`` s, then every ``interval`` s."""
    session = requests.Session()
    session.trust_env = False
    if stop.wait(first_delay):
        return
    while True:
        tick(session, url, timeout)
        if stop.wait(interval):
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deploy.local.scheduler``."""
    parser = argparse.ArgumentParser(description="POST a URL periodically (local Cloud Scheduler)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between POSTs")
    parser.add_argument("--first-delay", type=float, default=1.0)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log_event("INFO", "scheduler: started", url=args.url, interval=args.interval)
    run(args.url, args.interval, stop, first_delay=args.first_delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
