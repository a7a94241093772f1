"""JobStore contract: FakeJobStore and FirestoreJobStore (Firestore emulator) behave the same."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from helpers import T0

import shared.adapters.firestore as firestore_adapter
from shared.errors import InvalidTransitionError, RecordNotFoundError
from shared.ports import EffectState, JobQuery, QueryOrder
from shared.records import DatasetRef, HistoryEntry, Lease, OutboxEntry, new_record
from shared.states import JobStatus


def _record(name="datasets/faq/v1.jsonl", generation=1, lineage="faq", at=T0, bucket="b"):
    return new_record(DatasetRef(bucket, name, generation, lineage, size=10), at, event_id=f"ev-{generation}")


def _ids(page):
    return [r.id for r in page.records]


# --- create / get ------------------------------------------------------------------------------


def test_create_claims_once_and_get_round_trips_every_field(job_store):
    record = _record()
    rich = replace(
        record,
        lease=Lease(owner="fn-1", expires_at=T0 + timedelta(minutes=10)),
        validation={"verdict": "valid", "counts": {"ok": 16}, "matrix": [[1, 2], [3, [4, 5]]], "none": None},
        config={"base_model": "gemini-2.5-flash", "epochs": 3, "lr": 0.5},
        outbox=(OutboxEntry("e1", "dataset.rejected", {"data": {"a": [["x"]]}}),),
        history=(*record.history, HistoryEntry(JobStatus.RECEIVED, T0 + timedelta(microseconds=7), "again")),
    )

    assert job_store.create(rich) is True
    assert job_store.create(replace(rich, validation=None)) is False

    stored = job_store.get(rich.id)
    assert stored == rich
    assert stored.created_at == T0
    assert stored.validation.extra["matrix"] == [[1, 2], [3, [4, 5]]]


def test_get_of_an_unknown_id_is_none(job_store):
    assert job_store.get("0" * 32) is None


# --- update ------------------------------------------------------------------------------------


def test_update_writes_what_mutate_returns(job_store):
    record = _record()
    job_store.create(record)
    later = T0 + timedelta(seconds=5)

    updated = job_store.update(record.id, lambda r: r.transition(JobStatus.SUBMITTING, later, "valid"))

    assert updated.status is JobStatus.SUBMITTING
    assert job_store.get(record.id) == updated
    assert [h.status for h in updated.history] == [JobStatus.RECEIVED, JobStatus.SUBMITTING]


def test_update_returning_none_writes_nothing(job_store):
    record = _record()
    job_store.create(record)

    same = job_store.update(record.id, lambda r: None)

    assert same == record
    assert job_store.get(record.id) == record


def test_update_of_a_missing_record_raises(job_store):
    with pytest.raises(RecordNotFoundError):
        job_store.update("f" * 32, lambda r: r)


def test_update_refuses_a_backward_status_change_and_keeps_the_record(job_store):
    record = _record()
    job_store.create(record)
    done = job_store.update(record.id, lambda r: r.transition(JobStatus.REJECTED, T0, "bad"))

    with pytest.raises(InvalidTransitionError):
        job_store.update(record.id, lambda r: replace(r, status=JobStatus.RECEIVED))

    assert job_store.get(record.id) == done


def test_concurrent_updates_lose_nothing(job_store):
    record = _record()
    job_store.create(record)
    errors = []

    def add_notes(worker):
        try:
            for i in range(2):
                job_store.update(
                    record.id,
                    lambda r, i=i: r.with_changes(
                        r.updated_at, history=(*r.history, HistoryEntry(r.status, T0, f"{worker}-{i}"))
                    ),
                )
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=add_notes, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    notes = sorted(h.note for h in job_store.get(record.id).history[1:])
    assert notes == ["a-0", "a-1", "b-0", "b-1"]


# --- queries -----------------------------------------------------------------------------------


@pytest.fixture
def populated(job_store):
    """Six records over two lineages, statuses and times (one tie in created_at)."""
    specs = [
        ("datasets/faq/v1.jsonl", 1, "faq", 0, JobStatus.QUEUED),
        ("datasets/faq/v1.jsonl", 2, "faq", 10, JobStatus.RUNNING),
        ("datasets/faq/v2.jsonl", 3, "faq", 20, JobStatus.QUEUED),
        ("datasets/bot/a.jsonl", 4, "bot", 20, JobStatus.QUEUED),
        ("datasets/bot/b.jsonl", 5, "bot", 30, JobStatus.SUCCEEDED),
        ("datasets/bot/c.jsonl", 6, "bot", 40, JobStatus.REJECTED),
    ]
    records = {}
    for name, gen, lineage, minutes, status in specs:
        rec = _record(name, gen, lineage, T0 + timedelta(minutes=minutes))
        rec = replace(rec, status=status)
        if gen == 5:
            rec = rec.add_outbox(OutboxEntry("job:SUCCEEDED", "job.succeeded", {"data": {}}))
        job_store.create(rec)
        records[gen] = rec
    return records


def test_query_newest_first_breaks_ties_by_id(job_store, populated):
    page = job_store.query(JobQuery(limit=50))

    expected = sorted(populated.values(), key=lambda r: (r.created_at, r.id), reverse=True)
    assert _ids(page) == [r.id for r in expected]
    assert page.next_page_token is None


def test_query_filters_by_status_lineage_dataset_since_and_outbox(job_store, populated):
    r = populated
    queued = job_store.query(JobQuery(statuses=frozenset({JobStatus.QUEUED})))
    assert set(_ids(queued)) == {r[1].id, r[3].id, r[4].id}

    two_statuses = job_store.query(JobQuery(statuses=frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED})))
    assert set(_ids(two_statuses)) == {r[2].id, r[5].id}

    bot_queued = job_store.query(JobQuery(statuses=frozenset({JobStatus.QUEUED}), lineage="bot"))
    assert _ids(bot_queued) == [r[4].id]

    all_generations = job_store.query(JobQuery(dataset="gs://b/datasets/faq/v1.jsonl"))
    assert _ids(all_generations) == [r[2].id, r[1].id]

    one_generation = job_store.query(JobQuery(dataset="gs://b/datasets/faq/v1.jsonl#1"))
    assert _ids(one_generation) == [r[1].id]

    recent = job_store.query(JobQuery(since=T0 + timedelta(minutes=30)))
    assert _ids(recent) == [r[6].id, r[5].id]

    pending = job_store.query(JobQuery(pending_outbox=True))
    assert _ids(pending) == [r[5].id]

    assert job_store.query(JobQuery(statuses=frozenset())).records == []


def test_queue_order_follows_queue_position(job_store, populated):
    page = job_store.query(JobQuery(statuses=frozenset({JobStatus.QUEUED}), order=QueryOrder.QUEUE_ORDER))

    expected = sorted((populated[g] for g in (1, 3, 4)), key=lambda r: (r.queue_position, r.id))
    assert _ids(page) == [r.id for r in expected]


def test_queue_order_with_since_filters_and_keeps_queue_order(job_store, populated):
    page = job_store.query(
        JobQuery(
            statuses=frozenset({JobStatus.QUEUED}),
            since=T0 + timedelta(minutes=5),
            order=QueryOrder.QUEUE_ORDER,
        )
    )

    expected = sorted((populated[g] for g in (3, 4)), key=lambda r: (r.queue_position, r.id))
    assert _ids(page) == [r.id for r in expected]


@pytest.mark.parametrize("order", list(QueryOrder))
def test_pages_cover_every_record_exactly_once_in_order(job_store, populated, order):
    whole = _ids(job_store.query(JobQuery(order=order, limit=50)))
    seen, token, pages = [], None, 0
    while True:
        page = job_store.query(JobQuery(order=order, limit=4 if pages == 0 else 1, page_token=token))
        seen.extend(_ids(page))
        pages += 1
        token = page.next_page_token
        if token is None:
            break

    assert seen == whole
    assert len(seen) == len(populated)
    assert pages == 3


# --- effects -----------------------------------------------------------------------------------


def test_effect_claim_lifecycle(job_store):
    now = T0
    first = job_store.acquire_effect("smoke:job-1", "owner-a", 60, now)
    assert (first.state, first.owner) == (EffectState.ACQUIRED, "owner-a")
    assert first.expires_at == now + timedelta(seconds=60)

    busy = job_store.acquire_effect("smoke:job-1", "owner-b", 60, now + timedelta(seconds=30))
    assert (busy.state, busy.owner, busy.expires_at) == (EffectState.IN_PROGRESS, "owner-a", first.expires_at)

    taken = job_store.acquire_effect("smoke:job-1", "owner-b", 60, now + timedelta(seconds=61))
    assert (taken.state, taken.owner) == (EffectState.ACQUIRED, "owner-b")

    with pytest.raises(RecordNotFoundError):
        job_store.complete_effect("smoke:job-1", "owner-a", {"late": True})

    job_store.complete_effect("smoke:job-1", "owner-b", {"passed": True, "scores": [[1, 0.5]]})
    done = job_store.acquire_effect("smoke:job-1", "owner-c", 60, now + timedelta(hours=2))
    assert (done.state, done.owner) == (EffectState.COMPLETED, "owner-b")
    assert done.result == {"passed": True, "scores": [[1, 0.5]]}


def test_released_effect_can_be_claimed_at_once_and_only_its_owner_releases(job_store):
    job_store.acquire_effect("publish:e1", "owner-a", 600, T0)

    job_store.release_effect("publish:e1", "owner-x")  # not the owner: no effect
    still = job_store.acquire_effect("publish:e1", "owner-b", 600, T0)
    assert still.state is EffectState.IN_PROGRESS

    job_store.release_effect("publish:e1", "owner-a")
    again = job_store.acquire_effect("publish:e1", "owner-b", 600, T0)
    assert (again.state, again.owner) == (EffectState.ACQUIRED, "owner-b")


def test_completing_an_unknown_effect_raises(job_store):
    with pytest.raises(RecordNotFoundError):
        job_store.complete_effect("never-claimed", "owner-a", {})


@pytest.mark.parametrize("scan_limit", [1000, 2])
def test_filters_applied_in_memory_page_through_every_match_exactly_once(job_store, populated, scan_limit, monkeypatch):
    """Firestore gets one equality filter; the rest are applied in memory on a bounded scan.

    With a tiny scan bound pages can come back short (even empty) with a token, but following
    the tokens still yields every match once, in order, and never more than ``limit`` a page.
    """
    monkeypatch.setattr(firestore_adapter, "SCAN_LIMIT", scan_limit)
    query = JobQuery(statuses=frozenset({JobStatus.QUEUED, JobStatus.RUNNING}), lineage="faq", pending_outbox=False)
    expected = [r.id for r in sorted(populated.values(), key=lambda r: (r.created_at, r.id), reverse=True)
                if r.lineage == "faq" and r.status in (JobStatus.QUEUED, JobStatus.RUNNING)]  # fmt: skip
    seen, token = [], None
    for _ in range(20):
        page = job_store.query(replace(query, limit=1, page_token=token))
        assert len(page.records) <= 1
        seen.extend(_ids(page))
        token = page.next_page_token
        if token is None:
            break
    assert seen == expected and len(expected) == 3
