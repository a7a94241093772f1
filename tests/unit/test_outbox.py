from __future__ import annotations

import pytest

from shared.adapters.fakes import FakeJobStore, FakePublisher
from shared.errors import PublishError
from shared.events import EventType
from shared.outbox import publish_pending, stage_event
from shared.records import DatasetRef, new_record, utcnow
from shared.states import JobStatus


def _rejected_record(jobs: FakeJobStore):
    rec = new_record(DatasetRef("bkt", "datasets/faq/a.jsonl", 7, "faq"), utcnow())
    rec = rec.transition(JobStatus.REJECTED, utcnow())
    rec = stage_event(rec, EventType.DATASET_REJECTED, {"reason": "bad"})
    assert jobs.create(rec)
    return rec


def test_pending_entry_is_published_once_and_marked():
    jobs, pub = FakeJobStore(), FakePublisher()
    rec = _rejected_record(jobs)
    assert publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="a") == 1
    assert publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="b") == 0
    assert [e.event_id for e in pub.published] == [f"{rec.id}:REJECTED"]
    assert pub.published[0].attributes["type"] == "dataset.rejected"
    stored = jobs.get(rec.id)
    assert stored is not None and not stored.has_pending_outbox


def test_failed_publish_keeps_entry_pending_and_releases_claim():
    jobs, pub = FakeJobStore(), FakePublisher()
    rec = _rejected_record(jobs)
    pub.failures.fail_next("publish", PublishError("t", "x", "unavailable"))
    with pytest.raises(PublishError):
        publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="a")
    stored = jobs.get(rec.id)
    assert stored is not None and stored.has_pending_outbox
    assert publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="b") == 1
    assert len(pub.published) == 1


def test_lost_mark_after_publish_is_repaired_without_republishing():
    jobs, pub = FakeJobStore(), FakePublisher()
    rec = _rejected_record(jobs)
    jobs.failures.fail_next("update", RuntimeError("crash after publish"))
    with pytest.raises(RuntimeError):
        publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="a")
    assert publish_pending(rec.id, jobs=jobs, publisher=pub, clock=utcnow, owner="b") == 0
    assert len(pub.published) == 1
    stored = jobs.get(rec.id)
    assert stored is not None and not stored.has_pending_outbox


def test_staging_same_event_twice_keeps_one_entry():
    rec = new_record(DatasetRef("bkt", "datasets/faq/a.jsonl", 7, "faq"), utcnow())
    rec = rec.transition(JobStatus.REJECTED, utcnow())
    once = stage_event(rec, EventType.DATASET_REJECTED, {})
    twice = stage_event(once, EventType.DATASET_REJECTED, {})
    assert len(twice.outbox) == 1
