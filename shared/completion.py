"""What happens when a tuning job ends: smoke test, results, ``smoke_test.*``, retiring old models.

Entry point: :func:`handle_completion`, called by ``functions/completion.py`` for every message
on the events topic. Completion events (``job.succeeded|failed|cancelled|expired``) are acted on;
every other type is IGNORED.

``job.succeeded``, step by step (each step is a :class:`CompletionStep`; ``after_step`` lets
tests inject crashes between them):

1. CLAIMED   - ``effects/<event_id>:smoke_test`` acquired with a lease (a live lease held by
               someone else -> ClaimInProgressError, retryable; a completed claim -> skip to 4).
2. PROMPTED  - prompts run on the tuned (and checkpoint) endpoints, optionally the base model;
               ``smoke_test.json`` (+ ``rouge.png`` with ``compare_base``) written under
               ``<reports_prefix><lineage>/<name>/<generation>/``.
3. RECORDED  - one ``jobs.update``: ``record.smoke_test`` + the staged ``smoke_test.passed|failed``
               event (id ``<job_id>:smoke_test``); then the claim is completed.
4. PUBLISHED - the outbox is published (``shared.outbox.publish_pending``).
5. CLEANED   - only when the test passed and ``cleanup.enabled``: ``effects/<event_id>:cleanup``
               claimed, superseded models retired (:mod:`shared.cleanup`), ``model.deleted``
               events staged on this job's record and published.

With ``gate.best_checkpoint`` (:mod:`shared.best_checkpoint`), PROMPTED also scores every
checkpoint endpoint and sets the best as the model's default checkpoint (before RECORDED, so a
redelivery after RECORDED never repeats it); with ``cleanup.enabled`` the other checkpoint
endpoints are undeployed under ``effects/<event_id>:checkpoints`` after PUBLISHED.

A crash after RECORDED is resumed by the redelivery from the record (no prompt runs twice); a
crash before it re-runs the prompts once the lease expires (nothing was recorded yet).

Time budget: an event-driven function is stopped after 540 s and its event redelivered, so a
smoke test that outlives one invocation would start over forever. tuning.yaml validation
rejects configs whose worst case exceeds the budget (:func:`shared.tuning_config.smoke_time_budget_problem`);
at run time PROMPTED only starts a call whose worst case still fits ``time_budget_seconds``.
When the budget runs out, the calls made so far go to ``record.smoke_progress`` (keyed by this
event id), the claim is released and :class:`~shared.errors.SmokeTestDeadlineError`
(retryable) asks for the redelivery, which judges the recorded calls again instead of sending
them again and continues with the rest.

``job.failed|cancelled|expired``: the reason is recorded in ``record.cleanup["skipped"]`` and
nothing is published, unless ``cleanup.on_failure`` is on: then the job's own model (if any)
is retired under the ``<event_id>:cleanup`` claim.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.best_checkpoint import CheckpointChoice, best_answers, other_endpoints, score_checkpoints
from shared.budget import record_actual_cost
from shared.claims import DEFAULT_LEASE_SECONDS
from shared.cleanup import (
    CleanupPolicy,
    CleanupReport,
    OperationWait,
    RetirementPlan,
    StepResult,
    iter_lineage_candidates,
    pending_in_steps,
    plan_own_model_cleanup,
    plan_retirement,
    run_cleanup,
    tuned_model_of,
    undeploy_endpoints,
)
from shared.completion_message import CompletionMessage
from shared.errors import (
    ClaimInProgressError,
    CleanupPendingError,
    ErrorInfo,
    SmokeTestDeadlineError,
    is_retryable,
)
from shared.events import EventType
from shared.gate import (
    GATE_EVENT_FOR_VERDICT,
    GateOptions,
    Verdict,
    find_live,
    gate_event_data,
    gate_verdict_of,
    run_gate,
)
from shared.gate import REPORT_FILE as GATE_REPORT_FILE
from shared.logs import log_event
from shared.outbox import publish_pending, stage_event
from shared.ports import (
    BlobStore,
    Clock,
    EffectClaim,
    EffectState,
    JobStore,
    Publisher,
    SpendLedger,
    TuningBackend,
)
from shared.record_parts import CleanupRecord, GateRecord, SmokeProgress, SmokeTestRecord, TuningView, part_dict
from shared.records import JSON, JobRecord, to_rfc3339
from shared.retry import RetryPolicy, Sleep, call_with_retries
from shared.settings import Settings
from shared.smoke_test import (
    SmokeTestOptions,
    SmokeTestResult,
    run_smoke_test,
    summary_reasons,
)
from shared.states import JobStatus
from shared.tuning_config import SMOKE_TEST_TIME_BUDGET_SECONDS

REPORT_FILE = "smoke_test.json"
CHART_FILE = "rouge.png"


class CompletionStep(StrEnum):
    """Checkpoints of :func:`handle_completion`, reported to ``after_step``."""

    CLAIMED = "CLAIMED"
    PROMPTED = "PROMPTED"
    RECORDED = "RECORDED"
    PUBLISHED = "PUBLISHED"
    CLEANED = "CLEANED"


class OutcomeKind(StrEnum):
    """What the entry point does with the message: all three acknowledge it."""

    DONE = "DONE"
    """Work was done (or finished) by this invocation."""
    DUPLICATE = "DUPLICATE"
    """Everything had been done before: a redelivery."""
    IGNORED = "IGNORED"
    """Not a completion event, or no record / a record that does not match."""


@dataclass(frozen=True)
class CompletionOutcome:
    """The result of one invocation (logged by the entry point)."""

    kind: OutcomeKind
    event_type: str
    job_id: str = ""
    event_id: str = ""
    detail: str = ""
    smoke_test_passed: bool | None = None
    retired_models: tuple[str, ...] = ()
    published: int = 0

    def to_log(self) -> JSON:
        """Fields for the structured log line."""
        return {
            "outcome": self.kind.value,
            "event_type": self.event_type,
            "job_id": self.job_id or None,
            "event_id": self.event_id or None,
            "detail": self.detail or None,
            "smoke_test_passed": self.smoke_test_passed,
            "retired_models": list(self.retired_models) or None,
            "published": self.published,
        }


@dataclass(frozen=True)
class CompletionOptions:
    """Deployment settings the completion handler needs (see :class:`shared.settings.Settings`)."""

    deployment: str
    """Value of the ``managed-by`` label this deployment may delete."""
    bucket: str
    """Where reports are written."""
    reports_prefix: str = "reports/"
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    operation_wait: OperationWait = field(default_factory=OperationWait)
    """How long one cleanup pass waits for an undeploy/delete operation before leaving it pending."""
    time_budget_seconds: float = SMOKE_TEST_TIME_BUDGET_SECONDS
    """Seconds one invocation may spend on smoke-test calls (540 s function limit - reserve)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CompletionOptions:
        """The deployment's values (``SFTPILOT_DEPLOYMENT``, ``_BUCKET``, ``_REPORTS_PREFIX``, ``_LEASE_SECONDS``)."""
        return cls(
            deployment=settings.deployment,
            bucket=settings.bucket,
            reports_prefix=settings.reports_prefix,
            lease_seconds=float(settings.lease_seconds),
        )


