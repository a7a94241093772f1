"""Every query the Firestore adapter can send is covered by REQUIRED_COMPOSITE_INDEXES.

The emulator does not enforce indexes, so this derives the needed index from the query
protobuf the adapter really builds (Firestore's rules: equality fields, then the orderings;
inequality fields missing from the ordering are appended; one-field queries need no composite
index) and checks the declared list covers it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.types import StructuredQuery

from shared.adapters.firestore import (
    REQUIRED_COMPOSITE_INDEXES,
    FirestoreJobStore,
    is_single_generation,
    needs_memory_filter,
    plan_query,
)
from shared.ports import JobQuery, QueryOrder
from shared.states import JobStatus

EQUALITY_OPS = {StructuredQuery.FieldFilter.Operator.EQUAL, StructuredQuery.FieldFilter.Operator.IN}


def _every_query_shape():
    for statuses, lineage, dataset, pending, since, order in itertools.product(
        (None, frozenset({JobStatus.QUEUED}), frozenset({JobStatus.RUNNING, JobStatus.CANCELLING})),
        (None, "faq"),
        (None, "gs://b/datasets/faq/v1.jsonl", "gs://b/datasets/faq/v1.jsonl#12"),
        (None, True, False),
        (None, datetime(2026, 1, 1, tzinfo=UTC)),
        tuple(QueryOrder),
    ):
        yield JobQuery(
            statuses=statuses, lineage=lineage, dataset=dataset, pending_outbox=pending, since=since, order=order
        )


def _field_filters(where):
    if "composite_filter" in where:
        for sub in where.composite_filter.filters:
            yield from _field_filters(sub)
    elif "field_filter" in where:
        yield where.field_filter


def _needed_index(structured: StructuredQuery):
    equalities, ranges = set(), set()
    if "where" in structured:
        for f in _field_filters(structured.where):
            (equalities if f.op in EQUALITY_OPS else ranges).add(f.field.field_path)
    orders = [
        (o.field.field_path, "ASCENDING" if o.direction == StructuredQuery.Direction.ASCENDING else "DESCENDING")
        for o in structured.order_by
        if o.field.field_path != "__name__"
    ]
    ordered_fields = {f for f, _ in orders}
    implicit_direction = orders[-1][1] if orders else "ASCENDING"
    orders += [(f, implicit_direction) for f in sorted(ranges - ordered_fields)]
    if len(equalities | ranges | ordered_fields) <= 1:
        return None
    return tuple(sorted((f, "ASCENDING") for f in equalities)) + tuple(orders)


def test_every_emitted_query_is_covered_by_a_declared_index():
    client = firestore.Client(project="p", credentials=AnonymousCredentials())
    store = FirestoreJobStore("p", client=client)
    declared = set(REQUIRED_COMPOSITE_INDEXES)
    used = set()
    emitted = 0

    for query in _every_query_shape():
        if is_single_generation(query):
            continue  # a document read by id, no query
        structured = store.build_query(plan_query(query))._to_protobuf()
        needed = _needed_index(structured)
        emitted += 1
        if needed is not None:
            assert needed in declared, f"{query} needs undeclared index {needed}"
            used.add(needed)

    assert emitted == 2 * 3 * 2 * 3 * 2 * 2
    assert used == declared, f"declared but never needed: {declared - used}"


def test_queries_order_by_document_id_last_for_stable_pages():
    client = firestore.Client(project="p", credentials=AnonymousCredentials())
    store = FirestoreJobStore("p", client=client)
    for query in (JobQuery(), JobQuery(order=QueryOrder.QUEUE_ORDER, since=datetime(2026, 1, 1, tzinfo=UTC))):
        structured = store.build_query(plan_query(query))._to_protobuf()
        assert structured.order_by[-1].field.field_path == "__name__"


def test_one_generation_is_a_lookup_not_a_query():
    assert is_single_generation(JobQuery(dataset="gs://b/d.jsonl#3"))
    assert not is_single_generation(JobQuery(dataset="gs://b/d.jsonl"))
    assert not is_single_generation(JobQuery())


def test_firestore_gets_one_equality_filter_and_the_rest_is_filtered_in_memory():
    query = JobQuery(statuses=frozenset({JobStatus.QUEUED}), lineage="faq", pending_outbox=True)
    plan = plan_query(query)
    assert [field for field, _, _ in plan.equalities] == ["lineage"]
    assert needs_memory_filter(query) and not needs_memory_filter(JobQuery(lineage="faq"))
    # One index per (pushed field, ordering) and the queue order with a date range: 4 * 3 + 1.
    assert len(REQUIRED_COMPOSITE_INDEXES) == 13
