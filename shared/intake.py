"""Intake: one uploaded dataset generation -> one validated job record -> at most one tuning job.

The steps of :func:`handle_upload`, in order (each named by :class:`IntakeStep`; the optional
``after_step`` hook runs after each, and the reliability tests raise from it to simulate a crash):

1. **Classify** the object. Only ``<datasets_prefix><lineage>/.../<name>.jsonl`` triggers work;
   reports, validation sets, folders, other extensions, other buckets: ``IGNORED`` with a log line.
   Configuration is resolved here (every ``tuning.yaml`` from the prefix root down).
2. **Claim** the record ``jobs/{record_key(bucket, name, generation)}`` with ``create()`` and a
   lease. A duplicate delivery finds the record: a live lease -> ``ClaimInProgressError``
   (retryable); an expired lease -> take over; past RECEIVED -> ``DUPLICATE`` (after publishing
   any pending outbox entry, which repairs a crash between commit and publish). Events older
   than ``max_event_age_seconds`` are recorded as DROPPED instead.
3. **Validate** the training set and the validation set beside it, streaming (no writes).
4. **Write the report** JSON to ``<reports_prefix><lineage>/<stem>/<generation>/validation.json``.
5. **Record the verdict**: REJECTED with a staged ``dataset.rejected`` event, or the validation
   summary and resolved config on the (still RECEIVED, still leased) record.
6. **Submit** through :func:`shared.submission.submit_tuning_job` (SUBMITTING written before the
   call, the job name after it; QUEUED when the quota is full or older uploads are waiting).
7. **Publish** the record's pending outbox entries.

The domain never reads the environment: ports and :class:`~shared.settings.Settings` come in.

Example:
    >>> from shared.adapters.fakes import FakeBlobStore, FakeJobStore, FakePublisher, FakeTuningBackend
    >>> from shared.upload_event import FINALIZED_EVENT_TYPE, UploadEvent
    >>> settings = Settings(project="p", bucket="bkt")
    >>> event = UploadEvent("1", "//storage.googleapis.com/projects/_/buckets/bkt", FINALIZED_EVENT_TYPE,
    ...                     "bkt", "reports/faq/v1/1/validation.json", 1)
    >>> out = handle_upload(event, blobs=FakeBlobStore(), jobs=FakeJobStore(), publisher=FakePublisher(),
    ...                     tuning=FakeTuningBackend(), settings=settings)
    >>> out.kind
    <IntakeOutcomeKind.IGNORED: 'IGNORED'>
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from shared.budget import BudgetOptions, decide_budget, ledger_key
from shared.claims import held_by_another, new_lease, raise_if_held, release_record, take_record
from shared.continuous import ContinuationError, is_continuation, resolve_continuation
from shared.errors import (
    BlobNotFoundError,
    BlobReadError,
    ClaimInProgressError,
    ConfigProblem,
    ErrorInfo,
    StoreUnavailableError,
    TuningConfigError,
    is_retryable,
)
from shared.events import EventType
from shared.labels import LINEAGE_RE
from shared.logs import log_event
from shared.outbox import publish_pending, stage_event
from shared.ports import BlobStore, Clock, JobQuery, JobStore, Publisher, QueryOrder, SpendLedger, TuningBackend
from shared.pricing import PriceTable, estimate_cost, load_price_table
from shared.record_parts import RecordError, ResolvedConfig, Validation
from shared.records import JSON, DatasetRef, JobRecord, Lease, new_record, record_key, to_rfc3339, utcnow
from shared.settings import Settings
from shared.states import JobStatus
from shared.submission import SubmitStep, submit_tuning_job
from shared.tuning_config import (
    TuningConfig,
    check_service_account,
    load_defaults,
    object_path_problem,
    render_display_name,
    resolve_config,
)
from shared.upload_event import UploadEvent
from shared.validation import DatasetReadError, ValidationOptions, ValidationReport, validate_stream

REPORT_FILE_NAME: Final = "validation.json"
VALIDATION_SUFFIX: Final = ".validation.jsonl"
DATASET_SUFFIX: Final = ".jsonl"
RECORD_ISSUES: Final = 20
"""Issues kept on the record and in the rejection event (the report keeps up to max_errors)."""
UNASSIGNED_LINEAGE: Final = "unassigned"
"""Lineage of records whose object name has no usable lineage folder (they are rejected)."""
REPORT_SCHEMA_VERSION: Final = 1
INVALID_DATASET_CODE: Final = "E_DATASET_INVALID"


class IntakeStep(StrEnum):
    """Step boundaries of one intake; ``after_step`` is called after each (crash injection)."""

    CLAIMED = "CLAIMED"
    """The record exists in RECEIVED with our lease (created, or an expired claim taken over)."""
    VALIDATED = "VALIDATED"
    """Config resolved and both files validated; nothing written yet."""
    REPORT_WRITTEN = "REPORT_WRITTEN"
    """validation.json is in the reports prefix."""
    VERDICT_RECORDED = "VERDICT_RECORDED"
    """REJECTED (+ staged event) or the validation summary + config are on the record."""
    SUBMITTING_RECORDED = SubmitStep.SUBMITTING_RECORDED.value
    JOB_CREATED = SubmitStep.JOB_CREATED.value
    JOB_RECORDED = SubmitStep.JOB_RECORDED.value
    QUEUED = "QUEUED"
    """The record went QUEUED because older uploads are waiting for quota (no backend call)."""
    PUBLISHED = "PUBLISHED"
    """The record's pending events were published."""