AfterStep = Callable[[CompletionStep], None]


@dataclass
class _Context:
    message: CompletionMessage
    jobs: JobStore
    tuning: TuningBackend
    blobs: BlobStore
    publisher: Publisher
    clock: Clock
    options: CompletionOptions
    owner: str
    after_step: AfterStep
    sleep: Sleep
    monotonic: Callable[[], float] = time.monotonic
    deadline: float = float("inf")
    """``monotonic()`` value by which the smoke-test calls must be done."""
    spend: SpendLedger | None = None

    def claim(self, effect_id: str) -> EffectClaim:
        claim = self.jobs.acquire_effect(effect_id, self.owner, self.options.lease_seconds, self.clock())
        if claim.state is EffectState.IN_PROGRESS:
            raise ClaimInProgressError(effect_id, claim.owner, to_rfc3339(claim.expires_at) or "?")
        return claim

    def publish(self, job_id: str) -> int:
        return publish_pending(job_id, jobs=self.jobs, publisher=self.publisher, clock=self.clock, owner=self.owner)


def handle_completion(
    message: CompletionMessage,
    *,
    jobs: JobStore,
    tuning: TuningBackend,
    blobs: BlobStore,
    publisher: Publisher,
    clock: Clock,
    options: CompletionOptions,
    owner: str,
    after_step: AfterStep | None = None,
    sleep: Sleep = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    spend: SpendLedger | None = None,
) -> CompletionOutcome:
    """Act on one event from the topic (see the module docstring for the steps).

    ``monotonic`` is the clock of the time budget (injected by tests); the budget starts now.

    Raises retryable errors (claim held elsewhere, transient backend/store/publish failures)
    so the entry point lets Pub/Sub redeliver; every retryable failure gives its claim back
    first. Returns an outcome for everything else.
    """
    if not message.is_handled:
        return CompletionOutcome(
            OutcomeKind.IGNORED, message.event_type, message.job_id, message.event_id, "not a completion event"
        )
    record = jobs.get(message.job_id)
    if record is None:
        return CompletionOutcome(
            OutcomeKind.IGNORED, message.event_type, message.job_id, message.event_id, "no job record with this id"
        )
    started = monotonic()
    ctx = _Context(
        message,
        jobs,
        tuning,
        blobs,
        publisher,
        clock,
        options,
        owner,
        after_step or (lambda _step: None),
        sleep,
        monotonic,
        started + options.time_budget_seconds,
        spend,
    )
    if message.event_type == EventType.JOB_SUCCEEDED.value:
        return _handle_succeeded(ctx, record)
    return _handle_unsuccessful(ctx, record)


