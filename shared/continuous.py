"""Continuous tuning: tune on top of the lineage's live model instead of the base model.

``tuning.yaml``::

    base_model: lineage:live          # or projects/P/locations/L/models/ID[@version]
    base_checkpoint_id: "2"           # optional: a checkpoint of that model (default: its default one)

The intake resolves the parent when the upload arrives (:func:`resolve_continuation`): the
lineage's live model (:func:`shared.gate.find_live`) or the named tuned model, which must be one
this deployment tuned (its record tells the underlying base model and when it was tuned). The
job is then created with Vertex's ``preTunedModel {tunedModelName, checkpointId}``; the
underlying base model still decides the validation limits and the price.

Qualification, from https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-continuous-tuning :
only supervised-tuned models of the supported base models (Gemini 2.5 Pro / Flash / Flash-Lite
and newer) that were tuned on or after 2025-07-11 can be a continuous-tuning base, and a CMEK
job must use the parent's key. Anything else is REJECTED with the reason
(``dataset.rejected``, reason ``continuous tuning: ...``) before a job is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.cleanup import iter_lineage_candidates
from shared.gate import find_live
from shared.ports import JobQuery, JobStore
from shared.record_parts import ResolvedConfig
from shared.records import JSON, JobRecord, from_rfc3339
from shared.states import JobStatus

LIVE = "lineage:live"
TUNED_SINCE = datetime(2025, 7, 11, tzinfo=UTC)
"""Only models tuned on or after this date qualify (see the module docstring's page)."""
SUPPORTED_PREFIXES: tuple[str, ...] = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-3")
"""Base models whose tuned models support continuous tuning (the page's list, by prefix)."""


def is_continuation(base_model: str | None) -> bool:
    """True for ``lineage:live`` and tuned-model resource names.

    >>> is_continuation("lineage:live"), is_continuation("projects/p/locations/l/models/1@1")
    (True, True)
    >>> is_continuation("gemini-2.5-flash")
    False
    """
    return bool(base_model) and (base_model == LIVE or str(base_model).startswith("projects/"))


@dataclass(frozen=True)
class Continuation:
    """The resolved parent of a continuous tuning job."""

    requested: str
    tuned_model_name: str
    checkpoint_id: str | None
    base_model: str
    """The underlying (non-tuned) base model: validation limits and price."""
    parent_job: str

    def to_dict(self) -> JSON:
        """``record.config["pre_tuned_model"]``."""
        return {
            "requested": self.requested,
            "tuned_model_name": self.tuned_model_name,
            "checkpoint_id": self.checkpoint_id,
            "base_model": self.base_model,
            "parent_job": self.parent_job,
        }


class ContinuationError(ValueError):
    """Why the requested parent cannot be tuned on (the dataset is rejected with it)."""


def _model_id(name: str) -> str:
    return name.split("@", 1)[0]


def _find_by_model(jobs: JobStore, lineage: str, name: str) -> JobRecord | None:
    """The record whose tuned model is ``name`` (version ignored): the lineage first, then any."""
    for record in iter_lineage_candidates(jobs, lineage):
        if _model_id(_tuned_model(record)) == _model_id(name):
            return record
    page = jobs.query(JobQuery(statuses=frozenset({JobStatus.SUCCEEDED}), limit=500))
    for record in page.records:
        if _model_id(_tuned_model(record)) == _model_id(name):
            return record
    return None


def _tuned_model(record: JobRecord) -> str:
    return str((record.tuning.tuned_model if record.tuning else None) or "")


def _underlying_base(parent: JobRecord) -> str:
    earlier = continuation_of(parent.config)
    if earlier is not None and earlier.base_model:
        return earlier.base_model
    config_base = parent.config.base_model if parent.config else None
    return str(config_base or (parent.tuning.base_model if parent.tuning else None) or "")


def resolve_continuation(
    base_model: str, checkpoint_id: str | None, *, lineage: str, kms_key_name: str | None, jobs: JobStore
) -> Continuation:
    """The parent model of a continuous tuning job, checked against the documented rules.

    Raises:
        ContinuationError: no live model, an unknown or retired model, an unsupported base
            model, a model tuned before 2025-07-11, or a different CMEK key.
    """
    if base_model == LIVE:
        parent = find_live(iter_lineage_candidates(jobs, lineage))
        if parent is None:
            raise ContinuationError(
                f"lineage {lineage!r} has no live model yet (one promoted by the quality gate): "
                "tune its first version from a base model"
            )
    else:
        found = _find_by_model(jobs, lineage, base_model)
        if found is None:
            raise ContinuationError(
                f"{base_model} is not a model this deployment tuned (its base model and tuning date are unknown)"
            )
        parent = found
    tuned = _tuned_model(parent)
    if not tuned or (parent.cleanup and parent.cleanup.retired_by):
        raise ContinuationError(f"the parent model of job {parent.id} has been retired or was never created")
    underlying = _underlying_base(parent)
    if not underlying.rsplit("/", 1)[-1].startswith(SUPPORTED_PREFIXES):
        raise ContinuationError(f"models tuned from {underlying!r} do not support continuous tuning")
    tuned_at = from_rfc3339(parent.tuning.create_time if parent.tuning else None) or parent.created_at
    if tuned_at < TUNED_SINCE:
        raise ContinuationError(
            f"{tuned} was tuned on {tuned_at:%Y-%m-%d}; only models tuned on or after 2025-07-11 qualify"
        )
    parent_key = parent.config.kms_key_name if parent.config else None
    if parent_key != kms_key_name:
        raise ContinuationError(f"the job must use the parent's CMEK key ({parent_key or 'none'}), not {kms_key_name}")
    name = base_model if base_model.startswith("projects/") else tuned
    return Continuation(base_model, name, checkpoint_id, underlying, parent.id)


def continuation_of(config: ResolvedConfig | None) -> Continuation | None:
    """Read ``record.config.pre_tuned_model`` back (None for a job tuned from a base model)."""
    raw = config.pre_tuned_model if config else None
    if not isinstance(raw, Mapping) or not raw.get("tuned_model_name"):
        return None
    checkpoint = raw.get("checkpoint_id")
    return Continuation(
        requested=str(raw.get("requested") or ""),
        tuned_model_name=str(raw["tuned_model_name"]),
        checkpoint_id=None if checkpoint is None else str(checkpoint),
        base_model=str(raw.get("base_model") or ""),
        parent_job=str(raw.get("parent_job") or ""),
    )