class IntakeOutcomeKind(StrEnum):
    """What one invocation did. Every kind is acknowledged; retryable failures raise instead."""

    IGNORED = "IGNORED"
    """Not a dataset (report, validation set, folder, other extension, other bucket or event type)."""
    DUPLICATE = "DUPLICATE"
    """The generation was handled already (redelivery); nothing new was done."""
    DROPPED_STALE = "DROPPED_STALE"
    """The event was older than ``max_event_age_seconds``: recorded as DROPPED, not processed."""
    REJECTED = "REJECTED"
    SUBMITTED = "SUBMITTED"
    """A tuning job exists for the record (created now, or adopted)."""
    QUEUED = "QUEUED"
    FAILED_TO_SUBMIT = "FAILED_TO_SUBMIT"


@dataclass(frozen=True)
class IntakeOutcome:
    """The result of :func:`handle_upload`."""

    kind: IntakeOutcomeKind
    reason: str
    job_id: str | None = None
    lineage: str | None = None
    status: JobStatus | None = None
    tuning_job: str | None = None
    report_uri: str | None = None

    def log_fields(self) -> dict[str, Any]:
        """Fields for the structured log line."""
        return {
            "outcome": self.kind.value,
            "reason": self.reason,
            "job_id": self.job_id,
            "lineage": self.lineage,
            "status": None if self.status is None else self.status.value,
            "tuning_job": self.tuning_job,
            "report_uri": self.report_uri,
        }


StepHook = Callable[[IntakeStep], None]

_OUTCOME_SEVERITY: Final[dict[IntakeOutcomeKind, str]] = {
    IntakeOutcomeKind.DROPPED_STALE: "WARNING",
    IntakeOutcomeKind.REJECTED: "WARNING",
    IntakeOutcomeKind.FAILED_TO_SUBMIT: "ERROR",
}


# --- step 1: classify ----------------------------------------------------------------------------


def ignore_reason(event: UploadEvent, settings: Settings) -> str | None:
    """Why this object never triggers work (None: it is a dataset candidate).

    >>> s = Settings(project="p", bucket="bkt")
    >>> ev = lambda name: UploadEvent("1", "src", "google.cloud.storage.object.v1.finalized", "bkt", name, 1)
    >>> ignore_reason(ev("reports/faq/v1/1/validation.json"), s)
    'own report object under reports/'
    >>> ignore_reason(ev("datasets/faq/v1.validation.jsonl"), s)
    'a validation set: it is picked up beside its training file'
    >>> ignore_reason(ev("datasets/faq/v1.jsonl"), s) is None
    True
    """
    name = event.name
    if not event.is_finalized:
        return f"event type {event.event_type} is not an object finalize"
    if event.bucket != settings.bucket:
        return f"bucket {event.bucket} is not the datasets bucket {settings.bucket}"
    if name.startswith(settings.reports_prefix):
        return f"own report object under {settings.reports_prefix}"
    if not name.startswith(settings.datasets_prefix):
        return f"outside the datasets prefix {settings.datasets_prefix}"
    if name.endswith("/"):
        return "a folder placeholder"
    if name.endswith(VALIDATION_SUFFIX):
        return "a validation set: it is picked up beside its training file"
    if not name.endswith(DATASET_SUFFIX):
        return "not a .jsonl dataset (tuning.yaml and other files only configure or document)"
    return None


def name_problem(name: str, datasets_prefix: str) -> str | None:
    """Why a dataset object name is unusable (the dataset is then REJECTED), or None.

    >>> name_problem("datasets/v1.jsonl", "datasets/")
    "is directly in datasets/: put it in a lineage folder, e.g. 'datasets/<lineage>/v1.jsonl'"
    >>> name_problem("datasets/faq/../v1.jsonl", "datasets/")
    "contains a '..' path segment"
    >>> name_problem("datasets/faq/..jsonl", "datasets/")
    "has a file name made only of dots ('.'.jsonl): give the dataset a name"
    """
    relative = name[len(datasets_prefix) :]
    problem = object_path_problem(relative)
    if problem is not None:
        return problem
    if "/" not in relative:
        example = f"{datasets_prefix}<lineage>/{relative}"
        return f"is directly in {datasets_prefix}: put it in a lineage folder, e.g. {example!r}"
    stem = relative.rsplit("/", 1)[-1].removesuffix(DATASET_SUFFIX)
    if not stem:
        return "has an empty file name"
    if set(stem) == {"."}:
        # the stem names the report folder: reports/<lineage>/<stem>/... must not contain '.' or '..'
        return f"has a file name made only of dots ({stem!r}.jsonl): give the dataset a name"
    return None


