"""Retiring superseded tuned models of a lineage: a pure plan, then recorded, idempotent steps.

When a job passes its smoke test and its lineage's cleanup policy is on (``cleanup.enabled``),
the lineage's older passing models beyond the ``keep_last`` newest are retired:

1. ``get_model``: the model must carry ``managed-by=<this deployment>``, else it is left alone;
2. undeploy it from every endpoint it is deployed on (checkpoint endpoints included);
3. delete the endpoints this service created for it (the job's endpoint and checkpoint
   endpoints recorded on its job record; an endpoint still serving other models is kept);
4. delete the model.

NotFound counts as done at every step, so a retried or redelivered cleanup simply finishes the
work. Retryable errors propagate after a few attempts (the caller releases its claim and the
event is redelivered); other errors are recorded as a failed step and the next model is tried.
``dry_run`` reads the model but changes nothing and records what would have been done.

Long-running operations. Undeploy, endpoint delete and model delete answer with a
google.longrunning Operation that can run for minutes
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/undeployModel,
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete).
One retry layer: every backend call is one attempt of :func:`shared.retry.call_with_retries`
(the adapter does not retry these), so a failed send is sent again and a failed poll polls
again, but a mutation whose operation was started is never sent again. A pass polls each
operation ``OperationWait.polls`` times; an operation still running then leaves its step
``pending`` with the operation's name on the retired job's record (``cleanup.retirement``),
the model is not recorded as deleted (no ``model.deleted``), and :func:`run_cleanup` raises
:class:`~shared.errors.CleanupPendingError` (retryable). The "next pass" is the redelivery of
the same completion event (the completion function answers retry, Pub/Sub redelivers with
backoff), or any later cleanup of the lineage: both re-plan the target and poll the recorded
operation instead of sending the mutation again. A model counts as deleted only when Vertex
says so: its delete operation finished without error, or the model answers NotFound.

Shared endpoints. An endpoint's deployed model that carries traffic can only be undeployed if
the same ``undeployModel`` request gives its traffic to the others (``trafficSplit``, see the
undeployModel page above). The cleanup reads the endpoint first and gives the retired model's
share to the remaining models in proportion to their shares (evenly if they had none).

Safety rules, all enforced here: only models labelled ``managed-by=<deployment>``; never the
model that just passed (the new job is always kept, whatever its age); nothing at all unless the
new job passed (the caller's rule, see :mod:`shared.completion`).

Example:
    >>> CleanupPolicy.from_config({"cleanup": {"enabled": True, "keep_last": 2}})
    CleanupPolicy(enabled=True, keep_last=2, dry_run=False, on_failure=False)
    >>> model_deleted_event_id("job7", "projects/p/locations/l/models/123@1")
    'job7:model.deleted:123@1'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from shared.errors import (
    CleanupPendingError,
    ErrorInfo,
    InvalidArgumentError,
    NotFoundError,
    RecordNotFoundError,
    is_retryable,
)
from shared.events import EventType
from shared.outbox import stage_event
from shared.ports import Clock, DeployedModelRef, JobQuery, JobStore, ModelInfo, TuningBackend
from shared.record_parts import CleanupRecord, ResolvedConfig, TuningView
from shared.records import JSON, DatasetRef, JobRecord, to_rfc3339
from shared.retry import RetryPolicy, Sleep, call_with_retries
from shared.states import JobStatus

MANAGED_BY_LABEL = "managed-by"
"""The label that marks models this deployment may delete."""

T = TypeVar("T")


# --- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupPolicy:
    """The ``cleanup`` section of the resolved tuning config (defaults as in tuning.yaml)."""

    enabled: bool = False
    keep_last: int = 1
    """Keep this many newest passing models of the lineage, the new one included (min 1)."""
    dry_run: bool = False
    on_failure: bool = False
    """Failed/cancelled/expired jobs: delete their own model (if any) instead of nothing."""

    @classmethod
    def from_config(cls, config: ResolvedConfig | Mapping[str, Any] | None) -> CleanupPolicy:
        """Read ``record.config.cleanup`` (intake validated it; missing keys take defaults)."""
        section = config.cleanup if isinstance(config, ResolvedConfig) else (config or {}).get("cleanup") or {}
        return cls(
            enabled=bool(section.get("enabled", False)),
            keep_last=max(int(section.get("keep_last", 1) or 1), 1),
            dry_run=bool(section.get("dry_run", False)),
            on_failure=bool(section.get("on_failure", False)),
        )

    def to_dict(self) -> JSON:
        """JSON form, stored with every cleanup run."""
        return {
            "enabled": self.enabled,
            "keep_last": self.keep_last,
            "dry_run": self.dry_run,
            "on_failure": self.on_failure,
        }


# --- what the records say ----------------------------------------------------------------------


def smoke_test_passed(record: JobRecord) -> bool:
    """True when the record's smoke test ran and passed."""
    return bool(record.smoke_test is not None and record.smoke_test.passed is True)


