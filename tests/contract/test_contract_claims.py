"""Claims contract (``shared.claims``): the same expiry, steal and release cases on the fake and Firestore.

Effect claims go through each store's ``acquire/complete/release_effect``; record claims through
``shared.claims.take_record``/``release_record`` inside each store's transactional ``update``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import T0

from shared.claims import new_lease, raise_if_held, release_record, take_record
from shared.errors import ClaimInProgressError, RecordNotFoundError
from shared.ports import EffectState, JobStore
from shared.records import DatasetRef, new_record
from shared.states import JobStatus

LEASE = 60
EXPIRY = T0 + timedelta(seconds=LEASE)
RECEIVED = frozenset({JobStatus.RECEIVED})


# --- effect claims --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("later", "state", "owner"),
    [
        (timedelta(0), EffectState.IN_PROGRESS, "owner-a"),
        (timedelta(seconds=LEASE) - timedelta(microseconds=1), EffectState.IN_PROGRESS, "owner-a"),
        (timedelta(seconds=LEASE), EffectState.ACQUIRED, "owner-b"),  # expired at expires_at exactly
        (timedelta(days=3), EffectState.ACQUIRED, "owner-b"),
    ],
)
def test_effect_lease_expires_exactly_at_expires_at(
    job_store: JobStore, later: timedelta, state: EffectState, owner: str
) -> None:
    first = job_store.acquire_effect("smoke:j", "owner-a", LEASE, T0)
    assert first.expires_at == EXPIRY

    second = job_store.acquire_effect("smoke:j", "owner-b", LEASE, T0 + later)
    assert (second.state, second.owner) == (state, owner)
    expected = EXPIRY if state is EffectState.IN_PROGRESS else T0 + later + timedelta(seconds=LEASE)
    assert second.expires_at == expected


def test_a_live_claim_is_not_granted_again_even_to_its_owner(job_store: JobStore) -> None:
    job_store.acquire_effect("smoke:j", "owner-a", LEASE, T0)
    again = job_store.acquire_effect("smoke:j", "owner-a", LEASE, T0 + timedelta(seconds=1))
    assert (again.state, again.owner, again.expires_at) == (EffectState.IN_PROGRESS, "owner-a", EXPIRY)


def test_after_a_steal_the_old_owner_can_neither_complete_nor_release(job_store: JobStore) -> None:
    job_store.acquire_effect("cleanup:j", "owner-a", LEASE, T0)
    job_store.acquire_effect("cleanup:j", "owner-b", LEASE, EXPIRY)

    with pytest.raises(RecordNotFoundError):
        job_store.complete_effect("cleanup:j", "owner-a", {"late": True})
    job_store.release_effect("cleanup:j", "owner-a")  # ignored: not the owner any more

    busy = job_store.acquire_effect("cleanup:j", "owner-c", LEASE, EXPIRY + timedelta(seconds=1))
    assert (busy.state, busy.owner) == (EffectState.IN_PROGRESS, "owner-b")


def test_release_frees_the_claim_at_once_but_only_for_its_owner(job_store: JobStore) -> None:
    job_store.acquire_effect("publish:e", "owner-a", LEASE, T0)
    job_store.release_effect("publish:e", "owner-x")
    assert job_store.acquire_effect("publish:e", "owner-b", LEASE, T0).state is EffectState.IN_PROGRESS

    job_store.release_effect("publish:e", "owner-a")
    taken = job_store.acquire_effect("publish:e", "owner-b", LEASE, T0)
    assert (taken.state, taken.owner, taken.expires_at) == (EffectState.ACQUIRED, "owner-b", EXPIRY)


def test_a_completed_claim_never_expires_and_cannot_be_released(job_store: JobStore) -> None:
    job_store.acquire_effect("smoke:j", "owner-a", LEASE, T0)
    job_store.complete_effect("smoke:j", "owner-a", {"passed": True, "n": [1, [2]]})
    job_store.release_effect("smoke:j", "owner-a")  # completed: stays

    later = job_store.acquire_effect("smoke:j", "owner-b", LEASE, T0 + timedelta(days=30))
    assert (later.state, later.owner, later.expires_at) == (EffectState.COMPLETED, "owner-a", None)
    assert later.result == {"passed": True, "n": [1, [2]]}


def test_releasing_or_completing_a_missing_claim(job_store: JobStore) -> None:
    job_store.release_effect("never", "owner-a")  # nothing to give back: no error
    with pytest.raises(RecordNotFoundError):
        job_store.complete_effect("never", "owner-a", {})


# --- record claims --------------------------------------------------------------------------------


def _leased_record(job_store: JobStore, owner: str = "owner-a") -> str:
    ref = DatasetRef("b", "datasets/faq/v1.jsonl", 1, "faq", size=10)
    record = new_record(ref, T0, event_id="ev-1", lease=new_lease(owner, T0, LEASE))
    assert job_store.create(record)  # create-as-claim
    assert not job_store.create(record)  # a second create() is refused
    return record.id


@pytest.mark.parametrize(
    ("later", "holder"),
    [
        (timedelta(seconds=LEASE) - timedelta(microseconds=1), "owner-a"),
        (timedelta(seconds=LEASE), "owner-b"),
    ],
)
def test_record_lease_is_stolen_only_once_expired(job_store: JobStore, later: timedelta, holder: str) -> None:
    job_id = _leased_record(job_store)
    now = T0 + later
    lease = new_lease("owner-b", now, LEASE)
    stored = job_store.update(job_id, lambda current: take_record(current, lease, now, RECEIVED))
    assert stored.lease is not None
    assert stored.lease.owner == holder
    if holder == "owner-a":
        with pytest.raises(ClaimInProgressError):
            raise_if_held(stored, "owner-b", now, f"intake:{job_id}")
    else:
        assert stored.lease.expires_at == now + timedelta(seconds=LEASE)
        raise_if_held(stored, "owner-b", now, f"intake:{job_id}")


def test_record_take_moves_the_status_and_leaves_other_statuses_alone(job_store: JobStore) -> None:
    job_id = _leased_record(job_store)
    lease = new_lease("owner-a", T0, LEASE)
    submitting = job_store.update(
        job_id, lambda current: take_record(current, lease, T0, RECEIVED, to=JobStatus.SUBMITTING)
    )
    assert submitting.status is JobStatus.SUBMITTING
    # The intake's claim is for RECEIVED records only: nothing is written now.
    late = new_lease("owner-b", EXPIRY, LEASE)
    unchanged = job_store.update(job_id, lambda current: take_record(current, late, EXPIRY, RECEIVED))
    assert unchanged.lease == lease
    assert unchanged.status is JobStatus.SUBMITTING


def test_record_release_only_by_the_owner(job_store: JobStore) -> None:
    job_id = _leased_record(job_store)
    kept = job_store.update(job_id, lambda current: release_record(current, "owner-x", T0, RECEIVED))
    assert kept.lease is not None and kept.lease.owner == "owner-a"

    released = job_store.update(job_id, lambda current: release_record(current, "owner-a", T0, RECEIVED))
    assert released.lease is None
    lease = new_lease("owner-b", T0, LEASE)
    taken = job_store.update(job_id, lambda current: take_record(current, lease, T0, RECEIVED))
    assert taken.lease == lease