def lineage_folder(name: str, datasets_prefix: str) -> str:
    """The first folder under the datasets prefix (may be empty or unsafe; checked elsewhere)."""
    relative = name[len(datasets_prefix) :]
    return relative.split("/", 1)[0] if "/" in relative else ""


@dataclass(frozen=True)
class _Plan:
    """What step 1 decided about a dataset candidate."""

    lineage: str
    config: TuningConfig | None
    config_problems: tuple[ConfigProblem, ...]
    name_problem: str | None


def _plan(
    event: UploadEvent, settings: Settings, blobs: BlobStore, defaults: TuningConfig | Mapping[str, Any] | None
) -> _Plan | str:
    """The lineage/config/name verdict, or an ignore reason (the configured validation set)."""
    prefix = settings.datasets_prefix
    problem = name_problem(event.name, prefix)
    folder = lineage_folder(event.name, prefix)
    fallback = folder if LINEAGE_RE.match(folder) else UNASSIGNED_LINEAGE
    if problem is not None:
        return _Plan(fallback, None, (), problem)
    config: TuningConfig | None = None
    problems: tuple[ConfigProblem, ...] = ()
    try:
        if defaults is None and settings.defaults_file:
            defaults = load_defaults(settings.defaults_file, blobs)
        config = resolve_config(blobs, event.bucket, event.name, prefix, defaults)
        check_service_account(config, settings.tuning_service_accounts)
    except TuningConfigError as exc:
        problems = tuple(exc.problems)
    if config is not None and config.validation_dataset is not None:
        dataset_folder = event.name.rsplit("/", 1)[0] + "/"
        if event.name == dataset_folder + config.validation_dataset:
            return "the configured validation_dataset of its folder: it is picked up beside each training file"
    if config is not None and config.lineage:
        return _Plan(config.lineage, config, problems, None)
    if not LINEAGE_RE.match(folder):
        problem = (
            f"lineage folder {folder!r} is not a valid lineage (1-63 lowercase letters, digits, '-' or '_': "
            "it becomes a label); rename the folder or set 'lineage:' in its tuning.yaml"
        )
        return _Plan(UNASSIGNED_LINEAGE, config, problems, problem)
    return _Plan(folder, config, problems, None)


# --- the entry point -------------------------------------------------------------------------------


def handle_upload(
    event: UploadEvent,
    *,
    blobs: BlobStore,
    jobs: JobStore,
    publisher: Publisher,
    tuning: TuningBackend,
    settings: Settings,
    clock: Clock = utcnow,
    owner: str | None = None,
    defaults: TuningConfig | Mapping[str, Any] | None = None,
    after_step: StepHook | None = None,
    spend: SpendLedger | None = None,
    prices: PriceTable | None = None,
) -> IntakeOutcome:
    """Run the intake steps for one upload event (see the module docstring).

    ``defaults`` overrides the deployment defaults file (``settings.defaults_file``) when given.
    ``owner`` names this invocation in leases (default: a fresh random id per call).
    ``spend``/``prices``: the monthly spending ledger and the price table of the budget guard
    (:mod:`shared.budget`; without a ledger only the per-job limits apply).

    Returns the outcome for every handled case (the caller acknowledges the event).

    Raises:
        ClaimInProgressError: another invocation is working on this generation right now.
        Retryable errors (store, blob reads, transient backend, publish): the lease is released
        first, so the redelivery continues at once.
    """
    intake = _Intake(
        event=event,
        blobs=blobs,
        jobs=jobs,
        publisher=publisher,
        tuning=tuning,
        settings=settings,
        clock=clock,
        owner=owner or f"intake-{uuid.uuid4().hex[:12]}",
        after_step=after_step,
        spend=spend,
        prices=prices or load_price_table(),
    )
    return intake.run(defaults)