def retired_by(record: JobRecord) -> str | None:
    """Id of the job whose cleanup retired this record's model, if any."""
    value = record.cleanup.retired_by if record.cleanup else None
    return str(value) if value else None


def tuned_model_of(record: JobRecord) -> str | None:
    """The tuned model resource name recorded by the poller."""
    value = record.tuning.tuned_model if record.tuning else None
    return str(value) if value else None


def recorded_endpoints(record: JobRecord) -> tuple[str, ...]:
    """Endpoints this service created for the job: its endpoint and its checkpoint endpoints."""
    tuning = record.tuning or TuningView()
    found: list[str] = []
    candidates = [tuning.endpoint] + [c.get("endpoint") for c in tuning.checkpoints or [] if isinstance(c, Mapping)]
    for endpoint in candidates:
        if isinstance(endpoint, str) and endpoint and endpoint not in found:
            found.append(endpoint)
    return tuple(found)


def model_short_id(model: str) -> str:
    """Last path segment of a model name (``projects/../models/123@1`` -> ``123@1``)."""
    return model.rstrip("/").rsplit("/", 1)[-1]


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetirementTarget:
    """A model to retire and the endpoints its job record says we created."""

    job_id: str
    model: str
    endpoints: tuple[str, ...]
    created_at: datetime
    dataset: str = ""
    pending_operations: tuple[tuple[str, str], ...] = ()
    """``(step key, operation name)`` left running by an earlier pass (see :func:`pending_operations_of`)."""

    def to_dict(self) -> JSON:
        """JSON form."""
        return {
            "job_id": self.job_id,
            "model": self.model,
            "endpoints": list(self.endpoints),
            "created_at": to_rfc3339(self.created_at),
            "dataset": self.dataset,
        }


def step_key(action: str, target: str) -> str:
    """How a pending step is matched on the next pass: ``<action> <target>``."""
    return f"{action} {target}"


def pending_operations_of(record: JobRecord) -> tuple[tuple[str, str], ...]:
    """Operations a record's last (real) retirement left running: ``(step key, operation name)``."""
    retirement = (record.cleanup.retirement if record.cleanup else None) or {}
    return pending_in_steps(retirement.get("steps"))


def pending_in_steps(steps: Any) -> tuple[tuple[str, str], ...]:
    """``(step key, operation name)`` of the PENDING steps in a recorded step list."""
    found: list[tuple[str, str]] = []
    for step in steps or []:
        if isinstance(step, Mapping) and step.get("result") == "pending" and step.get("operation"):
            found.append((step_key(str(step.get("action")), str(step.get("target"))), str(step["operation"])))
    return tuple(found)


@dataclass(frozen=True)
class SkippedCandidate:
    """A record of the lineage that is neither kept nor retired, and why."""

    job_id: str
    reason: str

    def to_dict(self) -> JSON:
        """JSON form."""
        return {"job_id": self.job_id, "reason": self.reason}