# --- job.succeeded -----------------------------------------------------------------------------


def _handle_succeeded(ctx: _Context, record: JobRecord) -> CompletionOutcome:
    message = ctx.message
    if record.status is not JobStatus.SUCCEEDED:
        return CompletionOutcome(
            OutcomeKind.IGNORED,
            message.event_type,
            record.id,
            message.event_id,
            f"record status is {record.status.value}, not SUCCEEDED",
        )
    record_actual_cost(record, jobs=ctx.jobs, ledger=ctx.spend, at=ctx.clock())  # tuningDataStats vs estimate
    smoke_options = SmokeTestOptions.from_config(record.config)
    policy = CleanupPolicy.from_config(record.config)
    gate = GateOptions.from_config(record.config)
    if not smoke_options.enabled:
        changed = _record_smoke_test_disabled(ctx, record)
        return CompletionOutcome(
            OutcomeKind.DONE if changed else OutcomeKind.DUPLICATE,
            message.event_type,
            record.id,
            message.event_id,
            "smoke test disabled in tuning.yaml (cleanup needs a passing smoke test: not run)",
        )

    smoke_effect = f"{message.event_id}:smoke_test"
    claim = ctx.claim(smoke_effect)
    did_work = False
    if claim.state is EffectState.ACQUIRED:
        ctx.after_step(CompletionStep.CLAIMED)
        try:
            passed = _smoke_test_under_claim(ctx, record.id, smoke_options, policy, gate)
            ctx.jobs.complete_effect(smoke_effect, ctx.owner, {"passed": passed, "job_id": record.id})
        except Exception as exc:
            _release_if_retryable(ctx, smoke_effect, exc)
            raise
        did_work = True
    else:
        passed = bool((claim.result or {}).get("passed"))

    published = ctx.publish(record.id)
    ctx.after_step(CompletionStep.PUBLISHED)

    retired: tuple[str, ...] = ()
    detail = f"smoke test {'passed' if passed else 'failed'}"
    retiring_itself = gate.enabled and gate.on_reject == "retire"
    verdict = gate_verdict_of(ctx.jobs.get(record.id) or record) if gate.enabled else None
    if gate.best_checkpoint and policy.enabled and not (retiring_itself and verdict is not Verdict.PROMOTED):
        did_work = _undeploy_other_checkpoints(ctx, record.id, policy) or did_work
    if verdict is not None:
        detail += f"; gate {verdict.value}"
    if gate.enabled and verdict is not Verdict.PROMOTED:
        # Only a promotion retires predecessors; a held/rejected model may retire itself.
        if gate.on_reject == "retire" and verdict is not None:
            cleaned, report = _cleanup_under_claim(
                ctx, lambda: plan_own_model_cleanup(record, policy, ctx.options.deployment)
            )
            did_work = did_work or cleaned
            retired = tuple(report.retired_models) if report else ()
            published += ctx.publish(record.id)
            detail += "; own model retired (gate.on_reject: retire)"
    elif passed and policy.enabled:
        current = ctx.jobs.get(record.id) or record
        candidates: Iterable[JobRecord] = (
            _never_the_live_model(ctx.jobs, current)
            if gate.enabled
            else iter_lineage_candidates(ctx.jobs, current.lineage)
        )
        cleaned, report = _cleanup_under_claim(
            ctx, lambda: plan_retirement(candidates, current, policy, ctx.options.deployment)
        )
        did_work = did_work or cleaned
        if report is not None:
            retired = tuple(report.retired_models)
            detail += f"; cleanup {'dry run' if policy.dry_run else 'done'}: {len(report.outcomes)} model(s)"
        published += ctx.publish(record.id)
        ctx.after_step(CompletionStep.CLEANED)
    elif policy.enabled:
        detail += "; cleanup skipped (older models kept)"
    kind = OutcomeKind.DONE if did_work or published else OutcomeKind.DUPLICATE
    return CompletionOutcome(kind, message.event_type, record.id, message.event_id, detail, passed, retired, published)