@dataclass
class _Intake:
    event: UploadEvent
    blobs: BlobStore
    jobs: JobStore
    publisher: Publisher
    tuning: TuningBackend
    settings: Settings
    clock: Clock
    owner: str
    after_step: StepHook | None
    spend: SpendLedger | None = None
    prices: PriceTable | None = None

    # --- helpers ---

    @property
    def trace(self) -> str | None:
        if not self.event.trace_id:
            return None
        return f"projects/{self.settings.project}/traces/{self.event.trace_id}"

    def log(self, severity: str, message: str, **fields: Any) -> None:
        log_event(
            severity,
            message,
            trace=self.trace,
            dataset=self.event.uri,
            event_id=self.event.event_id,
            **fields,
        )

    def step(self, step: IntakeStep) -> None:
        if self.after_step is not None:
            self.after_step(step)

    def finish(self, outcome: IntakeOutcome) -> IntakeOutcome:
        severity = _OUTCOME_SEVERITY.get(outcome.kind, "INFO")
        self.log(severity, f"upload {outcome.kind.value.lower()}: {outcome.reason}", **outcome.log_fields())
        return outcome

    def is_stale(self, now: datetime) -> bool:
        when = self.event.time
        return when is not None and now - when > timedelta(seconds=self.settings.max_event_age_seconds)

    # --- the steps ---

    def run(self, defaults: TuningConfig | Mapping[str, Any] | None) -> IntakeOutcome:
        reason = ignore_reason(self.event, self.settings)
        if reason is not None:
            return self.finish(IntakeOutcome(IntakeOutcomeKind.IGNORED, reason))
        planned = _plan(self.event, self.settings, self.blobs, defaults)
        if isinstance(planned, str):
            return self.finish(IntakeOutcome(IntakeOutcomeKind.IGNORED, planned))
        ref = DatasetRef(
            bucket=self.event.bucket,
            name=self.event.name,
            generation=self.event.generation,
            lineage=planned.lineage,
            size=self.event.size,
        )
        job_id = record_key(ref.bucket, ref.name, ref.generation)
        now = self.clock()
        if self.is_stale(now):
            return self.drop_stale(ref, job_id, now)
        record = self.claim(ref, job_id, now)
        if not isinstance(record, JobRecord):
            return record
        try:
            return self.process(record, planned)
        except Exception as exc:
            if is_retryable(exc):
                self.release(job_id)
                raise
            return self.record_unforeseen_failure(record, exc)

    def record_unforeseen_failure(self, record: JobRecord, exc: Exception) -> IntakeOutcome:
        """A failure nobody foresaw (a bug, an unmapped client error): record it, announce it, ack.

        The event is acknowledged after this (redelivery cannot fix a bug), so leaving the record
        RECEIVED would strand it: nothing else finishes RECEIVED records. Instead it ends REJECTED
        with the error, and ``dataset.rejected`` tells the uploader to re-upload.
        """
        info = ErrorInfo.from_exception(exc)
        reason = (
            f"sftpilot could not process this upload ({info.code}: {_clip(info.message, 200)}); "
            "re-upload it to try again"
        )
        event_data = _Verdict.rejected(reason).event_data(record)
        now, owner = self.clock(), self.owner

        def reject(current: JobRecord) -> JobRecord | None:
            held = current.lease
            if current.status is not JobStatus.RECEIVED or (held is not None and held.owner != owner):
                return None
            rejected = current.transition(
                JobStatus.REJECTED,
                now,
                note=_clip(reason, 300),
                error=RecordError(code=info.code, message=info.message, details={}),
                lease=None,
            )
            return stage_event(rejected, EventType.DATASET_REJECTED, event_data)

        try:
            stored = self.jobs.update(record.id, reject)
        except Exception:
            raise exc from None  # could not even record it: let the platform redeliver
        if stored.status is not JobStatus.REJECTED:
            # Past RECEIVED (e.g. SUBMITTING): the poller repairs and finishes those records.
            raise exc
        self.log("ERROR", "intake failed unexpectedly; dataset rejected", job_id=record.id, error=repr(exc))
        self.publish(record.id)
        return self.finish(
            IntakeOutcome(
                IntakeOutcomeKind.REJECTED,
                reason,
                job_id=record.id,
                lineage=record.lineage,
                status=stored.status,
            )
        )

    def claim(self, ref: DatasetRef, job_id: str, now: datetime) -> JobRecord | IntakeOutcome:
        """Create the record (RECEIVED + our lease) or deal with the one that exists."""
        lease = new_lease(self.owner, now, self.settings.lease_seconds)
        fresh = new_record(ref, now, event_id=self.event.event_id, event_time=self.event.time, lease=lease)
        if self.jobs.create(fresh):
            self.log("INFO", "record claimed", job_id=job_id, lineage=ref.lineage)
            self.step(IntakeStep.CLAIMED)
            return fresh
        existing = self.jobs.get(job_id)
        if existing is None:
            raise StoreUnavailableError("claim", f"record {job_id} exists for create() but not for get()")
        if existing.status is JobStatus.RECEIVED:
            taken = self.take_over(existing, lease, now)
            self.step(IntakeStep.CLAIMED)
            return taken
        return self.on_handled(existing)

    def take_over(self, existing: JobRecord, lease: Lease, now: datetime) -> JobRecord:
        _raise_if_leased(existing, self.owner, now)

        stored = self.jobs.update(existing.id, lambda current: take_record(current, lease, now, _INTAKE))
        if stored.status is not JobStatus.RECEIVED or stored.lease is None or stored.lease.owner != self.owner:
            _raise_if_leased(stored, self.owner, now)
            raise ClaimInProgressError(f"intake:{existing.id}", "unknown", "")
        previous = existing.lease.owner if existing.lease else None
        self.log(
            "WARNING",
            "took over an expired intake claim",
            job_id=existing.id,
            lineage=existing.lineage,
            previous_owner=previous,
        )
        return stored

    def on_handled(self, existing: JobRecord) -> IntakeOutcome:
        """A redelivery for a record past RECEIVED: repair what a crash may have left, else ack."""
        now = self.clock()
        if existing.status is JobStatus.SUBMITTING and not existing.tuning_job:
            _raise_if_leased(existing, self.owner, now)
            stored = self.submit(existing.id)
            return self.finish(self.submitted_outcome(stored))
        self.publish(existing.id)
        return self.finish(
            IntakeOutcome(
                IntakeOutcomeKind.DUPLICATE,
                f"already handled: record is {existing.status.value}",
                job_id=existing.id,
                lineage=existing.lineage,
                status=existing.status,
                tuning_job=existing.tuning_job,
                report_uri=existing.validation.report_uri if existing.validation else None,
            )
        )

    def drop_stale(self, ref: DatasetRef, job_id: str, now: datetime) -> IntakeOutcome:
        age = int((now - self.event.time).total_seconds()) if self.event.time else 0
        note = f"event is {age} s old (max {self.settings.max_event_age_seconds} s): dropped"
        fresh = new_record(ref, now, event_id=self.event.event_id, event_time=self.event.time)
        dropped = fresh.transition(JobStatus.DROPPED, now, note=note)
        outcome = IntakeOutcome(
            IntakeOutcomeKind.DROPPED_STALE, note, job_id=job_id, lineage=ref.lineage, status=JobStatus.DROPPED
        )
        if self.jobs.create(dropped):
            return self.finish(outcome)
        existing = self.jobs.get(job_id)
        if existing is None or existing.status is not JobStatus.RECEIVED:
            return self.on_handled(existing) if existing is not None else self.finish(outcome)
        _raise_if_leased(existing, self.owner, now)

        def mutate(current: JobRecord) -> JobRecord | None:
            if current.status is not JobStatus.RECEIVED or held_by_another(current.lease, self.owner, now):
                return None
            return current.transition(JobStatus.DROPPED, now, note=note, lease=None)

        stored = self.jobs.update(job_id, mutate)
        if stored.status is not JobStatus.DROPPED:
            _raise_if_leased(stored, self.owner, now)
            return self.on_handled(stored)
        return self.finish(outcome)

    def process(self, record: JobRecord, planned: _Plan) -> IntakeOutcome:
        """Steps 3-7 for a record we hold in RECEIVED."""
        if record.validation is not None and record.validation.valid:
            # A previous invocation recorded a valid verdict and died before submitting.
            return self.submit_valid(record)
        verdict = self.validate(record, planned)
        if verdict.valid and verdict.config is not None and verdict.training is not None:
            verdict = self.apply_budget(record, verdict)
        self.step(IntakeStep.VALIDATED)
        report_uri = self.write_report(record, verdict)
        self.step(IntakeStep.REPORT_WRITTEN)
        verdict = replace(verdict, report_uri=report_uri)
        stored = self.record_verdict(record, verdict)
        self.step(IntakeStep.VERDICT_RECORDED)
        if stored.status is JobStatus.REJECTED:
            self.publish(record.id)
            return self.finish(
                IntakeOutcome(
                    IntakeOutcomeKind.REJECTED,
                    verdict.reason,
                    job_id=record.id,
                    lineage=record.lineage,
                    status=JobStatus.REJECTED,
                    report_uri=report_uri,
                )
            )
        return self.submit_valid(stored)

    # --- validation ---

    def validate(self, record: JobRecord, planned: _Plan) -> _Verdict:
        ref = record.dataset
        if planned.name_problem is not None:
            reason = f"object name {ref.name!r} {planned.name_problem}"
            if planned.config_problems:
                reason += "; " + _config_reason(list(planned.config_problems))
            return _Verdict.rejected(reason, config_problems=planned.config_problems, name_problem=True)
        config = planned.config
        problems = list(planned.config_problems)
        display_name = None
        if config is not None:
            try:
                display_name = render_display_name(
                    config,
                    lineage=ref.lineage,
                    name=ref.stem,
                    generation=ref.generation,
                    when=record.event_time or record.created_at,
                )
            except TuningConfigError as exc:
                problems.extend(exc.problems)
        if problems or config is None:
            return _Verdict.rejected(_config_reason(problems), config_problems=tuple(problems))
        resolved = replace(config, lineage=ref.lineage, display_name=display_name or config.display_name)
        continuation: JSON | None = None
        if is_continuation(config.base_model):
            try:
                continuation = resolve_continuation(
                    config.base_model,
                    config.base_checkpoint_id,
                    lineage=ref.lineage,
                    kms_key_name=config.kms_key_name,
                    jobs=self.jobs,
                ).to_dict()
            except ContinuationError as exc:
                return _Verdict.rejected(f"continuous tuning: {exc}", config=resolved)
        options = ValidationOptions(
            role="training",
            base_model=str(continuation["base_model"]) if continuation else config.base_model,
            epochs=config.epochs,
            adapter_size=config.adapter_size,
            max_errors=self.settings.max_reported_errors,
            size_bytes=ref.size,
            source_name=ref.gcs_uri,
        )
        try:
            training = self.validate_object(ref.bucket, ref.name, ref.generation, options)
        except BlobNotFoundError:
            return _Verdict.rejected(
                f"{ref.uri} no longer exists (deleted or overwritten before validation)", config=resolved
            )
        validation_set, missing = self.validate_validation_set(ref, config, options)
        verdict = _Verdict(
            valid=training.valid and (validation_set is None or validation_set.report.valid) and missing is None,
            reason="",
            continuation=continuation,
            config=resolved,
            training=training,
            validation_set=validation_set,
            missing_validation_set=missing,
        )
        return replace(verdict, reason=verdict.summary())

    def apply_budget(self, record: JobRecord, verdict: _Verdict) -> _Verdict:
        """Estimate the cost; refuse (REJECTED, reason ``budget: ...``) when over a budget."""
        assert verdict.config is not None and verdict.training is not None
        config = verdict.config
        base_model = str((verdict.continuation or {}).get("base_model") or config.base_model)
        estimate = estimate_cost(
            verdict.training.stats.dataset_tokens, config.epochs, base_model, self.prices or load_price_table()
        )
        decision = decide_budget(
            estimate,
            BudgetOptions.from_config(config.to_dict()),
            ledger=self.spend,
            key=ledger_key(record.lineage, record.created_at),
            job_id=record.id,
        )
        if decision.allowed:
            return replace(verdict, cost=decision.to_dict())
        return replace(verdict, valid=False, reason=decision.reason, cost=decision.to_dict())

    def validate_object(
        self, bucket: str, name: str, generation: int | None, options: ValidationOptions
    ) -> ValidationReport:
        uri = f"gs://{bucket}/{name}" + (f"#{generation}" if generation is not None else "")
        try:
            with self.blobs.open_read(bucket, name, generation) as stream:
                return validate_stream(stream, options)
        except DatasetReadError as exc:  # an OSError while streaming: worth a retry
            raise BlobReadError(uri, exc.reason) from exc

    def validate_validation_set(
        self, ref: DatasetRef, config: TuningConfig, training_options: ValidationOptions
    ) -> tuple[_ValidationSet | None, str | None]:
        """The validated validation set (or None), and a 'configured but missing' reason (or None)."""
        folder = ref.name.rsplit("/", 1)[0] + "/"
        explicit = config.validation_dataset is not None
        name = folder + (config.validation_dataset or f"{ref.stem}{VALIDATION_SUFFIX}")
        info = self.blobs.stat(ref.bucket, name)
        if info is None:
            if explicit:
                return None, f"validation_dataset gs://{ref.bucket}/{name} (from tuning.yaml) does not exist"
            return None, None
        options = replace(
            training_options, role="validation", size_bytes=info.size, source_name=f"gs://{ref.bucket}/{name}"
        )
        try:
            report = self.validate_object(ref.bucket, name, info.generation, options)
        except BlobNotFoundError:
            return None, f"validation set gs://{ref.bucket}/{name} disappeared while it was being read"
        return _ValidationSet(ref.bucket, name, info.generation, report), None

    # --- report, verdict ---

    def write_report(self, record: JobRecord, verdict: _Verdict) -> str | None:
        if verdict.name_problem:
            return None  # the name itself is unsafe: do not derive a report path from it
        ref = record.dataset
        name = f"{self.settings.reports_prefix}{ref.reports_prefix}/{REPORT_FILE_NAME}"
        body = verdict.report_json(record, generated_at=to_rfc3339(self.clock()) or "")
        data = json.dumps(body, indent=2, sort_keys=False, default=str).encode()
        self.blobs.write_bytes(ref.bucket, name, data, "application/json")
        return f"gs://{ref.bucket}/{name}"

    def record_verdict(self, record: JobRecord, verdict: _Verdict) -> JobRecord:
        now = self.clock()
        summary = Validation.from_dict(verdict.record_summary())
        config_dict = verdict.config.to_dict() if verdict.config else None
        if config_dict is not None and verdict.continuation:
            config_dict["pre_tuned_model"] = verdict.continuation
        config = ResolvedConfig.from_dict(config_dict) if config_dict is not None else None
        owner = self.owner

        if verdict.valid:

            def accept(current: JobRecord) -> JobRecord | None:
                if current.status is not JobStatus.RECEIVED or current.lease is None or current.lease.owner != owner:
                    return None
                return current.with_changes(now, validation=summary, config=config)

            stored = self.jobs.update(record.id, accept)
        else:
            event_data = verdict.event_data(record)
            error = RecordError(code=INVALID_DATASET_CODE, message=verdict.reason, details={})

            def reject(current: JobRecord) -> JobRecord | None:
                if current.status is not JobStatus.RECEIVED or current.lease is None or current.lease.owner != owner:
                    return None
                rejected = current.transition(
                    JobStatus.REJECTED,
                    now,
                    note=_clip(verdict.reason, 300),
                    validation=summary,
                    config=config,
                    error=error,
                    lease=None,
                )
                return stage_event(rejected, EventType.DATASET_REJECTED, event_data)

            stored = self.jobs.update(record.id, reject)
        ours = stored.lease is not None and stored.lease.owner == owner
        if not (stored.status is JobStatus.REJECTED or (stored.status is JobStatus.RECEIVED and ours)):
            # Our lease was taken over (we were slower than lease_seconds): the new owner decides.
            holder = stored.lease.owner if stored.lease else "another invocation"
            raise ClaimInProgressError(f"intake:{record.id}", holder, to_rfc3339(now) or "")
        return stored

    # --- submission ---

    def submit_valid(self, record: JobRecord) -> IntakeOutcome:
        if self.older_uploads_waiting(record):
            now = self.clock()
            owner = self.owner

            def enqueue(current: JobRecord) -> JobRecord | None:
                if current.status is not JobStatus.RECEIVED or current.lease is None or current.lease.owner != owner:
                    return None
                return current.transition(
                    JobStatus.QUEUED, now, note="older uploads are waiting for tuning quota", lease=None
                )

            stored = self.jobs.update(record.id, enqueue)
            self.step(IntakeStep.QUEUED)
            return self.finish(self.submitted_outcome(stored))
        stored = self.submit(record.id)
        return self.finish(self.submitted_outcome(stored))

    def older_uploads_waiting(self, record: JobRecord) -> bool:
        """True when a QUEUED record uploaded earlier exists: keep upload order, do not jump it."""
        page = self.jobs.query(JobQuery(statuses=frozenset({JobStatus.QUEUED}), order=QueryOrder.QUEUE_ORDER, limit=1))
        return any(r.id != record.id and r.queue_position < record.queue_position for r in page.records)

    def submit(self, job_id: str) -> JobRecord:
        def on_step(step: SubmitStep) -> None:
            self.step(IntakeStep(step.value))

        stored = submit_tuning_job(
            job_id,
            jobs=self.jobs,
            tuning=self.tuning,
            deployment=self.settings.deployment,
            clock=self.clock,
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            after_step=on_step,
        )
        if stored.has_pending_outbox:
            self.publish(job_id)
        return stored

    def submitted_outcome(self, stored: JobRecord) -> IntakeOutcome:
        common: dict[str, Any] = {
            "job_id": stored.id,
            "lineage": stored.lineage,
            "status": stored.status,
            "tuning_job": stored.tuning_job,
            "report_uri": stored.validation.report_uri if stored.validation else None,
        }
        if stored.status is JobStatus.QUEUED:
            return IntakeOutcome(IntakeOutcomeKind.QUEUED, "waiting for tuning quota (upload order)", **common)
        if stored.status is JobStatus.FAILED_TO_SUBMIT:
            message = (stored.error.message if stored.error else None) or "the tuning API refused the job"
            return IntakeOutcome(IntakeOutcomeKind.FAILED_TO_SUBMIT, str(message), **common)
        if stored.tuning_job:
            return IntakeOutcome(IntakeOutcomeKind.SUBMITTED, f"tuning job {stored.tuning_job}", **common)
        return IntakeOutcome(
            IntakeOutcomeKind.DUPLICATE, f"submission in progress elsewhere ({stored.status.value})", **common
        )

    # --- publishing and lease release ---

    def publish(self, job_id: str) -> None:
        sent = publish_pending(job_id, jobs=self.jobs, publisher=self.publisher, clock=self.clock, owner=self.owner)
        if sent:
            self.step(IntakeStep.PUBLISHED)

    def release(self, job_id: str) -> None:
        """After a retryable failure: give the RECEIVED lease back so a redelivery starts at once."""
        owner, now = self.owner, self.clock()
        try:
            self.jobs.update(job_id, lambda current: release_record(current, owner, now, _INTAKE))
        except Exception as exc:  # best effort: the lease expires on its own
            self.log("WARNING", "could not release the intake lease", job_id=job_id, error=str(exc))