@dataclass(frozen=True)
class RetirementPlan:
    """What one cleanup run will do. Built by :func:`plan_retirement`, a pure function."""

    new_job_id: str
    lineage: str
    managed_by: str
    policy: CleanupPolicy
    kept: tuple[str, ...]
    """Job ids kept, newest first (the new job always among them)."""
    retire: tuple[RetirementTarget, ...]
    skipped: tuple[SkippedCandidate, ...] = ()
    superseded: bool = True
    """False for the ``on_failure`` cleanup of a job's own model (nothing supersedes it)."""

    @property
    def dry_run(self) -> bool:
        """Record what would happen, change nothing."""
        return self.policy.dry_run

    def to_dict(self) -> JSON:
        """JSON form."""
        return {
            "new_job": self.new_job_id,
            "lineage": self.lineage,
            "managed_by": self.managed_by,
            "policy": self.policy.to_dict(),
            "kept": list(self.kept),
            "retire": [t.to_dict() for t in self.retire],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def _why_not_live(candidate: JobRecord, new_job: JobRecord, new_model: str | None, deployment: str) -> str | None:
    if candidate.lineage != new_job.lineage:
        return f"belongs to lineage {candidate.lineage!r}"
    if candidate.status is not JobStatus.SUCCEEDED:
        return f"status {candidate.status.value}"
    if not smoke_test_passed(candidate):
        return "smoke test did not pass (only passing models are retired)"
    done_by = retired_by(candidate)
    if done_by:
        return f"already retired by {done_by}"
    model = tuned_model_of(candidate)
    if model is None:
        return "no tuned model recorded"
    if new_model is not None and model == new_model:
        return "same model as the job that just passed"
    # The managed-by label is not on the record (the tuning view has no labels, and submission
    # overrides any managed-by in the config's labels); the model's own label is checked right
    # before anything is deleted (CHECK_LABELS in retire_model).
    return None


def plan_retirement(
    candidates: Iterable[JobRecord], new_job: JobRecord, policy: CleanupPolicy, deployment: str
) -> RetirementPlan:
    """Decide which of the lineage's passing models to keep and which to retire.

    Live candidates (SUCCEEDED, smoke test passed, not retired yet, with a tuned model) and the
    new job are ranked newest first by ``created_at``; the first ``keep_last`` are kept, and
    the new job is kept whatever its rank. The rest are retired (after the label check at
    execution time).
    """
    new_model = tuned_model_of(new_job)
    live: list[JobRecord] = []
    skipped: list[SkippedCandidate] = []
    seen: set[str] = {new_job.id}
    for candidate in candidates:
        if candidate.id in seen:
            continue
        seen.add(candidate.id)
        reason = _why_not_live(candidate, new_job, new_model, deployment)
        if reason is None:
            live.append(candidate)
        else:
            skipped.append(SkippedCandidate(candidate.id, reason))
    ranked = sorted([*live, new_job], key=lambda r: (r.created_at, r.id), reverse=True)
    kept = ranked[: policy.keep_last]
    if new_job not in kept:
        kept.append(new_job)
    retire = [
        RetirementTarget(
            job_id=r.id,
            model=tuned_model_of(r) or "",
            endpoints=recorded_endpoints(r),
            created_at=r.created_at,
            dataset=r.dataset.uri,
            pending_operations=pending_operations_of(r),
        )
        for r in ranked
        if r not in kept
    ]
    return RetirementPlan(
        new_job_id=new_job.id,
        lineage=new_job.lineage,
        managed_by=deployment,
        policy=policy,
        kept=tuple(r.id for r in kept),
        retire=tuple(retire),
        skipped=tuple(skipped),
    )


def plan_own_model_cleanup(record: JobRecord, policy: CleanupPolicy, deployment: str) -> RetirementPlan:
    """The ``on_failure`` plan: retire the failed/cancelled job's own model, if it has one."""
    model = tuned_model_of(record)
    retire: tuple[RetirementTarget, ...] = ()
    skipped: tuple[SkippedCandidate, ...] = ()
    if model is None:
        skipped = (SkippedCandidate(record.id, "no tuned model recorded"),)
    else:
        retire = (
            RetirementTarget(
                record.id,
                model,
                recorded_endpoints(record),
                record.created_at,
                record.dataset.uri,
                pending_operations_of(record),
            ),
        )
    return RetirementPlan(
        new_job_id=record.id,
        lineage=record.lineage,
        managed_by=deployment,
        policy=policy,
        kept=(),
        retire=retire,
        skipped=skipped,
        superseded=False,
    )


def iter_lineage_candidates(jobs: JobStore, lineage: str, page_size: int = 100) -> Iterator[JobRecord]:
    """Every SUCCEEDED record of a lineage, newest first, page by page.

    Query: ``lineage == L AND status IN [SUCCEEDED] ORDER BY created_at DESC`` (an index the
    deployment declares).
    """
    token: str | None = None
    while True:
        page = jobs.query(
            JobQuery(lineage=lineage, statuses=frozenset({JobStatus.SUCCEEDED}), limit=page_size, page_token=token)
        )
        yield from page.records
        token = page.next_page_token
        if not token:
            return


# --- execution ---------------------------------------------------------------------------------


class StepResult(StrEnum):
    """How one cleanup step ended."""

    DONE = "done"
    NOT_FOUND = "not_found"
    """Already gone: counts as done."""
    DRY_RUN = "dry_run"
    """Would have been done."""
    SKIPPED = "skipped"
    FAILED = "failed"
    PENDING = "pending"
    """Its operation is still running; the next pass polls it (never sends the step again)."""


class TargetStatus(StrEnum):
    """How the retirement of one model ended."""

    RETIRED = "retired"
    ALREADY_GONE = "already_gone"
    """The model did not exist any more (deleted earlier, e.g. by a run that crashed)."""
    WOULD_RETIRE = "would_retire"
    """Dry run."""
    NOT_MANAGED = "not_managed"
    """The model lacks ``managed-by=<deployment>``: never touched."""
    FAILED = "failed"
    """A non-retryable error; recorded, retried by the next cleanup of the lineage."""
    PENDING = "pending"
    """An undeploy/delete operation is still running: not deleted yet, resumed by the next pass."""

    @property
    def announces_deletion(self) -> bool:
        """True when a ``model.deleted`` event describes this outcome."""
        return self in {TargetStatus.RETIRED, TargetStatus.ALREADY_GONE, TargetStatus.WOULD_RETIRE}


class Action(StrEnum):
    """The cleanup steps, in execution order."""

    CHECK_LABELS = "check_labels"
    UNDEPLOY = "undeploy"
    DELETE_ENDPOINT = "delete_endpoint"
    DELETE_MODEL = "delete_model"


@dataclass(frozen=True)
class CleanupStep:
    """One recorded step."""

    action: Action
    target: str
    result: StepResult
    detail: str = ""
    operation: str = ""
    """The long-running operation of a PENDING step."""

    def to_dict(self) -> JSON:
        """JSON form."""
        data: JSON = {
            "action": self.action.value,
            "target": self.target,
            "result": self.result.value,
            "detail": self.detail,
        }
        if self.operation:
            data["operation"] = self.operation
        return data


@dataclass(frozen=True)
class TargetOutcome:
    """The steps taken for one model and where it ended."""

    target: RetirementTarget
    status: TargetStatus
    steps: tuple[CleanupStep, ...]

    @property
    def endpoints(self) -> list[str]:
        """Endpoints the model was (or would be) undeployed from or deleted, in step order."""
        found: list[str] = []
        for step in self.steps:
            if step.action is Action.UNDEPLOY:
                endpoint = step.target.split("#", 1)[0]
            elif step.action is Action.DELETE_ENDPOINT:
                endpoint = step.target
            else:
                continue
            if step.result is not StepResult.SKIPPED and endpoint not in found:
                found.append(endpoint)
        return found

    def to_dict(self) -> JSON:
        """JSON form."""
        return {
            **self.target.to_dict(),
            "status": self.status.value,
            "steps": [s.to_dict() for s in self.steps],
        }


def _is_failed_precondition(exc: BaseException) -> bool:
    return isinstance(exc, InvalidArgumentError) and exc.status == "FAILED_PRECONDITION"


@dataclass(frozen=True)
class OperationWait:
    """How long one pass waits for a long-running operation before leaving its step pending.

    Polls back off from ``interval_seconds`` doubling up to ``max_interval_seconds``: the
    defaults wait about a minute per operation (1+2+4+8+10*5 s), well inside the completion
    function's 540 s, and an operation that takes longer is resumed by the next pass.
    """

    polls: int = 10
    interval_seconds: float = 1.0
    max_interval_seconds: float = 10.0
    pass_budget_seconds: float = 240.0
    """All waiting of one cleanup pass together: past it, every operation still running is left
    pending at once, so a pass with many models ends well inside the function's 540 s (a pass
    killed by the timeout would lose the operation names it had not recorded yet)."""

    def delay(self, poll: int) -> float:
        """Seconds to wait before poll number ``poll`` (1-based; poll 0 is immediate)."""
        return float(min(self.interval_seconds * 2 ** (poll - 1), self.max_interval_seconds))


class _Pending(Exception):
    """An operation that has not finished within this pass's wait."""

    def __init__(self, action: Action, target: str, operation: str) -> None:
        super().__init__(operation)
        self.action = action
        self.target = target
        self.operation = operation


def traffic_split_without(split: Mapping[str, int], remaining: Iterable[str], leaving: str) -> dict[str, int] | None:
    """The endpoint's split once ``leaving`` is undeployed: its share goes to ``remaining`` pro rata.

    None when no split is needed (the model carries no traffic, or nothing remains). Integer
    percentages that sum to 100 (largest remainders get the rounding).

    >>> traffic_split_without({"a": 50, "b": 30, "c": 20}, ["b", "c"], "a")
    {'b': 60, 'c': 40}
    >>> traffic_split_without({"a": 100}, ["b", "c"], "a")
    {'b': 50, 'c': 50}
    """
    others = [d for d in dict.fromkeys(remaining) if d != leaving]
    if not others or int(split.get(leaving, 0)) <= 0:
        return None
    weights = {d: max(int(split.get(d, 0)), 0) for d in others}
    total = sum(weights.values())
    if total == 0:
        weights = dict.fromkeys(others, 1)
        total = len(others)
    exact = {d: 100 * w / total for d, w in weights.items()}
    result = {d: int(v) for d, v in exact.items()}
    short = 100 - sum(result.values())
    for d in sorted(others, key=lambda d: (exact[d] - result[d], weights[d]), reverse=True)[:short]:
        result[d] += 1
    return result


@dataclass
class _Run:
    tuning: TuningBackend
    retry: RetryPolicy
    sleep: Sleep
    dry_run: bool
    wait: OperationWait = field(default_factory=OperationWait)
    pending: dict[str, str] = field(default_factory=dict)
    deadline: float = float("inf")
    """``monotonic()`` after which operations are not waited for any more (the pass budget)."""
    monotonic: Callable[[], float] = time.monotonic
    steps: list[CleanupStep] = field(default_factory=list)

    def call(self, operation: Callable[[], T]) -> T:
        # The one retry layer of every cleanup call (the adapter sends each of them once).
        return call_with_retries(operation, retry=self.retry, sleep=self.sleep)

    def step(self, action: Action, target: str, result: StepResult, detail: str = "") -> None:
        self.steps.append(CleanupStep(action, target, result, detail))

    def mutate(self, action: Action, target: str, send: Callable[[], str | None]) -> None:
        """Send one mutation (or resume its recorded operation) and wait for its operation.

        Raises the mutation's or the operation's error, or :class:`_Pending` when it still runs.
        """
        operation = self.pending.pop(step_key(action.value, target), None)
        if operation is not None and not self._finished(action, target, operation, resumed=True):
            operation = None  # the recorded operation is unknown now: the resource's state decides
        if operation is None:
            operation = self.call(send)
            if operation is not None:
                self._finished(action, target, operation, resumed=False)

    def _finished(self, action: Action, target: str, operation: str, *, resumed: bool) -> bool:
        """Poll until done (True). False only for a resumed operation Vertex no longer knows."""
        for poll in range(max(self.wait.polls, 1)):
            if poll:
                if self.monotonic() + self.wait.delay(poll) > self.deadline:
                    break
                self.sleep(self.wait.delay(poll))
            try:
                if self.call(lambda: self.tuning.get_operation(operation)):
                    return True
            except NotFoundError:
                if resumed:
                    return False
                raise
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                # Polling keeps failing: keep the operation's name so the next pass polls it
                # instead of sending the mutation a second time.
                raise _Pending(action, target, operation) from exc
        raise _Pending(action, target, operation)

    def manages(self, info: ModelInfo, managed_by: str) -> bool:
        """Record the label check; True when the model carries ``managed-by=<managed_by>``."""
        label = info.labels.get(MANAGED_BY_LABEL)
        if label != managed_by:
            detail = f"model labelled {MANAGED_BY_LABEL}={label!r}, this deployment is {managed_by!r}: not touched"
            self.step(Action.CHECK_LABELS, info.name, StepResult.SKIPPED, detail)
            return False
        self.step(Action.CHECK_LABELS, info.name, StepResult.DONE, f"{MANAGED_BY_LABEL}={managed_by}")
        return True

    def still_running(self, pending: _Pending, detail: str = "operation still running; the next pass polls it") -> None:
        """Record an operation left running as a PENDING step carrying its name."""
        self.steps.append(CleanupStep(pending.action, pending.target, StepResult.PENDING, detail, pending.operation))

    def traffic_split(self, ref: DeployedModelRef) -> dict[str, int] | None:
        try:
            endpoint = self.call(lambda: self.tuning.get_endpoint(ref.endpoint))
        except NotFoundError:
            return None  # the undeploy answers NotFound too
        return traffic_split_without(endpoint.traffic_split, endpoint.deployed_model_ids, ref.deployed_model_id)

    def undeploy_all(self, info: ModelInfo) -> None:
        for ref in info.deployments:
            label = f"{ref.endpoint}#{ref.deployed_model_id}"
            if self.dry_run:
                self.step(Action.UNDEPLOY, label, StepResult.DRY_RUN)
                continue
            detail = ""

            def send(ref: DeployedModelRef = ref) -> str | None:
                nonlocal detail
                split = self.traffic_split(ref)
                if split:
                    detail = f"traffic split after undeploy: {split}"
                return self.tuning.undeploy_model(ref.endpoint, ref.deployed_model_id, split)

            try:
                self.mutate(Action.UNDEPLOY, label, send)
            except NotFoundError:
                self.step(Action.UNDEPLOY, label, StepResult.NOT_FOUND)
            else:
                self.step(Action.UNDEPLOY, label, StepResult.DONE, detail)

    def delete_endpoint(self, endpoint: str) -> None:
        if self.dry_run:
            self.step(Action.DELETE_ENDPOINT, endpoint, StepResult.DRY_RUN)
            return
        try:
            self.mutate(Action.DELETE_ENDPOINT, endpoint, lambda: self.tuning.delete_endpoint(endpoint))
        except NotFoundError:
            self.step(Action.DELETE_ENDPOINT, endpoint, StepResult.NOT_FOUND)
        except InvalidArgumentError as exc:
            if not _is_failed_precondition(exc):
                raise
            # Someone else deployed another model there: the endpoint is not ours to remove now.
            self.step(Action.DELETE_ENDPOINT, endpoint, StepResult.SKIPPED, f"kept: {exc.message}")
        else:
            self.step(Action.DELETE_ENDPOINT, endpoint, StepResult.DONE)

    def delete_model(self, model: str) -> None:
        if self.dry_run:
            self.step(Action.DELETE_MODEL, model, StepResult.DRY_RUN)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                self.mutate(Action.DELETE_MODEL, model, lambda: self.tuning.delete_model(model))
            except NotFoundError:
                self.step(Action.DELETE_MODEL, model, StepResult.NOT_FOUND)
                return
            except InvalidArgumentError as exc:
                # Still deployed: a deployment appeared meanwhile. Undeploy whatever is there now
                # and try again, a bounded number of times.
                if not _is_failed_precondition(exc) or attempt >= self.retry.attempts:
                    raise
                self.sleep(self.retry.backoff(attempt))
                try:
                    self.undeploy_all(self.call(lambda: self.tuning.get_model(model)))
                except NotFoundError:
                    self.step(Action.DELETE_MODEL, model, StepResult.NOT_FOUND)
                    return
                continue
            self.step(Action.DELETE_MODEL, model, StepResult.DONE)
            return


def retire_model(
    target: RetirementTarget,
    *,
    tuning: TuningBackend,
    managed_by: str,
    dry_run: bool,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    wait: OperationWait | None = None,
    deadline: float = float("inf"),
    monotonic: Callable[[], float] = time.monotonic,
) -> TargetOutcome:
    """Check the label, undeploy everywhere, delete our endpoints, delete the model.

    Retryable errors propagate (after ``retry.attempts`` tries of the one call that failed);
    an operation still running after ``wait`` ends the target PENDING (its name in the step);
    any other error ends this model's retirement as FAILED with the error recorded.
    """
    run = _Run(
        tuning=tuning,
        retry=retry or RetryPolicy(),
        sleep=sleep,
        dry_run=dry_run,
        wait=wait or OperationWait(),
        pending=dict(target.pending_operations),
        deadline=deadline,
        monotonic=monotonic,
    )
    action = Action.CHECK_LABELS
    try:
        try:
            info = run.call(lambda: tuning.get_model(target.model))
        except NotFoundError:
            run.step(Action.CHECK_LABELS, target.model, StepResult.NOT_FOUND, "model already deleted")
            # The model is gone; finish removing the endpoints our record names (a crashed run
            # deletes them before the model, so normally they are gone too).
            action = Action.DELETE_ENDPOINT
            for endpoint in target.endpoints:
                run.delete_endpoint(endpoint)
            status = TargetStatus.WOULD_RETIRE if dry_run else TargetStatus.ALREADY_GONE
            return TargetOutcome(target, status, tuple(run.steps))
        if not run.manages(replace(info, name=target.model), managed_by):
            return TargetOutcome(target, TargetStatus.NOT_MANAGED, tuple(run.steps))
        action = Action.UNDEPLOY
        run.undeploy_all(info)
        action = Action.DELETE_ENDPOINT
        for endpoint in target.endpoints:
            run.delete_endpoint(endpoint)
        action = Action.DELETE_MODEL
        run.delete_model(target.model)
    except _Pending as pending:
        run.still_running(pending)
        return TargetOutcome(target, TargetStatus.PENDING, tuple(run.steps))
    except Exception as exc:
        if is_retryable(exc):
            raise
        info_error = ErrorInfo.from_exception(exc)
        run.step(action, target.model, StepResult.FAILED, f"{info_error.code}: {info_error.message}")
        return TargetOutcome(target, TargetStatus.FAILED, tuple(run.steps))
    return TargetOutcome(target, TargetStatus.WOULD_RETIRE if dry_run else TargetStatus.RETIRED, tuple(run.steps))


def undeploy_endpoints(
    model: str,
    endpoints: tuple[str, ...],
    *,
    tuning: TuningBackend,
    managed_by: str,
    dry_run: bool,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    wait: OperationWait | None = None,
    deadline: float = float("inf"),
    monotonic: Callable[[], float] = time.monotonic,
    pending: tuple[tuple[str, str], ...] = (),
) -> tuple[CleanupStep, ...]:
    """Undeploy ``model`` from ``endpoints`` only (the model stays), then delete them if empty.

    Used for the checkpoints the best-checkpoint choice did not pick (:mod:`shared.best_checkpoint`).
    Same label check, NotFound-is-done, operation and error rules as :func:`retire_model`: an
    operation still running ends the steps with a PENDING step (resume with ``pending``, see
    :func:`pending_in_steps`).
    """
    run = _Run(
        tuning=tuning,
        retry=retry or RetryPolicy(),
        sleep=sleep,
        dry_run=dry_run,
        wait=wait or OperationWait(),
        pending=dict(pending),
        deadline=deadline,
        monotonic=monotonic,
    )
    action = Action.CHECK_LABELS
    try:
        info = run.call(lambda: tuning.get_model(model))
        if not run.manages(replace(info, name=model), managed_by):
            return tuple(run.steps)
        action = Action.UNDEPLOY
        run.undeploy_all(replace(info, deployments=tuple(d for d in info.deployments if d.endpoint in endpoints)))
        action = Action.DELETE_ENDPOINT
        for endpoint in endpoints:
            run.delete_endpoint(endpoint)
    except _Pending as still:
        run.still_running(still, "operation still running; the redelivery polls it")
    except NotFoundError:
        run.step(action, model, StepResult.NOT_FOUND, "model already deleted")
    except Exception as exc:
        if is_retryable(exc):
            raise
        error = ErrorInfo.from_exception(exc)
        run.step(action, model, StepResult.FAILED, f"{error.code}: {error.message}")
    return tuple(run.steps)


def execute_plan(
    plan: RetirementPlan,
    *,
    tuning: TuningBackend,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    wait: OperationWait | None = None,
    deadline: float = float("inf"),
    monotonic: Callable[[], float] = time.monotonic,
) -> list[TargetOutcome]:
    """Retire every planned model in turn (oldest last is fine: each is independent).

    Waiting for operations stops at ``deadline`` (the invocation's) or after the pass budget,
    whichever comes first.
    """
    wait = wait or OperationWait()
    deadline = min(deadline, monotonic() + wait.pass_budget_seconds)
    return [
        retire_model(
            target,
            tuning=tuning,
            managed_by=plan.managed_by,
            dry_run=plan.dry_run,
            retry=retry,
            sleep=sleep,
            wait=wait,
            deadline=deadline,
            monotonic=monotonic,
        )
        for target in plan.retire
    ]


# --- recording ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupReport:
    """One cleanup run: the plan and what happened to each model."""

    plan: RetirementPlan
    outcomes: tuple[TargetOutcome, ...]
    event_id: str
    completed_at: datetime

    @property
    def retired_models(self) -> list[str]:
        """Models now gone (retired or already gone); empty in a dry run."""
        return [o.target.model for o in self.outcomes if o.status in {TargetStatus.RETIRED, TargetStatus.ALREADY_GONE}]

    def to_dict(self) -> JSON:
        """The ``cleanup.run`` stored on the job that triggered it."""
        return {
            "event_id": self.event_id,
            "dry_run": self.plan.dry_run,
            "managed_by": self.plan.managed_by,
            "policy": self.plan.policy.to_dict(),
            "kept": list(self.plan.kept),
            "targets": [o.to_dict() for o in self.outcomes],
            "skipped": [s.to_dict() for s in self.plan.skipped],
            "retired_models": self.retired_models,
            "completed_at": to_rfc3339(self.completed_at),
        }


def model_deleted_event_id(job_id: str, model: str) -> str:
    """``<job id>:model.deleted:<model short id>`` (deterministic: redeliveries collapse)."""
    return f"{job_id}:{EventType.MODEL_DELETED.value}:{model_short_id(model)}"


def model_deleted_data(outcome: TargetOutcome, plan: RetirementPlan, dataset: DatasetRef) -> JSON:
    """Data fields of one ``model.deleted`` event (see the event's JSON Schema)."""
    return {
        "dataset": dataset.uri,
        "model": outcome.target.model,
        "endpoints": outcome.endpoints,
        "dry_run": plan.dry_run,
        "superseded_by": plan.new_job_id if plan.superseded else None,
        "retired_job": outcome.target.job_id,
        "retired_dataset": outcome.target.dataset,
        "status": outcome.status.value,
    }


def _record_on_new_job(report: CleanupReport, at: datetime) -> Callable[[JobRecord], JobRecord | None]:
    def mutate(record: JobRecord) -> JobRecord | None:
        cleanup = record.cleanup or CleanupRecord()
        previous = cleanup.run or {}
        previous_pending = any(
            isinstance(t, Mapping) and t.get("status") == TargetStatus.PENDING.value
            for t in previous.get("targets") or []
        )
        if previous.get("event_id") == report.event_id and not previous_pending:
            return None  # recorded by an earlier attempt (one that left nothing pending)
        cleanup = replace(cleanup, run=report.to_dict())
        updated = record.with_changes(at, cleanup=cleanup)
        for outcome in report.outcomes:
            if outcome.status.announces_deletion:
                updated = stage_event(
                    updated,
                    EventType.MODEL_DELETED,
                    model_deleted_data(outcome, report.plan, record.dataset),
                    event_id=model_deleted_event_id(record.id, outcome.target.model),
                )
        return updated

    return mutate


def _record_on_target(
    outcome: TargetOutcome, report: CleanupReport, at: datetime
) -> Callable[[JobRecord], JobRecord | None]:
    def mutate(record: JobRecord) -> JobRecord | None:
        cleanup = record.cleanup or CleanupRecord()
        entry = {
            "by": report.plan.new_job_id,
            "event_id": report.event_id,
            "status": outcome.status.value,
            "model": outcome.target.model,
            "steps": [s.to_dict() for s in outcome.steps],
            "at": to_rfc3339(at),
        }
        if not report.plan.dry_run:
            if cleanup.retired_by and cleanup.retired_by != report.plan.new_job_id:
                return None  # another job's cleanup already retired it: keep its record
            if outcome.status in {TargetStatus.RETIRED, TargetStatus.ALREADY_GONE} and report.plan.superseded:
                cleanup = replace(cleanup, retired_by=report.plan.new_job_id)
        previous = (cleanup.dry_run_retirement if report.plan.dry_run else cleanup.retirement) or {}
        if previous.get("event_id") == report.event_id and (
            previous.get("status") == TargetStatus.RETIRED.value
            or (previous.get("status") == entry["status"] and entry["status"] != TargetStatus.PENDING.value)
        ):
            return None  # an earlier attempt of this cleanup recorded it (its "retired" beats "already_gone")
        if report.plan.dry_run:
            cleanup = replace(cleanup, dry_run_retirement=entry)
        else:
            cleanup = replace(cleanup, retirement=entry)
        return record.with_changes(at, cleanup=cleanup)

    return mutate


def record_cleanup(report: CleanupReport, *, jobs: JobStore, clock: Clock) -> None:
    """Write the outcome onto every retired job's record, then the run (and events) onto the new job's."""
    at = clock()
    for outcome in report.outcomes:
        try:
            jobs.update(outcome.target.job_id, _record_on_target(outcome, report, at))
        except RecordNotFoundError:
            continue  # the old record was deleted by an operator; the new job's record keeps the steps
    jobs.update(report.plan.new_job_id, _record_on_new_job(report, at))


def run_cleanup(
    plan: RetirementPlan,
    *,
    jobs: JobStore,
    tuning: TuningBackend,
    clock: Clock,
    event_id: str,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    wait: OperationWait | None = None,
    deadline: float = float("inf"),
    monotonic: Callable[[], float] = time.monotonic,
) -> CleanupReport:
    """Execute a plan and record it (steps on every record, ``model.deleted`` staged on the new job).

    Raises CleanupPendingError (retryable) after recording when an operation is still running,
    so the event is redelivered and the next pass resumes from the recorded operation names.
    """
    outcomes = execute_plan(
        plan, tuning=tuning, retry=retry, sleep=sleep, wait=wait, deadline=deadline, monotonic=monotonic
    )
    report = CleanupReport(plan=plan, outcomes=tuple(outcomes), event_id=event_id, completed_at=clock())
    record_cleanup(report, jobs=jobs, clock=clock)
    pending = tuple(
        step.operation
        for outcome in report.outcomes
        if outcome.status is TargetStatus.PENDING
        for step in outcome.steps
        if step.result is StepResult.PENDING
    )
    if pending:
        raise CleanupPendingError(plan.new_job_id, pending)
    return report
