"""A restarted local stack resumes: objects, records, topics, and a job that was running (issue 19).

Stops a persistent stack (graceful stop, as Ctrl-C does) while its tuning job trains the tiny
model, starts a new one on the same state directory and checks that the job finishes there;
``wipe_state`` then starts clean.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.stack import DEFAULT_MODEL_MAP, LocalStack, StackComponents, latest_firestore_export, wipe_state
from shared.ports import JobQuery
from shared.records import JobRecord
from shared.settings import Settings
from shared.states import JobStatus
from shared.wiring import Services

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[3]
BOT = ROOT / "examples" / "datasets" / "support-bot"
LENIENT = ROOT / "tests" / "e2e" / "lenient_tuning.yaml"


@pytest.fixture
def saved_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _stack(state_dir: Path, components: StackComponents = StackComponents.FULL) -> LocalStack:
    return LocalStack(
        state_dir,
        project="restart-test",
        components=components,
        model_map=dict.fromkeys(DEFAULT_MODEL_MAP, "tiny-llama"),
        poll_interval=1.0,
        persist=True,
    )


def _records(stack: LocalStack) -> list[JobRecord]:
    os.environ.update(stack.env())
    services = Services(settings=Settings.from_env(stack.function_environment()))
    return list(services.jobs.query(JobQuery(limit=50)).records)


def _wait_for(stack: LocalStack, predicate, timeout: float, what: str) -> JobRecord:
    deadline = time.monotonic() + timeout
    records: list[JobRecord] = []
    while time.monotonic() < deadline:
        records = _records(stack)
        found = [r for r in records if predicate(r)]
        if found:
            return found[0]
        time.sleep(1.0)
    raise AssertionError(f"{what}: not seen in {timeout:.0f}s; records: {[(r.id, r.status) for r in records]}")


def test_a_restarted_stack_resumes_a_running_job_and_wipe_starts_clean(tmp_path, saved_environ):
    from google.cloud import storage

    state_dir = tmp_path / "stack"
    first = _stack(state_dir).start()
    try:
        os.environ.update(first.env())
        bucket = storage.Client(project=first.project).bucket(first.bucket)
        bucket.blob("datasets/support-bot/tuning.yaml").upload_from_filename(str(LENIENT))
        bucket.blob("datasets/support-bot/v1.jsonl").upload_from_filename(str(BOT / "v1.jsonl"))
        running = _wait_for(first, lambda r: r.status is JobStatus.RUNNING, 300, "a RUNNING job")
    finally:
        first.stop()  # graceful: Firestore is exported after the functions stopped

    assert latest_firestore_export(state_dir) is not None
    second = _stack(state_dir).start()
    try:
        os.environ.update(second.env())
        bucket = storage.Client(project=second.project).bucket(second.bucket)
        assert bucket.blob("datasets/support-bot/v1.jsonl").exists()  # objects were kept on disk
        resumed = _wait_for(second, lambda r: r.id == running.id, 30, "the record of the running job")
        assert resumed.tuning_job == running.tuning_job
        done = _wait_for(second, lambda r: r.id == running.id and r.status.is_terminal, 600, "the resumed job's end")
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert [h.status for h in done.history].count(JobStatus.RUNNING) == 1  # resumed, not resubmitted
    finally:
        second.stop()

    removed = wipe_state(state_dir)
    assert str(state_dir / "data") in removed
    clean = _stack(state_dir, StackComponents.EMULATORS).start()
    try:
        assert _records(clean) == []
        os.environ.update(clean.env())
        assert (
            not storage.Client(project=clean.project)
            .bucket(clean.bucket)
            .blob("datasets/support-bot/v1.jsonl")
            .exists()
        )
    finally:
        clean.stop()


def test_a_hard_kill_keeps_objects_and_the_last_snapshot_and_loses_later_record_writes(tmp_path, saved_environ):
    import signal

    from google.cloud import firestore, storage

    state_dir = tmp_path / "stack"
    first = _stack(state_dir, StackComponents.EMULATORS).start()
    os.environ.update(first.env())
    db = firestore.Client(project=first.project)
    db.collection("notes").document("before").set({"n": 1})
    assert first.snapshot() is not None
    db.collection("notes").document("after").set({"n": 2})
    storage.Client(project=first.project).bucket(first.bucket).blob("datasets/faq/kept.jsonl").upload_from_string(
        b"{}\n"
    )
    for proc in first._processes.values():  # what SIGKILL / power loss does: no graceful stop
        os.killpg(proc.pid, signal.SIGKILL)
    first.stop()  # reaps the dead processes; nothing is left to export

    second = _stack(state_dir, StackComponents.EMULATORS).start()
    try:
        os.environ.update(second.env())
        db = firestore.Client(project=second.project)
        assert db.collection("notes").document("before").get().exists
        assert not db.collection("notes").document("after").get().exists  # written after the snapshot
        bucket = storage.Client(project=second.project).bucket(second.bucket)
        assert bucket.blob("datasets/faq/kept.jsonl").exists()  # objects are on disk at once
    finally:
        second.stop()