def _never_the_live_model(jobs: JobStore, record: JobRecord) -> list[JobRecord]:
    """The lineage's candidates for retirement minus a live model other than ``record``.

    Normally the promoted ``record`` is the live model; if a newer promoted job exists (two
    completions raced), that one is live and is kept whatever the cleanup policy says.
    """
    candidates = list(iter_lineage_candidates(jobs, record.lineage))
    live = find_live(candidates)
    return [c for c in candidates if live is None or c.id != live.id or c.id == record.id]


def _release_if_retryable(ctx: _Context, effect_id: str, exc: BaseException) -> None:
    # A retryable failure gives the claim back so the redelivery can start at once. Anything
    # else (a crash, a bug) keeps the lease: the work is taken over when it expires.
    if is_retryable(exc):
        ctx.jobs.release_effect(effect_id, ctx.owner)


def _update_and_tell(jobs: JobStore, job_id: str, mutate: Callable[[JobRecord], JobRecord | None]) -> bool:
    """``jobs.update`` that reports whether the (last run of the) mutation changed anything."""
    changed = [False]

    def tracked(current: JobRecord) -> JobRecord | None:
        updated = mutate(current)
        changed[0] = updated is not None and updated != current
        return updated

    jobs.update(job_id, tracked)
    return changed[0]


def _record_smoke_test_disabled(ctx: _Context, record: JobRecord) -> bool:
    event_id = ctx.message.event_id
    at = ctx.clock()

    def mutate(current: JobRecord) -> JobRecord | None:
        if current.smoke_test is not None and current.smoke_test.event_id == event_id:
            return None
        return current.with_changes(
            at, smoke_test=SmokeTestRecord(event_id=event_id, skipped="smoke_test.enabled is false", passed=None)
        )

    return _update_and_tell(ctx.jobs, record.id, mutate)


def _smoke_test_under_claim(
    ctx: _Context, job_id: str, options: SmokeTestOptions, policy: CleanupPolicy, gate: GateOptions
) -> bool:
    """Run (or resume) the smoke test; returns whether it passed. The claim is held."""
    record = ctx.jobs.get(job_id)
    if record is None:  # pragma: no cover - records are never deleted by sftpilot
        raise RuntimeError(f"job record {job_id} disappeared")
    previous = record.smoke_test or SmokeTestRecord()
    if previous.event_id == ctx.message.event_id and isinstance(previous.passed, bool):
        # A crash after RECORDED: the results and the staged event are on the record already.
        ctx.after_step(CompletionStep.RECORDED)
        return bool(previous.passed)

    progress = record.smoke_progress
    earlier = progress.calls if progress and progress.event_id == ctx.message.event_id else None
    result = run_smoke_test(
        record,
        options=options,
        tuning=ctx.tuning,
        blobs=ctx.blobs,
        retry=ctx.options.retry,
        sleep=ctx.sleep,
        deadline=ctx.deadline,
        monotonic=ctx.monotonic,
        done={str(call.get("key")): call for call in earlier or [] if isinstance(call, dict)},
    )
    if result.unfinished:
        _keep_progress(ctx, job_id, result)
    tested_at = ctx.clock()
    ctx.after_step(CompletionStep.PROMPTED)
    report_uri, chart_uri, notes = _write_reports(ctx, record, result, options, tested_at)
    smoke = _smoke_test_field(ctx.message.event_id, result, report_uri, chart_uri, notes, tested_at)
    data = _smoke_event_data(record, result, report_uri, chart_uri)
    event_type = EventType.SMOKE_TEST_PASSED if result.passed else EventType.SMOKE_TEST_FAILED
    event_id = f"{record.id}:smoke_test"
    gate_field: GateRecord | None = None
    gate_event: tuple[EventType, JSON] | None = None
    choice = _choose_checkpoint(ctx, record, result, options, gate) if gate.best_checkpoint else None
    if gate.enabled:
        gate_field, gate_event = _run_gate(ctx, record, result, options, gate, tested_at, choice)
    elif choice is not None:
        report_uri, note = _write_gate_report(ctx, record, {"checkpoints": choice[0]})
        gate_field = GateRecord.from_dict(
            {"checkpoints": choice[0], "report_uri": report_uri, "notes": [note] if note else []}
        )

    def mutate(current: JobRecord) -> JobRecord | None:
        if current.smoke_test is not None and current.smoke_test.event_id == ctx.message.event_id:
            return None
        changes: dict[str, Any] = {"smoke_test": smoke, "smoke_progress": None}
        if gate_field is not None:
            changes["gate"] = gate_field
        if policy.enabled and not result.passed:
            changes["cleanup"] = replace(
                current.cleanup or CleanupRecord(),
                skipped="smoke test failed: older models of the lineage are kept",
                event_id=ctx.message.event_id,
            )
        updated = stage_event(current.with_changes(tested_at, **changes), event_type, data, event_id=event_id)
        if gate_event is not None:
            updated = stage_event(updated, gate_event[0], gate_event[1], event_id=f"{current.id}:gate")
        return updated

    ctx.jobs.update(job_id, mutate)
    ctx.after_step(CompletionStep.RECORDED)
    log_event(
        "INFO",
        "smoke test recorded",
        job_id=job_id,
        lineage=record.lineage,
        passed=result.passed,
        prompts_total=result.prompts_total,
        prompts_passed=result.prompts_passed,
        prompt_source=result.selection.source.value,
    )
    return result.passed


