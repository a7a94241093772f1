"""Poller benchmark: 1,000 active jobs against a fake tuning backend with 50 ms per call.

Measures one ``run_poll`` per scenario, with bounded concurrency and with a sequential
baseline (``concurrency=1``, the same code), and prints them side by side:

* ``steady``: every job RUNNING and its record already up to date (the common minute).
  Targets: one ``tunings.get`` per active job, zero Firestore writes, under 5 s.
* ``wave``: every job has just ended SUCCEEDED: one transition + one ``job.succeeded`` each.

Only the tuning API has latency here (the in-memory store and publisher answer at once), so
the numbers isolate what bounded concurrency buys on the ``tunings.get`` fan-out; Firestore
reads/writes are counted, not timed.

    python -m bench.poller_bench                       # 1,000 jobs, concurrency 16 and 64
    python -m bench.poller_bench --jobs 200 --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from shared import logs
from shared.adapters.fakes import FakeJobStore, FakePublisher, FakeTuningBackend
from shared.poller import PollOptions, run_poll
from shared.ports import TuningJobSpec
from shared.records import DatasetRef, new_record
from shared.states import JobStatus, TuningState
from shared.tuning_view import tuning_view

TARGET_SECONDS = 5.0


class _ProbedBackend(FakeTuningBackend):
    """The fake backend, also recording the peak number of concurrent ``get_job`` calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active = 0
        self.peak = 0
        self._probe = threading.Lock()

    def get_job(self, name: str):
        with self._probe:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().get_job(name)
        finally:
            with self._probe:
                self.active -= 1


def _world(n_jobs: int, latency: float):
    """``n_jobs`` RUNNING records whose stored view matches the backend (built without latency)."""
    jobs, tuning, publisher = FakeJobStore(), _ProbedBackend(quota=n_jobs + 1), FakePublisher()
    now = datetime.now(UTC)
    for i in range(n_jobs):
        ref = DatasetRef("bench-bkt", f"datasets/lineage{i % 20}/d{i:05d}.jsonl", 1_000_000 + i, f"lineage{i % 20}")
        rec = new_record(ref, now)
        job = tuning.create_job(
            TuningJobSpec("gemini-2.5-flash", ref.gcs_uri, f"d{i}", labels={"sftpilot-key": rec.id})
        )
        tuning.set_state(job.name, TuningState.RUNNING)
        rec = rec.transition(JobStatus.SUBMITTING, now).transition(JobStatus.PENDING, now, tuning_job=job.name)
        rec = rec.transition(JobStatus.RUNNING, now, tuning=tuning_view(tuning.jobs[job.name]))
        jobs.create(rec)
    tuning.latency_seconds = latency
    return jobs, tuning, publisher


def _measure(jobs: FakeJobStore, tuning: _ProbedBackend, publisher: FakePublisher, concurrency: int) -> dict[str, Any]:
    before = (jobs.queries, jobs.reads, jobs.writes, jobs.mutation_calls, len(publisher.published))
    tuning.calls.clear()
    tuning.peak = 0
    started = time.perf_counter()
    summary = run_poll(
        jobs=jobs,
        tuning=tuning,
        publisher=publisher,
        clock=lambda: datetime.now(UTC),
        options=PollOptions(concurrency=concurrency),
        owner=f"bench-{concurrency}",
    )
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(summary.checked / wall, 1) if wall else None,
        "tuning_get_calls": tuning.calls["get_job"],
        "tuning_other_calls": sum(v for k, v in tuning.calls.items() if k != "get_job"),
        "peak_concurrent_gets": tuning.peak,
        "firestore_queries": jobs.queries - before[0],  # page requests: outbox query + active query pages
        "firestore_reads": jobs.reads - before[1],
        "firestore_writes": jobs.writes - before[2],
        "transactions": jobs.mutation_calls - before[3],
        "events_published": len(publisher.published) - before[4],
        "summary": {k: v for k, v in summary.to_dict().items() if k != "errors"} | {"errors": len(summary.errors)},
    }


def _scenario(name: str, n_jobs: int, latency: float, concurrency: int) -> dict[str, Any]:
    jobs, tuning, publisher = _world(n_jobs, latency)
    if name == "wave":
        tuning.complete_all(TuningState.SUCCEEDED)
    result = _measure(jobs, tuning, publisher, concurrency)
    return {"scenario": name, "jobs": n_jobs, **result}


def run(
    jobs: int = 1000,
    latency: float = 0.05,
    concurrency: tuple[int, ...] = (16, 64),
    baseline: bool = True,
    scenarios: tuple[str, ...] = ("steady", "wave"),
) -> dict[str, Any]:
    """Run every scenario at each concurrency (and sequentially); returns rows and target checks."""
    rows: list[dict[str, Any]] = []
    levels = ((1,) if baseline else ()) + tuple(concurrency)
    logs.configure("WARNING")  # one "event published" line per job would drown the table
    try:
        for name in scenarios:
            for level in levels:
                rows.append(_scenario(name, jobs, latency, level))
    finally:
        logs.configure("INFO")
    steady = [r for r in rows if r["scenario"] == "steady" and r["concurrency"] != 1]
    wave = [r for r in rows if r["scenario"] == "wave" and r["concurrency"] != 1]
    targets = {
        "one_get_per_active_job": all(r["tuning_get_calls"] == jobs for r in rows),
        "zero_writes_when_nothing_changed": all(r["firestore_writes"] == 0 for r in steady),
        "one_event_per_terminal_job": all(r["events_published"] == jobs for r in wave),
        f"under_{TARGET_SECONDS:g}s_with_bounded_concurrency": bool(steady)
        and all(r["wall_s"] < TARGET_SECONDS for r in steady),
        "concurrency_bounded": all(r["peak_concurrent_gets"] <= r["concurrency"] for r in rows),
    }
    return {
        "bench": "poller",
        "jobs": jobs,
        "tuning_latency_ms": round(latency * 1000),
        "rows": rows,
        "targets": targets,
    }


def _table(result: dict[str, Any]) -> str:
    cols = [
        ("scenario", "scenario"),
        ("conc", "concurrency"),
        ("wall s", "wall_s"),
        ("jobs/s", "jobs_per_s"),
        ("gets", "tuning_get_calls"),
        ("peak", "peak_concurrent_gets"),
        ("fs pages", "firestore_queries"),
        ("fs reads", "firestore_reads"),
        ("fs writes", "firestore_writes"),
        ("txns", "transactions"),
        ("events", "events_published"),
    ]
    lines = [
        f"poller bench: {result['jobs']} active jobs, tuning.get latency {result['tuning_latency_ms']} ms "
        "(conc 1 = sequential baseline)",
        " | ".join(f"{h:>10}" for h, _ in cols),
    ]
    for row in result["rows"]:
        lines.append(" | ".join(f"{row[k]!s:>10}" for _, k in cols))
    lines.append("targets: " + ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in result["targets"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--no-baseline", action="store_true", help="skip the sequential run (~jobs x latency)")
    parser.add_argument("--scenario", choices=["steady", "wave"], nargs="+", default=["steady", "wave"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        jobs=args.jobs,
        latency=args.latency_ms / 1000,
        concurrency=tuple(args.concurrency),
        baseline=not args.no_baseline,
        scenarios=tuple(args.scenario),
    )
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
