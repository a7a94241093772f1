"""The typed parts of a job record: validation, config, tuning view, error, smoke test, cleanup, gate, cost, cancel.

Each part is a frozen dataclass with ``to_dict``/``from_dict``; :class:`~shared.records.JobRecord`
holds them and stores/prints their dicts, whose shape is exactly the one the jobs API
(``shared/openapi.yaml``), the event schemas and ``sftpilot jobs show --json`` document.

Rules every part follows (they live in :class:`Part`, so a part only declares its fields):

* **Adding a field is one line**: ``new_key: str | None = None`` (written always, ``None`` as
  ``null``) or ``new_key: str | None = field(default=None, metadata=SPARSE)`` (written only
  once it has a value, like the cleanup part's keys that appear one step at a time). The field name is the JSON key.
* **Values are kept as stored.** ``from_dict`` does not coerce or validate: the record is
  sftpilot's own output, and readers keep accepting every record written so far (no migration).
  Nested structures (checkpoints, stats, issues, ...) stay JSON.
* **Unknown keys round-trip.** Keys no field names (a record written by a newer version, or a
  field another branch adds) are kept in :attr:`Part.extra` and written back by ``to_dict``,
  so an older reader never drops them when it updates the record.
* **Absent keys stay absent.** A key missing from the stored dict is not invented by
  ``to_dict`` (unless the field was since given a non-default value), so
  ``to_dict(from_dict(d)) == d`` for every stored dict ``d``.

Example:
    >>> view = TuningView.from_dict({"state": "JOB_STATE_RUNNING", "tuned_model": None, "new": 1})
    >>> view.state, view.tuned_model, view.extra
    ('JOB_STATE_RUNNING', None, {'new': 1})
    >>> view.to_dict()
    {'state': 'JOB_STATE_RUNNING', 'tuned_model': None, 'new': 1}
    >>> CancelRequest(by="alice", at="2026-01-01T00:00:00.000000Z").to_dict()
    {'by': 'alice', 'at': '2026-01-01T00:00:00.000000Z'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self, TypeVar

JSON = dict[str, Any]

_SPARSE = "sparse"
SPARSE: Mapping[str, bool] = {_SPARSE: True}
"""Field metadata: ``x: str | None = field(default=None, metadata=SPARSE)`` is written only when set."""


@dataclass(frozen=True, kw_only=True)
class Part:
    """Base of every record part: generic, shape-preserving ``to_dict``/``from_dict``."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys this version does not know, written back unchanged."""
    _stored_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    """Keys of the stored dict, in order (None: built in code); keeps absent keys absent."""

    @classmethod
    def _known(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "_stored_keys"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The part of a stored dict; unknown keys go to :attr:`extra` (see the module docstring)."""
        known = cls._known()
        values = {name: data[name] for name in known if name in data}
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**values, extra=extra, _stored_keys=tuple(data))

    def to_dict(self) -> JSON:
        """The stored/printed dict.

        A part read from storage keeps its keys and their order, then adds fields set since (in
        declaration order); a part built in code writes its fields in declaration order (sparse
        ones only when set), then :attr:`extra`.
        """
        written: JSON = {}
        for f in fields(self):
            if f.name in ("extra", "_stored_keys"):
                continue
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if self._stored_keys is not None:
                keep = f.name in self._stored_keys or value != default
            else:
                keep = not f.metadata.get(_SPARSE) or value is not None
            if keep:
                written[f.name] = value
        if self._stored_keys is None:
            return {**written, **self.extra}
        out: JSON = {}
        for key in self._stored_keys:
            if key in written:
                out[key] = written.pop(key)
            elif key in self.extra:
                out[key] = self.extra[key]
        out.update(written)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out


def part_dict(part: Part | None) -> JSON | None:
    """``part.to_dict()`` or None (how :class:`~shared.records.JobRecord` stores an unset part)."""
    return None if part is None else part.to_dict()


P = TypeVar("P", bound=Part)


def load_part(cls: type[P], data: Mapping[str, Any] | None) -> P | None:
    """``cls.from_dict(data)`` or None when the record has no such part yet."""
    return None if data is None else cls.from_dict(data)


@dataclass(frozen=True, kw_only=True)
class Validation(Part):
    """``record.validation``: the intake's verdict (written by ``shared.intake`` ``record_summary``)."""

    valid: bool | None = None
    reason: str | None = None
    report_uri: str | None = None
    example_count: int | None = None
    error_counts: JSON = field(default_factory=dict)
    errors_count: int | None = None
    warnings_count: int | None = None
    issues: list[Any] = field(default_factory=list)
    stats: JSON | None = None
    foreign_format: str | None = None
    convert_command: str | None = None
    validation_set: JSON | None = None
    """``uri``, ``object``, ``generation``, ``valid``, ``example_count``, ``error_counts``, ``issues``, ``stats``."""
    missing_validation_set: Any = None
    config_errors: list[Any] = field(default_factory=list)
    cost: JSON | None = None
    """The budget check (``estimate``, ``within_budget``, ``ledger_key``, ...; :mod:`shared.budget`)."""


@dataclass(frozen=True, kw_only=True)
class ResolvedConfig(Part):
    """``record.config``: the resolved tuning config (``TuningConfig.to_dict`` form, not re-validated)."""

    lineage: str | None = None
    base_model: str | None = None
    base_checkpoint_id: str | None = None
    epochs: int | None = None
    adapter_size: int | None = None
    learning_rate_multiplier: float | None = None
    display_name: str | None = None
    description: str | None = None
    export_last_checkpoint_only: bool | None = None
    validation_dataset: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    kms_key_name: str | None = None
    service_account: str | None = None
    smoke_test: JSON = field(default_factory=dict)
    cleanup: JSON = field(default_factory=dict)
    gate: JSON = field(default_factory=dict)
    """``GateOptions.to_dict`` (:mod:`shared.gate`)."""
    budget: JSON = field(default_factory=dict)
    """``BudgetOptions.to_dict`` (:mod:`shared.budget`)."""
    evaluation_config: JSON | None = None
    """Vertex's tuning ``evaluationConfig``, passed through (:mod:`shared.evaluation_config`)."""
    pre_tuned_model: JSON | None = field(default=None, metadata=SPARSE)
    """Continuous tuning only: ``Continuation.to_dict`` (:mod:`shared.continuous`)."""


@dataclass(frozen=True, kw_only=True)
class TuningView(Part):
    """``record.tuning``: the last seen view of the tuning job (``shared.tuning_view.tuning_view``)."""

    state: str | None = None
    create_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    update_time: str | None = None
    tuned_model: str | None = None
    endpoint: str | None = None
    checkpoints: list[Any] = field(default_factory=list)
    """``{"checkpoint_id", "epoch", "step", "endpoint"}`` each."""
    error: JSON | None = None
    """``{"code": <google.rpc code>, "message": ...}`` from the backend."""
    data_stats: JSON | None = None
    metrics: JSON | None = None
    base_model: str | None = None
    """``baseModel``, or ``preTunedModel.baseModel`` for continuous tuning."""
    detail_state: str | None = None
    """Vertex ``tuningJobState`` (e.g. ``TUNING_JOB_STATE_WAITING_FOR_QUOTA``)."""
    waiting_for_quota: bool | None = None
    """Accepted and held until the concurrent-job quota frees (``shared.poller``)."""
    quota_wait_ended_at: str | None = field(default=None, metadata=SPARSE)
    """Only after such a wait: the stall clock starts there (RFC 3339)."""
    curves: JSON | None = None
    """Bounded metric curves, ``{"series": {name: {"steps": [...], "values": [...]}}}`` (``shared.curves``)."""
    evaluation: JSON | None = None
    """Vertex's own evaluation of the job (``evaluateDatasetRuns``; :mod:`shared.evaluation_config`)."""


@dataclass(frozen=True, kw_only=True)
class RecordError(Part):
    """``record.error``: why the job failed, in :class:`~shared.errors.ErrorInfo` shape."""

    code: str | None = None
    message: str | None = None
    details: JSON = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SmokeTestRecord(Part):
    """``record.smoke_test``: the completion function's smoke test result (or why it was skipped).

    A skipped test stores only ``event_id``, ``skipped`` and ``passed: null``; the other keys are
    sparse so that form keeps its shape.
    """

    event_id: str | None = None
    skipped: str | None = field(default=None, metadata=SPARSE)
    passed: bool | None = None
    reasons: list[Any] | None = field(default=None, metadata=SPARSE)
    prompt_source: str | None = field(default=None, metadata=SPARSE)
    notes: list[Any] | None = field(default=None, metadata=SPARSE)
    prompts_total: int | None = field(default=None, metadata=SPARSE)
    prompts_passed: int | None = field(default=None, metadata=SPARSE)
    prompts: list[Any] | None = field(default=None, metadata=SPARSE)
    base_model: str | None = field(default=None, metadata=SPARSE)
    compared_with_base: bool | None = field(default=None, metadata=SPARSE)
    scores: JSON | None = field(default=None, metadata=SPARSE)
    report_uri: str | None = field(default=None, metadata=SPARSE)
    chart_uri: str | None = field(default=None, metadata=SPARSE)
    tested_at: str | None = field(default=None, metadata=SPARSE)


@dataclass(frozen=True, kw_only=True)
class CleanupRecord(Part):
    """``record.cleanup``: keys appear one step at a time, so every field is sparse."""

    run: JSON | None = field(default=None, metadata=SPARSE)
    """The cleanup run this job triggered (``CleanupReport.to_dict``)."""
    retired_by: str | None = field(default=None, metadata=SPARSE)
    retirement: JSON | None = field(default=None, metadata=SPARSE)
    """How another job's cleanup retired this job's model."""
    dry_run_retirement: JSON | None = field(default=None, metadata=SPARSE)
    skipped: str | None = field(default=None, metadata=SPARSE)
    event_id: str | None = field(default=None, metadata=SPARSE)
    checkpoints: JSON | None = field(default=None, metadata=SPARSE)
    """Undeploying the endpoints of the checkpoints that were not chosen (:mod:`shared.best_checkpoint`)."""


@dataclass(frozen=True, kw_only=True)
class SmokeProgress(Part):
    """``record.smoke_progress``: smoke-test calls an invocation made before its time ran out.

    Written by ``shared.completion`` (``SmokeTestResult.progress`` plus who saved it), cleared
    (``null``) once the smoke test is recorded.
    """

    calls: list[Any] = field(default_factory=list)
    """``shared.smoke_test.call_record`` dicts, each with its ``key``."""
    done: int | None = None
    total: int | None = None
    event_id: str | None = None
    """The completion event whose redelivery may reuse these calls."""
    saved_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class GateRecord(Part):
    """``record.gate``: the quality gate's verdict (``GateResult.to_dict`` plus options, time, report)."""

    verdict: str | None = None
    """``PROMOTED``, ``HELD`` or ``REJECTED`` (:class:`shared.gate.Verdict`)."""
    reason: str | None = None
    metric: str | None = None
    comparisons: list[Any] = field(default_factory=list)
    """``Comparison.to_dict`` each (scores, interval, per-prompt table)."""
    notes: list[Any] = field(default_factory=list)
    live_before: str | None = None
    options: JSON | None = None
    decided_at: str | None = None
    report_uri: str | None = None
    checkpoints: JSON | None = field(default=None, metadata=SPARSE)
    """Best-checkpoint choice (``best``, ``reason``, ``scores``, ...; :mod:`shared.best_checkpoint`)."""


@dataclass(frozen=True, kw_only=True)
class CostRecord(Part):
    """``record.cost``: what the job actually cost (the estimate is ``record.validation.cost``)."""

    actual: JSON | None = None
    """``billable_tokens``, ``cost_usd``, ``recorded_at``, ... (:func:`shared.budget.actual_cost`)."""


@dataclass(frozen=True, kw_only=True)
class CancelRequest(Part):
    """``record.cancel_request``: who asked to cancel, and when (RFC 3339)."""

    by: str | None = None
    at: str | None = None


PARTS: tuple[type[Part], ...] = (
    Validation,
    ResolvedConfig,
    TuningView,
    RecordError,
    SmokeTestRecord,
    CleanupRecord,
    SmokeProgress,
    GateRecord,
    CostRecord,
    CancelRequest,
)
"""Every part class (the round-trip tests walk it)."""