def _keep_progress(ctx: _Context, job_id: str, result: SmokeTestResult) -> None:
    """Out of time: store the calls made so far and ask for the redelivery (never returns)."""
    saved_at = ctx.clock()
    progress: JSON = {**result.progress(), "event_id": ctx.message.event_id, "saved_at": to_rfc3339(saved_at)}

    def mutate(current: JobRecord) -> JobRecord | None:
        if current.smoke_test and current.smoke_test.event_id == ctx.message.event_id:
            return None  # someone finished it meanwhile
        return current.with_changes(saved_at, smoke_progress=SmokeProgress.from_dict(progress))

    ctx.jobs.update(job_id, mutate)
    remaining = max(0.0, ctx.deadline - ctx.monotonic())
    log_event(
        "WARNING",
        "smoke test paused at the time budget; the redelivery continues",
        job_id=job_id,
        done=progress["done"],
        total=progress["total"],
        remaining_seconds=round(remaining, 1),
    )
    raise SmokeTestDeadlineError(int(progress["done"]), int(progress["total"]), remaining)


def _choose_checkpoint(
    ctx: _Context, record: JobRecord, smoke: SmokeTestResult, options: SmokeTestOptions, gate: GateOptions
) -> tuple[JSON, CheckpointChoice]:
    """Score the checkpoints, set the best as the model's default; the ``gate.checkpoints`` value."""
    choice = score_checkpoints(
        record, smoke, options=gate, smoke_options=options, tuning=ctx.tuning, retry=ctx.options.retry, sleep=ctx.sleep
    )
    value: JSON = {**choice.to_dict(), "default_checkpoint_set": False}
    model = tuned_model_of(record)
    if choice.best is not None and model:
        checkpoint_id = choice.best.checkpoint_id
        try:
            call_with_retries(
                lambda: ctx.tuning.set_default_checkpoint(model, checkpoint_id),
                retry=ctx.options.retry,
                sleep=ctx.sleep,
            )
        except Exception as exc:
            if is_retryable(exc):
                raise
            value["error"] = ErrorInfo.from_exception(exc).message
        else:
            value["default_checkpoint_set"] = True
    log_event("INFO", "best checkpoint chosen", job_id=record.id, best=value["best"], reason=choice.reason)
    return value, choice


