"""Continuous tuning on the fakes: resolving ``lineage:live`` / a tuned model name into
``preTunedModel``, the documented qualification rules (each refused with its reason, before any
job exists), and the intake submitting the continuation with the parent's base model."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from test_gate import GatePipeline
from test_intake import Harness, examples

from shared.continuous import ContinuationError, continuation_of, resolve_continuation
from shared.record_parts import ResolvedConfig
from shared.records import JobRecord, record_key
from shared.states import JobStatus


@pytest.fixture
def lineage_with_live() -> tuple[GatePipeline, str]:
    pipe = GatePipeline()
    v1 = pipe.run(1, "exact")  # promoted: the live model
    pipe.run(2, "wrong")  # rejected: newer, but not live
    return pipe, v1


def test_lineage_live_resolves_to_the_promoted_model_not_the_newest(lineage_with_live):
    pipe, v1 = lineage_with_live
    got = resolve_continuation("lineage:live", "2", lineage="support-bot", kms_key_name=None, jobs=pipe.jobs)
    assert (got.tuned_model_name, got.checkpoint_id, got.parent_job) == (pipe.model(v1), "2", v1)
    assert got.base_model == "gemini-2.5-flash"
    assert continuation_of(ResolvedConfig(pre_tuned_model=got.to_dict())) == got


def test_an_explicit_tuned_model_of_this_deployment_resolves(lineage_with_live):
    pipe, v1 = lineage_with_live
    name = pipe.model(v1)
    got = resolve_continuation(name, None, lineage="other", kms_key_name=None, jobs=pipe.jobs)
    assert (got.tuned_model_name, got.parent_job) == (name, v1)


def _edit(pipe: GatePipeline, job_id: str, **changes) -> None:
    pipe.jobs.update(job_id, lambda r: r.with_changes(r.updated_at, **changes))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: {"config": replace(r.config, base_model="gemini-2.0-flash-001")}, "do not support"),
        (lambda r: {"tuning": replace(r.tuning, create_time="2025-07-10T23:00:00Z")}, "2025-07-11"),
        (lambda r: {"config": replace(r.config, kms_key_name="projects/p/keys/k")}, "CMEK"),
        (lambda r: {"cleanup": {"retired_by": "someone"}}, "no live model"),
    ],
)
def test_parents_that_do_not_qualify_are_refused_with_the_reason(lineage_with_live, change, reason):
    pipe, v1 = lineage_with_live
    record: JobRecord = pipe.record(v1)
    _edit(pipe, v1, **change(record))
    with pytest.raises(ContinuationError, match=reason):
        resolve_continuation("lineage:live", None, lineage="support-bot", kms_key_name=None, jobs=pipe.jobs)


def test_no_live_model_and_unknown_models_are_refused():
    pipe = GatePipeline()
    with pytest.raises(ContinuationError, match="no live model yet"):
        resolve_continuation("lineage:live", None, lineage="support-bot", kms_key_name=None, jobs=pipe.jobs)
    with pytest.raises(ContinuationError, match="not a model this deployment tuned"):
        resolve_continuation("projects/p/locations/l/models/9@1", None, lineage="x", kms_key_name=None, jobs=pipe.jobs)


def test_the_intake_submits_preTunedModel_or_rejects_with_the_reason():
    h = Harness()
    h.blobs.put("bkt", "datasets/faq/tuning.yaml", b"base_model: lineage:live\nbase_checkpoint_id: 1\n")
    event = h.upload("datasets/faq/v1.jsonl", examples(20))
    h.deliver(event)
    refused = h.jobs.get(record_key(event.bucket, event.name, event.generation))
    assert refused is not None and refused.status is JobStatus.REJECTED
    [rejected] = h.publisher.of_type("dataset.rejected")
    assert rejected.data["reason"].startswith("continuous tuning: lineage 'faq' has no live model yet")

    # Give the lineage a live model (a promoted, succeeded record), then upload again.
    parent = h.jobs.get(refused.id)
    assert parent is not None
    live_id = "f" * 32
    live = parent.__class__(
        id=live_id,
        dataset=parent.dataset,
        status=JobStatus.SUCCEEDED,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        config={"base_model": "gemini-2.5-flash"},
        tuning={
            "tuned_model": "projects/p/locations/l/models/7@1",
            "endpoint": "projects/p/locations/l/endpoints/7",
            "create_time": "2026-01-01T00:00:00Z",
        },
        gate={"verdict": "PROMOTED"},
    )
    assert h.jobs.create(live)
    event2 = h.upload("datasets/faq/v2.jsonl", examples(20))
    h.deliver(event2)
    child = h.jobs.get(record_key(event2.bucket, event2.name, event2.generation))
    assert child is not None and child.status is not JobStatus.REJECTED, child.error
    assert child.config is not None and child.config.pre_tuned_model is not None
    assert child.config.pre_tuned_model["parent_job"] == live_id
    [spec] = [s for s in h.tuning.specs.values() if s.pre_tuned_model]
    assert (spec.pre_tuned_model, spec.pre_tuned_checkpoint_id, spec.base_model) == (
        "projects/p/locations/l/models/7@1",
        "1",
        "gemini-2.5-flash",
    )