def _raise_if_leased(record: JobRecord, owner: str, now: datetime) -> None:
    raise_if_held(record, owner, now, f"intake:{record.id}")


_INTAKE: Final = frozenset({JobStatus.RECEIVED})
"""The status in which the intake holds the record's lease."""


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ValidationSet:
    """The validation set found beside a dataset, and its report."""

    bucket: str
    name: str
    generation: int
    report: ValidationReport

    @property
    def uri(self) -> str:
        """``gs://bucket/name`` (what the tuning request names)."""
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class _Verdict:
    valid: bool
    reason: str
    config: TuningConfig | None = None
    config_problems: tuple[ConfigProblem, ...] = ()
    name_problem: bool = False
    training: ValidationReport | None = None
    validation_set: _ValidationSet | None = None
    missing_validation_set: str | None = None
    report_uri: str | None = None
    cost: JSON | None = None
    """Cost estimate and budget verdict (:mod:`shared.budget`); None before validation passed."""
    continuation: JSON | None = None
    """The resolved parent of a continuous tuning job (:mod:`shared.continuous`)."""

    @classmethod
    def rejected(
        cls,
        reason: str,
        *,
        config: TuningConfig | None = None,
        config_problems: tuple[ConfigProblem, ...] = (),
        name_problem: bool = False,
    ) -> _Verdict:
        return cls(False, reason, config=config, config_problems=config_problems, name_problem=name_problem)

    def summary(self) -> str:
        """One line: why the dataset is rejected, or what was accepted."""
        parts: list[str] = []
        if self.training is not None and not self.training.valid:
            parts.append(_report_reason("training set", self.training))
        if self.validation_set is not None and not self.validation_set.report.valid:
            parts.append(_report_reason("validation set", self.validation_set.report))
        if self.missing_validation_set:
            parts.append(self.missing_validation_set)
        if parts:
            return "; ".join(parts)
        examples = self.training.example_count if self.training else 0
        extra = f" + {self.validation_set.report.example_count} validation examples" if self.validation_set else ""
        return f"valid: {examples} training examples{extra}"

    def issues(self) -> list[JSON]:
        """First issues across both files, each tagged with its file."""
        found: list[JSON] = []
        for file, report in self._reports():
            found.extend({**issue.to_dict(), "file": file} for issue in report.issues)
        return found

    def error_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for _, report in self._reports():
            counts.update(report.error_counts)
        return dict(sorted(counts.items()))

    def _reports(self) -> list[tuple[str, ValidationReport]]:
        out: list[tuple[str, ValidationReport]] = []
        if self.training is not None:
            out.append(("training", self.training))
        if self.validation_set is not None:
            out.append(("validation", self.validation_set.report))
        return out

    def record_summary(self) -> JSON:
        """``record.validation``: verdict, counts, stats, first issues, report URI."""
        training = self.training
        validation_set: JSON | None = None
        if self.validation_set is not None:
            report = self.validation_set.report
            validation_set = {
                "uri": self.validation_set.uri,
                "object": self.validation_set.name,
                "generation": self.validation_set.generation,
                "valid": report.valid,
                "example_count": report.example_count,
                "error_counts": dict(sorted(report.error_counts.items())),
                "issues": _first_issues(report),
                "stats": report.stats.to_dict(),
            }
        return {
            "valid": self.valid,
            "reason": self.reason,
            "report_uri": self.report_uri,
            "example_count": training.example_count if training else None,
            "error_counts": dict(sorted(training.error_counts.items())) if training else {},
            "errors_count": training.errors_count if training else None,
            "warnings_count": training.warnings_count if training else None,
            "issues": _first_issues(training) if training else [],
            "stats": training.stats.to_dict() if training else None,
            "foreign_format": training.foreign_format if training else None,
            "convert_command": training.convert_command if training else None,
            "validation_set": validation_set,
            "missing_validation_set": self.missing_validation_set,
            "config_errors": [p.to_dict() for p in self.config_problems],
            "cost": self.cost,
        }

    def event_data(self, record: JobRecord) -> JSON:
        """The ``dataset.rejected`` data fields."""
        errors = [i for i in self.issues() if i.get("severity") == "error"][:RECORD_ISSUES]
        return {
            "dataset": record.dataset.uri,
            "report_uri": self.report_uri,
            "reason": _clip(self.reason, 1000),
            "error_counts": self.error_counts(),
            "errors": errors,
            "config_errors": [p.to_dict() for p in self.config_problems],
            "budget": self.cost if self.cost and not self.cost.get("within_budget") else None,
        }

    def report_json(self, record: JobRecord, *, generated_at: str) -> JSON:
        """The full report written to the reports prefix."""
        validation_set: JSON | None = None
        if self.validation_set is not None:
            validation_set = {
                "object": f"{self.validation_set.uri}#{self.validation_set.generation}",
                **self.validation_set.report.to_json_dict(),
            }
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "job_id": record.id,
            "dataset": record.dataset.uri,
            "lineage": record.lineage,
            "generated_at": generated_at,
            "valid": self.valid,
            "reason": self.reason,
            "config": self.config.to_dict() if self.config else None,
            "config_errors": [p.to_dict() for p in self.config_problems],
            "missing_validation_set": self.missing_validation_set,
            "training": self.training.to_json_dict() if self.training else None,
            "validation_set": validation_set,
            "cost": self.cost,
        }


