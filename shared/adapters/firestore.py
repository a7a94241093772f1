"""JobStore on Cloud Firestore (google-cloud-firestore); the emulator when ``FIRESTORE_EMULATOR_HOST`` is set.

Storage format of ``jobs/{id}``: ``JobRecord.to_dict()``, except that ``created_at`` and
``updated_at`` are stored as real Firestore timestamps (microsecond precision): ordering and
``since`` ranges then compare instants and do not depend on how strings are formatted, and the
console shows them as dates. Every other timestamp stays an RFC 3339 string (``queue_position``
sorts as a string because ``to_rfc3339`` always writes six fractional digits). Firestore
forbids arrays directly inside arrays, which free-form JSON (validation stats, configs) may
contain: such inner arrays are wrapped as ``{"_sftpilot_array": [...]}`` and unwrapped on read,
so any JSON round-trips.

Claims and updates:

* :meth:`FirestoreJobStore.create` is Firestore ``create()`` (fails if the document exists): the
  idempotency claim for an upload event.
* :meth:`FirestoreJobStore.update` runs ``mutate`` inside a transaction (it may run more than
  once), writes nothing when it returns None or an equal record, and enforces forward-only
  status changes with :func:`shared.states.check_transition`.
* ``effects/{id}`` documents ``{state: IN_PROGRESS|COMPLETED, owner, expires_at, result}``:
  :meth:`acquire_effect` is ``create()``, and on ``AlreadyExists`` a transaction that takes an
  expired IN_PROGRESS lease over.

Queries support exactly the shapes :class:`shared.ports.JobQuery` allows (a ``dataset`` with
``#generation`` names one record, whose id derives from it, and is served by a document read);
every composite
index they need in production is listed in :data:`REQUIRED_COMPOSITE_INDEXES` (the emulator
does not enforce indexes, so a unit test checks the list against the queries this module
builds, and the Terraform test checks Terraform declares the list).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.claims import DELETE, EffectClaimStore, EffectDoc, Write, decide_acquire
from shared.errors import RecordNotFoundError, StoreUnavailableError
from shared.ports import (
    EffectClaim,
    EffectState,
    JobPage,
    JobQuery,
    QueryOrder,
    RecordMutation,
    SpendReservation,
)
from shared.records import JSON, JobRecord, from_rfc3339, record_key
from shared.states import JobStatus, check_transition

T = TypeVar("T")
Direction = Literal["ASCENDING", "DESCENDING"]
IndexField = tuple[str, Direction]

_ARRAY_WRAPPER = "_sftpilot_array"
_TIMESTAMP_FIELDS = ("created_at", "updated_at")
_TRANSACTION_ATTEMPTS = 5
_ABORT_RETRIES = 3
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.RetryError,
    gexc.Unknown,
    gexc.ResourceExhausted,
)


# --- document encoding --------------------------------------------------------------------------


def _effect_fields(doc: EffectDoc) -> dict[str, Any]:
    return {
        "state": doc.state.value,
        "owner": doc.owner,
        "expires_at": doc.expires_at,
        "result": None if doc.result is None else _encode_value(doc.result),
    }


def _effect_doc(data: dict[str, Any]) -> EffectDoc:
    result = data.get("result")
    return EffectDoc(
        state=EffectState(data["state"]),
        owner=str(data.get("owner", "")),
        expires_at=from_rfc3339(data.get("expires_at")),
        result=None if result is None else _decode_value(result),
    )


def _encode_value(value: Any, inside_array: bool = False) -> Any:
    if isinstance(value, dict):
        return {str(k): _encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_encode_value(v, inside_array=True) for v in value]
        return {_ARRAY_WRAPPER: items} if inside_array else items
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY_WRAPPER}:
            return [_decode_value(v) for v in value[_ARRAY_WRAPPER]]
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def encode_record(record: JobRecord) -> JSON:
    """The stored document of a record (timestamps as Firestore timestamps, nested arrays wrapped)."""
    data = record.to_dict()
    data["created_at"] = record.created_at
    data["updated_at"] = record.updated_at
    encoded: JSON = _encode_value(data)
    return encoded


def decode_record(data: JSON) -> JobRecord:
    """Inverse of :func:`encode_record` (tolerates RFC 3339 strings in the timestamp fields)."""
    decoded: JSON = _decode_value(data)
    return JobRecord.from_dict(decoded)


# --- query planning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryPlan:
    """The Firestore query a JobQuery becomes: equality filters, one range filter, the orderings."""

    equalities: tuple[tuple[str, str, Any], ...]
    """(field, "==" or "in", value)."""
    range_filter: tuple[str, str, Any] | None
    orders: tuple[IndexField, ...]
    """Explicit orderings, the document id (``__name__``) last as the tie-breaker."""


SCAN_LIMIT: Final = 1000
"""At most this many documents are read for one page when filters are applied in memory."""


def plan_query(query: JobQuery) -> QueryPlan:
    """Translate a JobQuery into filters and orderings (pure; no client needed).

    Only ONE equality filter goes to Firestore -- the most selective one the query has, in the
    order dataset, lineage, status, pending_outbox -- so the composite indexes are one per
    (field, ordering) instead of one per combination (each index costs on every record write).
    The other filters are applied in memory by :meth:`FirestoreJobStore.query` on a bounded scan
    (:data:`SCAN_LIMIT` documents a page); see :func:`needs_memory_filter`.
    """
    candidates: list[tuple[str, str, Any]] = []
    if query.dataset is not None:
        field = "dataset" if "#" in query.dataset else "dataset_object"
        candidates.append((field, "==", query.dataset))
    if query.lineage is not None:
        candidates.append(("lineage", "==", query.lineage))
    if query.statuses is not None:
        values = sorted(s.value for s in query.statuses)
        candidates.append(("status", "==", values[0]) if len(values) == 1 else ("status", "in", values))
    if query.pending_outbox is not None:
        candidates.append(("pending_outbox", "==", bool(query.pending_outbox)))
    equalities = candidates[:1]
    range_filter = None if query.since is None else ("created_at", ">=", query.since)
    orders: list[IndexField]
    if query.order is QueryOrder.QUEUE_ORDER:
        orders = [("queue_position", "ASCENDING")]
        if range_filter is not None:
            # Firestore requires every inequality field in the ordering (appended after the
            # explicit ones); spell it out so the cursor and the declared index match exactly.
            orders.append(("created_at", "ASCENDING"))
        orders.append(("__name__", "ASCENDING"))
    else:
        orders = [("created_at", "DESCENDING"), ("__name__", "DESCENDING")]
    return QueryPlan(tuple(equalities), range_filter, tuple(orders))


def composite_index_for(plan: QueryPlan) -> tuple[IndexField, ...] | None:
    """The composite index a plan needs in production, or None when single-field indexes suffice.

    Equality fields come first (ascending, in name order), then the orderings without the
    implicit ``__name__``. A query touching one field only is served by automatic indexes.
    """
    order_fields = tuple(o for o in plan.orders if o[0] != "__name__")
    ascending: Direction = "ASCENDING"
    equality_fields = tuple((field, ascending) for field in sorted({f for f, _, _ in plan.equalities}))
    fields = {f for f, _ in equality_fields} | {f for f, _ in order_fields}
    if plan.range_filter is not None:
        fields.add(plan.range_filter[0])
    if len(fields) <= 1:
        return None
    index: tuple[IndexField, ...] = equality_fields + order_fields
    return index


def needs_memory_filter(query: JobQuery) -> bool:
    """True when the query has more equality filters than the one Firestore receives."""
    present = (query.dataset, query.lineage, query.statuses, query.pending_outbox)
    return sum(value is not None for value in present) > 1


def matches(record: JobRecord, query: JobQuery) -> bool:
    """Every filter of ``query`` checked in memory (filters beyond the one sent to Firestore,
    and the single-generation lookup)."""
    if query.dataset is not None:
        uri = record.dataset.uri if "#" in query.dataset else record.dataset.gcs_uri
        if uri != query.dataset:
            return False
    if query.statuses is not None and record.status not in query.statuses:
        return False
    if query.lineage is not None and record.lineage != query.lineage:
        return False
    if query.since is not None and record.created_at < query.since:
        return False
    return query.pending_outbox is None or record.has_pending_outbox == query.pending_outbox


def is_single_generation(query: JobQuery) -> bool:
    """True when the query names one dataset generation: served by a document read, no index."""
    return query.dataset is not None and "#" in query.dataset


def _all_query_shapes() -> Iterator[JobQuery]:
    """One JobQuery per distinct query shape (some are served without a query, see above)."""
    since = datetime(2026, 1, 1).astimezone()
    for statuses, lineage, dataset, pending, with_since, order in itertools.product(
        (None, frozenset({JobStatus.QUEUED}), frozenset({JobStatus.RUNNING, JobStatus.PENDING})),
        (None, "lineage"),
        (None, "gs://b/d.jsonl", "gs://b/d.jsonl#1"),
        (None, True),
        (False, True),
        tuple(QueryOrder),
    ):
        yield JobQuery(
            statuses=statuses,
            lineage=lineage,
            dataset=dataset,
            pending_outbox=pending,
            since=since if with_since else None,
            order=order,
        )


def _required_indexes() -> list[tuple[IndexField, ...]]:
    needed = {composite_index_for(plan_query(q)) for q in _all_query_shapes() if not is_single_generation(q)}
    return sorted(index for index in needed if index is not None)


REQUIRED_COMPOSITE_INDEXES: list[tuple[tuple[str, str], ...]] = list(_required_indexes())
"""Every composite index (on the jobs collection) the job queries need in production.