def _undeploy_other_checkpoints(ctx: _Context, job_id: str, policy: CleanupPolicy) -> bool:
    """Undeploy the checkpoints the choice did not pick, under ``<event_id>:checkpoints``."""
    record = ctx.jobs.get(job_id)
    model = tuned_model_of(record) if record else None
    choice = record.gate.checkpoints if record and record.gate else None
    if record is None or not model or not choice or not choice.get("default_checkpoint_set"):
        return False
    endpoints = other_endpoints(record, choice)
    if not endpoints:
        return False
    effect_id = f"{ctx.message.event_id}:checkpoints"
    claim = ctx.claim(effect_id)
    if claim.state is EffectState.COMPLETED:
        return False
    previous = (record.cleanup.checkpoints if record.cleanup else None) or {}
    try:
        steps = undeploy_endpoints(
            model,
            endpoints,
            tuning=ctx.tuning,
            managed_by=ctx.options.deployment,
            dry_run=policy.dry_run,
            retry=ctx.options.retry,
            sleep=ctx.sleep,
            wait=ctx.options.operation_wait,
            deadline=ctx.deadline,
            monotonic=ctx.monotonic,
            pending=pending_in_steps(previous.get("steps")) if previous.get("event_id") == ctx.message.event_id else (),
        )
        at = ctx.clock()
        entry: JSON = {
            "event_id": ctx.message.event_id,
            "kept": choice["best"]["endpoint"],
            "endpoints": list(endpoints),
            "dry_run": policy.dry_run,
            "steps": [s.to_dict() for s in steps],
            "at": to_rfc3339(at),
        }

        def mutate(current: JobRecord) -> JobRecord | None:
            cleanup = current.cleanup or CleanupRecord()
            if cleanup.checkpoints == entry:
                return None
            return current.with_changes(at, cleanup=replace(cleanup, checkpoints=entry))

        ctx.jobs.update(job_id, mutate)
        pending = tuple(s.operation for s in steps if s.result is StepResult.PENDING)
        if pending:
            # Recorded above; the redelivery resumes these operations instead of sending again.
            raise CleanupPendingError(job_id, pending)
        ctx.jobs.complete_effect(effect_id, ctx.owner, {"endpoints": list(endpoints)})
    except Exception as exc:
        _release_if_retryable(ctx, effect_id, exc)
        raise
    return True


def _write_gate_report(ctx: _Context, record: JobRecord, body: JSON) -> tuple[str | None, str | None]:
    """Write ``gate.json``; (its URI, None) or (None, why not) for a non-retryable failure."""
    folder = _reports_folder(ctx, record)
    try:
        data = json.dumps({"job_id": record.id, "lineage": record.lineage, **body}, indent=2, ensure_ascii=False)
        ctx.blobs.write_bytes(ctx.options.bucket, f"{folder}/{GATE_REPORT_FILE}", data.encode(), "application/json")
    except Exception as exc:
        if is_retryable(exc):
            raise
        return None, f"report not written: {ErrorInfo.from_exception(exc).message}"
    return f"gs://{ctx.options.bucket}/{folder}/{GATE_REPORT_FILE}", None


def _run_gate(
    ctx: _Context,
    record: JobRecord,
    smoke: SmokeTestResult,
    options: SmokeTestOptions,
    gate: GateOptions,
    tested_at: datetime,
    checkpoints: tuple[JSON, CheckpointChoice] | None = None,
) -> tuple[GateRecord, tuple[EventType, JSON]]:
    """Run the quality gate (:mod:`shared.gate`), write ``gate.json``; return the field and the event."""
    live = find_live(iter_lineage_candidates(ctx.jobs, record.lineage), exclude=record.id)
    tuned_endpoint = str((record.tuning.endpoint if record.tuning else None) or "")
    result = run_gate(
        record,
        smoke,
        live=live,
        options=gate,
        smoke_options=options,
        tuning=ctx.tuning,
        retry=ctx.options.retry,
        sleep=ctx.sleep,
        new_answers=best_answers(checkpoints[1], tuned_endpoint) if checkpoints else None,
    )
    extra: JSON = {"options": gate.to_dict()}
    if checkpoints is not None:
        extra["checkpoints"] = checkpoints[0]
    field_value = {**result.to_dict(), **extra, "decided_at": to_rfc3339(tested_at)}
    report_uri, note = _write_gate_report(ctx, record, {**result.to_dict(with_answers=True), **extra})
    if note:
        field_value["notes"] = [*result.notes, note]
    field_value["report_uri"] = report_uri
    log_event("INFO", "gate decided", job_id=record.id, lineage=record.lineage, verdict=result.verdict.value)
    return GateRecord.from_dict(field_value), (
        GATE_EVENT_FOR_VERDICT[result.verdict],
        gate_event_data(record, result, report_uri),
    )


