"""The monthly lineage budget on the real Firestore emulator: concurrent reservations (started
together behind a barrier, each in its own Firestore transaction) cannot both slip under the
limit, and a redelivered reservation is not counted twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.adapters.firestore import FirestoreJobStore, FirestoreSpendLedger
from shared.ports import SpendReservation
from shared.records import utcnow

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(emulators, firestore_collections) -> FirestoreSpendLedger:
    jobs, effects = firestore_collections
    store = FirestoreJobStore(project=emulators.project, jobs_collection=jobs, effects_collection=effects)
    return FirestoreSpendLedger(store, collection=f"{jobs}-spending")


def reserve_all_at_once(ledger: FirestoreSpendLedger, key: str, amounts: list[float], limit: float):
    barrier = threading.Barrier(len(amounts))

    def one(index: int) -> SpendReservation:
        barrier.wait()  # start the transactions together
        return ledger.reserve(key, f"job-{index}", amounts[index], limit)

    with ThreadPoolExecutor(max_workers=len(amounts)) as pool:
        return list(pool.map(one, range(len(amounts))))


def test_two_concurrent_uploads_cannot_both_slip_under_the_monthly_budget(ledger):
    key = f"faq:{utcnow():%Y-%m}"
    answers = reserve_all_at_once(ledger, key, [150.0, 150.0], limit=200.0)

    assert sorted(a.accepted for a in answers) == [False, True]
    refused = next(a for a in answers if not a.accepted)
    assert refused.spent_usd == 150.0  # the winner's reservation, seen by the loser
    doc = ledger.get(key)
    assert doc is not None and doc["reserved_usd"] == 150.0 and len(doc["jobs"]) == 1


def test_many_concurrent_reservations_stay_within_the_budget(ledger):
    key = "support-bot:2026-03"
    answers = reserve_all_at_once(ledger, key, [40.0] * 6, limit=100.0)

    assert sum(a.accepted for a in answers) == 2
    doc = ledger.get(key)
    assert doc is not None and doc["reserved_usd"] == 80.0


def test_a_redelivered_reservation_is_not_counted_twice_and_actuals_are_stored(ledger):
    key = "faq:2026-04"
    first = ledger.reserve(key, "job-a", 30.0, 100.0)
    again = ledger.reserve(key, "job-a", 30.0, 100.0)
    assert first == again == SpendReservation(True, 0.0, 30.0)
    ledger.record_actual(key, "job-a", {"billable_tokens": 6_000_000, "cost_usd": 30.0})
    doc = ledger.get(key)
    assert doc is not None and doc["reserved_usd"] == 30.0
    assert doc["jobs"]["job-a"]["actual"]["billable_tokens"] == 6_000_000