Each entry is a tuple of ``(field, "ASCENDING" | "DESCENDING")`` in index order; deploy/gcp
declares exactly these (query scope COLLECTION).
"""


# --- page tokens --------------------------------------------------------------------------------


def _encode_token(order: QueryOrder, values: list[Any], doc_id: str) -> str:
    encoded = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"o": order.value, "v": encoded, "id": doc_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, plan: QueryPlan, order: QueryOrder) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values = [from_rfc3339(v["t"]) if isinstance(v, dict) else v for v in data["v"]]
        doc_id = data["id"]
        matches = data["o"] == order.value and len(values) == len(plan.orders) - 1
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValueError(f"invalid page token {token[:40]!r}") from None
    if not matches or not isinstance(doc_id, str):
        raise ValueError("page token does not belong to this query (different order)")
    return [*values, doc_id]


def _cursor_values(record: JobRecord, plan: QueryPlan) -> list[Any]:
    values: list[Any] = []
    for field, _ in plan.orders:
        if field == "created_at":
            values.append(record.created_at)
        elif field == "queue_position":
            values.append(record.queue_position)
    return values


# --- the adapter --------------------------------------------------------------------------------


class FirestoreJobStore(EffectClaimStore):
    """:class:`shared.ports.JobStore` on Firestore (client created on first use).

    Effect claims follow :class:`shared.claims.EffectClaimStore`'s rules; this class only reads
    and writes ``effects/{id}`` in a transaction.
    """

    def __init__(
        self,
        project: str,
        database: str = "(default)",
        jobs_collection: str = "jobs",
        effects_collection: str = "effects",
        client: firestore.Client | None = None,
    ) -> None:
        self.project = project
        self.database = database
        self.jobs_collection = jobs_collection
        self.effects_collection = effects_collection
        self._client = client

    @property
    def client(self) -> firestore.Client:
        """The Firestore client (the emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
        if self._client is None:
            self._client = firestore.Client(project=self.project, database=self.database)
        return self._client

    def _jobs(self) -> Any:
        return self.client.collection(self.jobs_collection)

    def _effects(self) -> Any:
        return self.client.collection(self.effects_collection)

    # --- records ---

    def create(self, record: JobRecord) -> bool:
        """Insert if absent (Firestore ``create()``). True if created, False if it existed."""
        try:
            self._jobs().document(record.id).create(encode_record(record))
        except gexc.AlreadyExists:
            return False
        except _TRANSIENT as exc:
            raise StoreUnavailableError("create", f"{type(exc).__name__}: {exc}") from exc
        return True

    def get(self, job_id: str) -> JobRecord | None:
        """One record, or None."""
        try:
            snapshot = self._jobs().document(job_id).get()
        except _TRANSIENT as exc:
            raise StoreUnavailableError("get", f"{type(exc).__name__}: {exc}") from exc
        return decode_record(snapshot.to_dict()) if snapshot.exists else None

    def update(self, job_id: str, mutate: RecordMutation) -> JobRecord:
        """Transactional read-modify-write (see :meth:`shared.ports.JobStore.update`)."""
        ref = self._jobs().document(job_id)

        def body(transaction: Any) -> JobRecord:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                raise RecordNotFoundError(job_id)
            current = decode_record(snapshot.to_dict())
            changed = mutate(current)
            if changed is None or changed == current:
                return current
            if changed.id != job_id:
                raise ValueError(f"mutation changed the record id {job_id!r} -> {changed.id!r}")
            if changed.status is not current.status:
                check_transition(current.status, changed.status)
            transaction.set(ref, encode_record(changed))
            return changed

        return self._run_transaction("update", body)

    def query(self, query: JobQuery) -> JobPage:
        """One page of records matching ``query`` (token = the last row's sort values + id)."""
        if query.limit < 1:
            raise ValueError(f"limit must be >= 1, got {query.limit}")
        if query.statuses is not None and not query.statuses:
            return JobPage(records=[])
        if is_single_generation(query):
            return self._query_single_generation(query)
        plan = plan_query(query)
        firestore_query = self.build_query(plan)
        if query.page_token:
            firestore_query = firestore_query.start_after(_decode_token(query.page_token, plan, query.order))
        in_memory = needs_memory_filter(query)
        scan = max(query.limit + 1, min(SCAN_LIMIT, 10 * (query.limit + 1))) if in_memory else query.limit + 1
        try:
            snapshots = list(firestore_query.limit(scan).stream())
        except _TRANSIENT as exc:
            raise StoreUnavailableError("query", f"{type(exc).__name__}: {exc}") from exc
        scanned = [decode_record(s.to_dict()) for s in snapshots]
        matching = [r for r in scanned if matches(r, query)] if in_memory else scanned
        records = matching[: query.limit]
        token = None
        if len(matching) > query.limit and records:
            last = records[-1]
            token = _encode_token(query.order, _cursor_values(last, plan), last.id)
        elif in_memory and len(snapshots) == scan and scanned:
            # The scan bound was reached with fewer matches: a short page, continuing after
            # the last document read (pages stay disjoint and complete, never longer than limit).
            last = scanned[-1]
            token = _encode_token(query.order, _cursor_values(last, plan), last.id)
        return JobPage(records=records, next_page_token=token)

    def _query_single_generation(self, query: JobQuery) -> JobPage:
        """``dataset=gs://b/name#gen`` is at most one record, whose id derives from the URI."""
        assert query.dataset is not None
        if query.page_token:
            return JobPage(records=[])  # the only possible record was on the first page
        try:
            bucket, rest = query.dataset.removeprefix("gs://").split("/", 1)
            name, generation = rest.rsplit("#", 1)
            job_id = record_key(bucket, name, int(generation))
        except ValueError:
            return JobPage(records=[])  # not a well-formed generation URI: matches nothing
        record = self.get(job_id)
        if record is None or not matches(record, query):
            return JobPage(records=[])
        return JobPage(records=[record])

    def build_query(self, plan: QueryPlan) -> Any:
        """The google-cloud-firestore Query for a plan (no request is sent)."""
        built = self._jobs()
        for field, op, value in plan.equalities:
            built = built.where(filter=firestore.FieldFilter(field, op, value))
        if plan.range_filter is not None:
            field, op, value = plan.range_filter
            built = built.where(filter=firestore.FieldFilter(field, op, value))
        for field, direction in plan.orders:
            built = built.order_by(
                field,
                direction=firestore.Query.ASCENDING if direction == "ASCENDING" else firestore.Query.DESCENDING,
            )
        return built

    # --- effects ---

    def acquire_effect(self, effect_id: str, owner: str, lease_seconds: float, now: datetime) -> EffectClaim:
        """Claim ``effects/{id}``: one ``create()`` when it is absent (the common case), else the rules."""
        claim, write = decide_acquire(effect_id, None, owner, now, lease_seconds)
        assert isinstance(write, EffectDoc)
        try:
            self._effects().document(effect_id).create(_effect_fields(write))
            return claim
        except gexc.AlreadyExists:
            pass
        except _TRANSIENT as exc:
            raise StoreUnavailableError("acquire_effect", f"{type(exc).__name__}: {exc}") from exc
        return super().acquire_effect(effect_id, owner, lease_seconds, now)

    def _apply_effect(self, operation: str, effect_id: str, decide: Callable[[EffectDoc | None], tuple[T, Write]]) -> T:
        """Read ``effects/{id}``, decide and write in one transaction."""
        ref = self._effects().document(effect_id)

        def body(transaction: Any) -> T:
            snapshot = ref.get(transaction=transaction)
            existing = _effect_doc(snapshot.to_dict()) if snapshot.exists else None
            answer, write = decide(existing)
            if write == DELETE:
                transaction.delete(ref)
            elif isinstance(write, EffectDoc):
                transaction.set(ref, _effect_fields(write))
            return answer

        return self._run_transaction(operation, body)

    # --- internals ---

    def _run_transaction(self, operation: str, body: Callable[[Any], T]) -> T:
        return run_transaction(self.client, operation, body)


class FirestoreSpendLedger:
    """:class:`shared.ports.SpendLedger` on Firestore: one document per lineage-month.

    The rule (:func:`shared.budget.apply_reservation`) runs inside a transaction that reads the
    document first, so concurrent reservations serialise on it (Firestore retries the loser).
    """

    def __init__(self, store: FirestoreJobStore, collection: str = "spending") -> None:
        self.store = store
        self.collection = collection

    def _doc(self, key: str) -> Any:
        return self.store.client.collection(self.collection).document(key)

    def reserve(self, key: str, job_id: str, amount_usd: float, limit_usd: float | None) -> SpendReservation:
        """Reserve atomically (see the port)."""
        from shared.budget import apply_reservation  # noqa: PLC0415 - the domain rule, pure

        ref = self._doc(key)

        def body(transaction: Any) -> SpendReservation:
            snapshot = ref.get(transaction=transaction)
            new_doc, answer = apply_reservation(
                snapshot.to_dict() if snapshot.exists else None, key, job_id, amount_usd, limit_usd
            )
            if new_doc is not None:
                transaction.set(ref, new_doc)
            return answer

        return run_transaction(self.store.client, "reserve_spend", body)

    def get(self, key: str) -> JSON | None:
        """The ledger document, or None."""
        try:
            snapshot = self._doc(key).get()
        except _TRANSIENT as exc:
            raise StoreUnavailableError("get_spend", f"{type(exc).__name__}: {exc}") from exc
        return snapshot.to_dict() if snapshot.exists else None

    def record_actual(self, key: str, job_id: str, actual: JSON) -> None:
        """Store the job's actual tokens/cost beside its reservation (a field path update)."""
        ref = self._doc(key)

        def body(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists and job_id in (snapshot.to_dict().get("jobs") or {}):
                transaction.update(ref, {f"jobs.`{job_id}`.actual": actual})

        run_transaction(self.store.client, "record_actual_spend", body)


def run_transaction(client: firestore.Client, operation: str, body: Callable[[Any], T]) -> T:
    """Run ``body`` in a transaction; contention and outages become StoreUnavailableError.

    The client retries a transaction whose *commit* aborts; a read that aborts (the
    emulator's lock timeout) escapes it, so the whole transaction is retried here too.
    """
    last: BaseException | None = None
    for attempt in range(_ABORT_RETRIES):
        transaction = client.transaction(max_attempts=_TRANSACTION_ATTEMPTS)
        try:
            result: T = firestore.transactional(body)(transaction)
            return result
        except gexc.Aborted as exc:
            last = exc
            time.sleep(0.05 * (attempt + 1))
        except ValueError as exc:
            if isinstance(exc.__cause__, gexc.Aborted):
                raise StoreUnavailableError(operation, f"transaction kept conflicting: {exc}") from exc
            raise
        except _TRANSIENT as exc:
            raise StoreUnavailableError(operation, f"{type(exc).__name__}: {exc}") from exc
    raise StoreUnavailableError(operation, f"transaction kept aborting: {last}")