def _first_issues(report: ValidationReport) -> list[JSON]:
    """The first issues for the record: errors before warnings (many warnings must not hide an error)."""
    ordered = sorted(report.issues, key=lambda issue: issue.severity != "error")
    return [issue.to_dict() for issue in ordered[:RECORD_ISSUES]]


def _report_reason(label: str, report: ValidationReport) -> str:
    if report.foreign_format:
        hint = f" (convert with: {report.convert_command})" if report.convert_command else ""
        return f"{label} is in the {report.foreign_format} format, not Gemini SFT JSONL{hint}"
    errors = [i for i in report.issues if i.severity == "error"]
    counts = Counter({code: n for code, n in report.error_counts.items() if code.startswith("E_")})
    top = ", ".join(f"{code} x{n}" for code, n in counts.most_common(3))
    if len(counts) > 3:  # say that the list is cut, and by how much
        top += f", … {len(counts) - 3} more code(s)"
    text = f"{label} has {report.errors_count} error(s) ({top})"
    if errors:
        first = errors[0]
        where = f"line {first.line}" if first.line is not None else "file"
        if first.path:
            where += f" {first.path}"
        text += f"; first: {where}: {first.message}"
    return text


def _config_reason(problems: list[ConfigProblem]) -> str:
    if not problems:
        return "tuning configuration could not be resolved"
    first = problems[0]
    where = f"{first.source} " if first.source else ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    path = first.path or "(file)"
    return f"tuning.yaml is invalid: {where}{path}: {first.message}{more}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "IntakeOutcome",
    "IntakeOutcomeKind",
    "IntakeStep",
    "handle_upload",
    "ignore_reason",
    "lineage_folder",
    "name_problem",
]