def _reports_folder(ctx: _Context, record: JobRecord) -> str:
    return f"{ctx.options.reports_prefix}{record.dataset.reports_prefix}"


def _write_reports(
    ctx: _Context, record: JobRecord, result: SmokeTestResult, options: SmokeTestOptions, tested_at: datetime
) -> tuple[str | None, str | None, list[str]]:
    """Write ``smoke_test.json`` (always) and ``rouge.png`` (with ``compare_base``).

    Reports are best effort for non-retryable failures (noted on the record, the verdict
    stands); retryable failures propagate so the event is redelivered.
    """
    folder = _reports_folder(ctx, record)
    bucket = ctx.options.bucket
    notes: list[str] = []
    chart_uri: str | None = None
    scores = result.scores()
    if options.compare_base:
        if "base" in scores and "tuned" in scores:
            # Loaded here, not at module level: matplotlib is most of a cold start's imports and
            # only a base-vs-tuned comparison draws a chart.
            from shared.report_chart import build_rouge_figure, render_png  # noqa: PLC0415 - lazy: cold start

            title = f"{record.lineage}/{record.dataset.stem}: base vs tuned ROUGE"
            try:
                ordered = {"base": scores["base"], "tuned": scores["tuned"]}  # grey base, blue tuned
                scored = sum(1 for r in result.results if r.rouge is not None)
                png = render_png(build_rouge_figure(ordered, title=title, prompts=scored))
                ctx.blobs.write_bytes(bucket, f"{folder}/{CHART_FILE}", png, "image/png")
                chart_uri = f"gs://{bucket}/{folder}/{CHART_FILE}"
            except Exception as exc:
                if is_retryable(exc):
                    raise
                notes.append(f"chart not written: {ErrorInfo.from_exception(exc).message}")
        else:
            notes.append("no base-vs-tuned scores: no prompt has a reference answer")
    report = {
        "job_id": record.id,
        "dataset": record.dataset.uri,
        "lineage": record.lineage,
        "tuning_job": record.tuning_job,
        "tuned_model": record.tuning.tuned_model if record.tuning else None,
        "base_model": result.base_model,
        "passed": result.passed,
        "reasons": result.reasons,
        "prompt_source": result.selection.source.value,
        "notes": [*result.selection.notes, *notes],
        "prompts_total": result.prompts_total,
        "prompts_passed": result.prompts_passed,
        "results": [r.to_dict(max_chars=None) for r in result.results],
        "base_results": [r.to_dict(max_chars=None) for r in result.base_results],
        "scores": result.scores_dict(),
        "chart_uri": chart_uri,
        "tested_at": to_rfc3339(tested_at),
    }
    report_uri: str | None = f"gs://{bucket}/{folder}/{REPORT_FILE}"
    try:
        body = json.dumps(report, indent=2, ensure_ascii=False).encode()
        ctx.blobs.write_bytes(bucket, f"{folder}/{REPORT_FILE}", body, "application/json")
    except Exception as exc:
        if is_retryable(exc):
            raise
        notes.append(f"report not written: {ErrorInfo.from_exception(exc).message}")
        report_uri = None
    return report_uri, chart_uri, notes


def _smoke_test_field(
    event_id: str,
    result: SmokeTestResult,
    report_uri: str | None,
    chart_uri: str | None,
    notes: list[str],
    tested_at: datetime,
) -> SmokeTestRecord:
    # Every key is written, also the None ones (a built part writes set sparse fields only).
    return SmokeTestRecord.from_dict(
        {
            "event_id": event_id,
            "passed": result.passed,
            "reasons": summary_reasons(result),
            "prompt_source": result.selection.source.value,
            "notes": [*result.selection.notes, *notes],
            "prompts_total": result.prompts_total,
            "prompts_passed": result.prompts_passed,
            "prompts": [r.to_dict() for r in result.results],
            "base_model": result.base_model,
            "compared_with_base": bool(result.base_results),
            "scores": result.scores_dict(),
            "report_uri": report_uri,
            "chart_uri": chart_uri,
            "tested_at": to_rfc3339(tested_at),
        }
    )


