"""Claims: who may work on a job record or run a side effect, for how long, and how it is given back.

Every delivery is at-least-once, so two invocations can start the same work. A *claim* decides
which one runs it. There are two kinds, with the same rules:

* **record claims**: the ``lease`` field of ``jobs/{id}`` (intake holds it while the record is
  RECEIVED; submission while it is SUBMITTING). Taken with ``create()`` (a new record carries
  its lease) or with a transactional update; written by :func:`take_record`, given back by
  :func:`release_record`.
* **effect claims**: ``effects/{id}`` documents (smoke test, cleanup, one outbox publish).
  Stores inherit :class:`EffectClaimStore`, which holds the rules; a store only supplies one
  atomic read-decide-write primitive (:meth:`EffectClaimStore._apply_effect`).

The rules (one place, the shape of aws-powertools' idempotency persistence layer, where one
base class owns the decisions and each store only reads and writes
<https://docs.powertools.aws.dev/lambda/python/latest/utilities/idempotency/>):

* a claim is *held* by its owner until ``expires_at`` (``now >= expires_at`` means expired);
* anyone may take a missing or expired claim; the owner may renew its own;
* only the owner may complete or release a claim, and only an IN_PROGRESS one is released;
* a completed effect claim is never taken again (its result is returned instead).

The lease length is one setting, ``SFTPILOT_LEASE_SECONDS`` (default :data:`DEFAULT_LEASE_SECONDS`),
longer than the 540 s event-function timeout so a live invocation is never overtaken.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar

from shared.errors import ClaimInProgressError, RecordNotFoundError
from shared.ports import EffectClaim, EffectState
from shared.records import JSON, JobRecord, Lease, to_rfc3339
from shared.states import JobStatus

DEFAULT_LEASE_SECONDS: Final = 600
"""Default of ``Settings.lease_seconds``: longer than the 540 s timeout of an event function."""

T = TypeVar("T")


# --- the rules ---------------------------------------------------------------------------------


def new_lease(owner: str, now: datetime, lease_seconds: float) -> Lease:
    """A lease held by ``owner`` from ``now`` for ``lease_seconds``."""
    return Lease(owner=owner, expires_at=now + timedelta(seconds=lease_seconds))


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """True once a claim may be taken over (a claim without an expiry never expires)."""
    return expires_at is not None and now >= expires_at


def held_by_another(lease: Lease | None, owner: str, now: datetime) -> bool:
    """True when someone other than ``owner`` holds a live lease."""
    return lease is not None and lease.owner != owner and not is_expired(lease.expires_at, now)


# --- record claims ----------------------------------------------------------------------------------


def take_record(
    record: JobRecord, lease: Lease, now: datetime, statuses: Collection[JobStatus], *, to: JobStatus | None = None
) -> JobRecord | None:
    """Mutation: put ``lease`` on ``record`` (moving it to ``to``), or None when it is not ours to take.

    Not ours: the record left ``statuses``, or another owner holds a live lease. For
    :meth:`shared.ports.JobStore.update` (may run twice: pure).
    """
    if record.status not in statuses or held_by_another(record.lease, lease.owner, now):
        return None
    if to is None or record.status is to:
        return record.with_changes(now, lease=lease)
    return record.transition(to, now, note=f"{to.value.lower()} (by {lease.owner})", lease=lease)


def release_record(record: JobRecord, owner: str, now: datetime, statuses: Collection[JobStatus]) -> JobRecord | None:
    """Mutation: drop ``owner``'s lease while the record is in ``statuses`` (else write nothing)."""
    if record.status not in statuses or record.lease is None or record.lease.owner != owner:
        return None
    return record.with_changes(now, lease=None)


def raise_if_held(record: JobRecord, owner: str, now: datetime, claim_id: str) -> None:
    """ClaimInProgressError (retryable) when another owner holds a live lease on ``record``."""
    held = record.lease
    if held is not None and held_by_another(held, owner, now):
        raise ClaimInProgressError(claim_id, held.owner, to_rfc3339(held.expires_at) or "")


# --- effect claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectDoc:
    """What a store keeps for ``effects/{id}``."""

    state: EffectState
    owner: str
    expires_at: datetime | None
    result: JSON | None = None

    def claim(self, effect_id: str) -> EffectClaim:
        """The caller's view (a copy: the stored result is never shared)."""
        return EffectClaim(effect_id, self.state, self.owner, self.expires_at, copy.deepcopy(self.result))


DELETE: Final = "DELETE"
"""Returned by a decision to delete the document."""

Write = EffectDoc | str | None
"""A decision's write: the new document, :data:`DELETE`, or None (write nothing)."""


def decide_acquire(
    effect_id: str, existing: EffectDoc | None, owner: str, now: datetime, lease_seconds: float
) -> tuple[EffectClaim, Write]:
    """Claim a missing or expired IN_PROGRESS effect; otherwise report who has it."""
    if existing is None or (existing.state is EffectState.IN_PROGRESS and is_expired(existing.expires_at, now)):
        expires = now + timedelta(seconds=lease_seconds)
        return EffectClaim(effect_id, EffectState.ACQUIRED, owner, expires), EffectDoc(
            EffectState.IN_PROGRESS, owner, expires
        )
    return existing.claim(effect_id), None


def decide_complete(effect_id: str, existing: EffectDoc | None, owner: str, result: JSON) -> tuple[None, Write]:
    """Only the current owner completes (RecordNotFoundError otherwise: its lease was taken)."""
    if existing is None or existing.owner != owner:
        raise RecordNotFoundError(f"effect {effect_id} owned by {owner}")
    return None, EffectDoc(EffectState.COMPLETED, owner, None, copy.deepcopy(result))


def decide_release(existing: EffectDoc | None, owner: str) -> tuple[None, Write]:
    """Only the owner's IN_PROGRESS claim is deleted; anything else is left alone."""
    if existing is not None and existing.owner == owner and existing.state is EffectState.IN_PROGRESS:
        return None, DELETE
    return None, None


class EffectClaimStore(ABC):
    """The effect-claim half of :class:`shared.ports.JobStore`: the rules, over one store primitive."""

    @abstractmethod
    def _apply_effect(self, operation: str, effect_id: str, decide: Callable[[EffectDoc | None], tuple[T, Write]]) -> T:
        """Atomically read ``effects/{effect_id}``, call ``decide`` and perform its write.

        ``decide`` may run more than once (transaction retries) and may raise to abort.
        """

    def acquire_effect(self, effect_id: str, owner: str, lease_seconds: float, now: datetime) -> EffectClaim:
        """Claim a side effect: create ``effects/{id}`` IN_PROGRESS, or take over an expired lease."""
        return self._apply_effect(
            "acquire_effect", effect_id, lambda doc: decide_acquire(effect_id, doc, owner, now, lease_seconds)
        )

    def complete_effect(self, effect_id: str, owner: str, result: JSON) -> None:
        """Mark a claimed effect COMPLETED with its result (RecordNotFoundError unless ``owner`` holds it)."""
        self._apply_effect("complete_effect", effect_id, lambda doc: decide_complete(effect_id, doc, owner, result))

    def release_effect(self, effect_id: str, owner: str) -> None:
        """Give a claim back after a retryable failure, so a redelivery can take it at once."""
        self._apply_effect("release_effect", effect_id, lambda doc: decide_release(doc, owner))
