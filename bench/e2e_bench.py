"""Local end-to-end latencies on the real local stack (emulators, tuning server, functions, wiring).

Measures, for several uploads in a row (tiny test model, one epoch, smoke test off):

* upload -> record claimed, upload -> tuning job created (target: under 2 s);
* tuning job ended (its ``endTime``) -> completion event received by a subscriber
  (target: within one poll interval, plus the emulator's push latency).

Usage: ``python -m bench.e2e_bench [--uploads 3] [--poll-interval 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.local.stack import DEFAULT_MODEL_MAP, LocalStack, StackComponents
from shared.records import from_rfc3339
from shared.settings import Settings
from shared.states import JobStatus
from shared.wiring import Services

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "examples" / "datasets" / "support-bot" / "v1.jsonl"
TUNING_YAML = b"epochs: 1\nadapter_size: 1\nexport_last_checkpoint_only: true\nsmoke_test:\n  enabled: false\n"
TARGET_JOB_CREATED_S = 2.0


def run(uploads: int = 3, poll_interval: float = 5.0, timeout: float = 600.0) -> dict[str, Any]:
    """Start the stack, upload ``uploads`` generations one after another, return the latencies."""
    from google.cloud import pubsub_v1, storage

    state_dir = Path(tempfile.mkdtemp(prefix="sftpilot-e2e-bench-"))
    stack = LocalStack(
        state_dir,
        components=StackComponents.FULL,
        poll_interval=poll_interval,
        model_map=dict.fromkeys(DEFAULT_MODEL_MAP, "tiny-llama"),
    )
    rows: list[dict[str, Any]] = []
    with stack:
        os.environ.update(stack.env())
        services = Services(settings=Settings.from_env(stack.function_environment()))
        subscriber = pubsub_v1.SubscriberClient()
        sub = stack.subscription_path("bench-e2e")
        subscriber.create_subscription(request={"name": sub, "topic": stack.events_topic_path})
        received: queue.Queue[tuple[float, dict[str, str]]] = queue.Queue()

        def on_message(message: Any) -> None:
            received.put((time.time(), dict(message.attributes)))
            message.ack()

        stream = subscriber.subscribe(sub, on_message)
        bucket = storage.Client(project=stack.project).bucket(stack.bucket)
        bucket.blob("datasets/bench/tuning.yaml").upload_from_string(TUNING_YAML)
        data = DATASET.read_bytes()
        try:
            for index in range(uploads):
                blob = bucket.blob(f"datasets/bench/run{index}.jsonl")
                blob.upload_from_string(data)
                uploaded_at = time.time()
                rows.append(_follow(services, received, blob.name, int(blob.generation), uploaded_at, timeout))
        finally:
            stream.cancel()
            subscriber.close()
    created = [r["upload_to_job_created_s"] for r in rows]
    completion = [r["end_to_event_s"] for r in rows]
    return {
        "bench": "e2e",
        "poll_interval_s": poll_interval,
        "rows": rows,
        "median_upload_to_job_created_s": round(statistics.median(created), 2),
        "median_end_to_event_s": round(statistics.median(completion), 2),
        "targets": {
            f"job_created_under_{TARGET_JOB_CREATED_S:g}s": statistics.median(created) < TARGET_JOB_CREATED_S,
            "completion_event_within_one_poll_interval": max(completion) <= poll_interval + 1.0,
        },
    }


def _follow(
    services: Services,
    received: queue.Queue[tuple[float, dict[str, str]]],
    name: str,
    generation: int,
    uploaded_at: float,
    timeout: float,
) -> dict[str, Any]:
    from shared.records import record_key

    job_id = record_key(services.settings.bucket, name, generation)
    claimed = job_created = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = services.jobs.get(job_id)
        now = time.time()
        if record is not None and claimed is None:
            claimed = record.created_at.timestamp()
        if record is not None and record.tuning_job and job_created is None:
            job_created = now
        if record is not None and record.status is JobStatus.SUCCEEDED:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"{name} did not succeed within {timeout}s")
    assert claimed is not None and job_created is not None
    end_time = from_rfc3339(record.tuning.end_time if record.tuning else None)
    assert end_time is not None
    while True:
        at, attributes = received.get(timeout=timeout)
        if attributes.get("job_id") == job_id and attributes.get("type") == "job.succeeded":
            break
    return {
        "object": name,
        "upload_to_claimed_s": round(claimed - uploaded_at, 2),
        "upload_to_job_created_s": round(job_created - uploaded_at, 2),
        "end_to_event_s": round(at - end_time.timestamp(), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(uploads=args.uploads, poll_interval=args.poll_interval)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for row in result["rows"]:
            print(row)
        print({k: v for k, v in result.items() if k != "rows"})
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