def _smoke_event_data(
    record: JobRecord, result: SmokeTestResult, report_uri: str | None, chart_uri: str | None
) -> JSON:
    tuning = record.tuning or TuningView()
    return {
        "dataset": record.dataset.uri,
        "tuning_job": record.tuning_job,
        "tuned_model": tuning.tuned_model,
        "endpoint": tuning.endpoint,
        "passed": result.passed,
        "prompts_total": result.prompts_total,
        "prompts_passed": result.prompts_passed,
        "reasons": summary_reasons(result),
        "report_uri": report_uri,
        "chart_uri": chart_uri,
        "prompt_source": result.selection.source.value,
        "scores": result.scores_dict(),
    }


def _cleanup_under_claim(ctx: _Context, make_plan: Callable[[], RetirementPlan]) -> tuple[bool, CleanupReport | None]:
    """Run one cleanup under ``<event_id>:cleanup``. Returns (work done now, report if run now)."""
    effect_id = f"{ctx.message.event_id}:cleanup"
    claim = ctx.claim(effect_id)
    if claim.state is EffectState.COMPLETED:
        return False, None
    try:
        plan = make_plan()
        report = run_cleanup(
            plan,
            jobs=ctx.jobs,
            tuning=ctx.tuning,
            clock=ctx.clock,
            event_id=ctx.message.event_id,
            retry=ctx.options.retry,
            sleep=ctx.sleep,
            wait=ctx.options.operation_wait,
            deadline=ctx.deadline,
            monotonic=ctx.monotonic,
        )
        ctx.jobs.complete_effect(
            effect_id,
            ctx.owner,
            {"retired_models": report.retired_models, "dry_run": plan.dry_run, "targets": len(report.outcomes)},
        )
    except Exception as exc:
        _release_if_retryable(ctx, effect_id, exc)
        raise
    log_event(
        "INFO",
        "cleanup recorded",
        job_id=plan.new_job_id,
        lineage=plan.lineage,
        dry_run=plan.dry_run,
        kept=list(plan.kept),
        outcomes={o.target.model: o.status.value for o in report.outcomes},
    )
    return True, report


# --- job.failed / cancelled / expired ----------------------------------------------------------


def _failure_reason(record: JobRecord, message: CompletionMessage) -> str:
    """``job CANCELLED: <message>``, the status said once.

    Backends prefix messages with their own spelling of the status ("CANCELED: the tuning job
    was cancelled on request."); that prefix is dropped when it names the same status.
    """
    error = part_dict(record.error) or message.body.get("error") or {}
    text = str(error.get("message") or "") if isinstance(error, dict) else ""
    status = record.status.value
    head, sep, rest = text.partition(":")
    if sep and head.strip().upper().replace("CANCELED", "CANCELLED") == status.upper():
        text = rest.strip()
    return f"job {status}: {text}" if text else f"job {status}"


def _handle_unsuccessful(ctx: _Context, record: JobRecord) -> CompletionOutcome:
    message = ctx.message
    if not record.status.is_terminal or record.status is JobStatus.SUCCEEDED:
        return CompletionOutcome(
            OutcomeKind.IGNORED,
            message.event_type,
            record.id,
            message.event_id,
            f"record status is {record.status.value}, which does not match {message.event_type}",
        )
    policy = CleanupPolicy.from_config(record.config)
    reason = _failure_reason(record, message)
    if policy.on_failure:
        cleaned, report = _cleanup_under_claim(
            ctx, lambda: plan_own_model_cleanup(record, policy, ctx.options.deployment)
        )
        published = ctx.publish(record.id)
        ctx.after_step(CompletionStep.CLEANED)
        retired = tuple(report.retired_models) if report else ()
        kind = OutcomeKind.DONE if cleaned or published else OutcomeKind.DUPLICATE
        return CompletionOutcome(
            kind,
            message.event_type,
            record.id,
            message.event_id,
            f"{reason}; own model cleanup",
            None,
            retired,
            published,
        )

    at = ctx.clock()
    skipped = f"{reason}; nothing cleaned up (cleanup.on_failure is off)"

    def mutate(current: JobRecord) -> JobRecord | None:
        cleanup = current.cleanup or CleanupRecord()
        if cleanup.event_id == message.event_id and cleanup.skipped == skipped:
            return None
        return current.with_changes(at, cleanup=replace(cleanup, skipped=skipped, event_id=message.event_id))

    changed = _update_and_tell(ctx.jobs, record.id, mutate)
    kind = OutcomeKind.DONE if changed else OutcomeKind.DUPLICATE
    return CompletionOutcome(kind, message.event_type, record.id, message.event_id, skipped)
