"""Deletion safety: only superseded models carrying this deployment's ``managed-by`` label are ever
deleted; never a foreign model, never the newest passing model, never anything in a dry run or
after a failed smoke test.

Lineages are built through the real pipeline (upload, tune, poll, smoke test) on the fakes;
"foreign" models are made by changing a model's live labels after it was created, which is what
the execution-time label check exists for. A property test then throws random lineage histories
at the cleanup and checks the same rules.

Every undeploy and delete is a long-running operation that stays running for
``OPERATION_POLLS`` polls (as on Vertex, where they take minutes); one test makes them outlast a
cleanup pass and checks that nothing counts as deleted before its operation finished.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.cleanup import OperationWait
from shared.errors import CleanupPendingError
from shared.events import EventType, build_event, job_event_data
from shared.ports import OutgoingEvent, TuningJobSpec
from shared.records import DatasetRef, JobRecord, new_record
from shared.states import JobStatus, TuningState
from shared.tuning_config import TuningConfig
from shared.tuning_view import tuning_view

from .harness import ANSWER, BUCKET, DEPLOYMENT, T0, Pipeline, examples, to_message

KEEP_HISTORY = "cleanup: {enabled: false}\n"
OPERATION_POLLS = 2


def cleanup_yaml(keep_last: int = 1, dry_run: bool = False) -> bytes:
    return f"cleanup: {{enabled: true, keep_last: {keep_last}, dry_run: {str(dry_run).lower()}}}\n".encode()


class Lineage:
    """Versions of one dataset folder, tuned and smoke-tested through the pipeline."""

    def __init__(self, p: Pipeline, folder: str = "faq") -> None:
        self.p = p
        self.folder = folder
        self.set_config(KEEP_HISTORY.encode())

    def set_config(self, text: bytes) -> None:
        """The folder's tuning.yaml (read by each upload's intake and stored on its record)."""
        self.p.blobs.put(BUCKET, f"datasets/{self.folder}/tuning.yaml", text)

    def submit(self, version: str) -> JobRecord:
        event = self.p.upload(f"datasets/{self.folder}/{version}.jsonl", examples(20, version))
        self.p.deliver_until_acked(event)
        return self.p.record(event)

    def passed(self, version: str) -> JobRecord:
        """Upload, tune, succeed, smoke-test: a passing model."""
        record = self.submit(version)
        return self.finish(record)

    def finish(self, record: JobRecord) -> JobRecord:
        self.p.finish(record)
        self.p.settle()
        stored = self.p.jobs.get(record.id)
        assert stored is not None and stored.status is JobStatus.SUCCEEDED
        return stored


def model_of(record: JobRecord) -> str:
    return record.tuning.tuned_model


def relabel(p: Pipeline, record: JobRecord, managed_by: str | None) -> None:
    """Someone changed the live model's labels (removed ours, or claimed it for another deployment)."""
    labels = p.tuning.models[model_of(record)].labels
    labels.pop("managed-by")
    if managed_by is not None:
        labels["managed-by"] = managed_by


@dataclass
class History:
    """A lineage with three passing managed models and every kind of model that must survive."""

    p: Pipeline
    faq: Lineage
    managed: list[JobRecord]
    unlabelled: JobRecord
    other_deployment: JobRecord
    failed_smoke: JobRecord
    other_lineage: JobRecord
    standalone: str
    """A model sftpilot never recorded at all."""

    def survivors(self) -> list[str]:
        records = (self.unlabelled, self.other_deployment, self.failed_smoke, self.other_lineage)
        return [model_of(r) for r in records] + [self.standalone]


def history() -> History:
    p = Pipeline(operation_polls=OPERATION_POLLS)
    faq = Lineage(p)
    managed = [faq.passed("v1"), faq.passed("v2")]
    unlabelled = faq.passed("v3-relabelled")
    other_deployment = faq.passed("v4-other-deployment")
    p.tuning.responder = lambda endpoint, request: "no idea"
    failed_smoke = faq.passed("v5-failed-smoke")
    p.tuning.responder = lambda endpoint, request: ANSWER
    managed.append(faq.passed("v6"))
    other_lineage = Lineage(p, "support-bot").passed("v1")
    relabel(p, unlabelled, None)
    relabel(p, other_deployment, "sftpilot-other")
    standalone = "projects/local/locations/us-central1/models/hand-made@1"
    p.tuning.add_foreign_model(standalone, {"team": "ml"})
    assert failed_smoke.smoke_test.passed is False
    return History(p, faq, managed, unlabelled, other_deployment, failed_smoke, other_lineage, standalone)


def deletions(p: Pipeline) -> dict[str, int]:
    return {op: p.tuning.calls[op] for op in ("undeploy_model", "delete_endpoint", "delete_model")}


def test_only_superseded_managed_models_of_the_lineage_are_deleted():
    h = history()
    h.faq.set_config(cleanup_yaml(keep_last=1))

    newest = h.faq.passed("v7")

    models = h.p.tuning.models
    assert model_of(newest) in models, "the model that just passed is kept"
    for survivor in h.survivors():
        assert survivor in models, survivor
    for retired in h.managed:
        assert model_of(retired) not in models, retired.dataset.name
        assert not any(e.startswith(retired.tuning.endpoint) for e in h.p.tuning.endpoints)
        assert h.p.jobs.get(retired.id).cleanup.retired_by == newest.id
    assert h.p.tuning.endpoints.get(newest.tuning.endpoint) == [model_of(newest)]
    deleted = {e.data["model"] for e in h.p.publisher.of_type(EventType.MODEL_DELETED.value)}
    assert deleted == {model_of(r) for r in h.managed}
    for foreign in (h.unlabelled, h.other_deployment):
        entry = h.p.jobs.get(foreign.id).cleanup.retirement
        assert entry["status"] == "not_managed" and h.p.jobs.get(foreign.id).cleanup.retired_by is None
    assert h.p.tuning.calls["delete_model"] == len(h.managed)


def test_dry_run_deletes_nothing_and_announces_what_would_go():
    h = history()
    h.faq.set_config(cleanup_yaml(keep_last=1, dry_run=True))
    before = deletions(h.p)
    models_before = set(h.p.tuning.models)

    newest = h.faq.passed("v7")

    assert deletions(h.p) == before == {"undeploy_model": 0, "delete_endpoint": 0, "delete_model": 0}
    assert set(h.p.tuning.models) == models_before | {model_of(newest)}
    announced = h.p.publisher.of_type(EventType.MODEL_DELETED.value)
    assert {e.data["model"] for e in announced} == {model_of(r) for r in h.managed}
    assert all(e.data["dry_run"] is True and e.data["status"] == "would_retire" for e in announced)
    run = h.p.jobs.get(newest.id).cleanup.run
    assert run["dry_run"] is True and run["retired_models"] == []
    assert all((c := h.p.jobs.get(r.id).cleanup) is None or c.retired_by is None for r in h.managed)


def test_a_failed_smoke_test_deletes_nothing():
    h = history()
    h.faq.set_config(cleanup_yaml(keep_last=1))
    models_before = set(h.p.tuning.models)
    h.p.tuning.responder = lambda endpoint, request: "no idea"

    newest = h.faq.passed("v7")

    assert deletions(h.p) == {"undeploy_model": 0, "delete_endpoint": 0, "delete_model": 0}
    assert set(h.p.tuning.models) == models_before | {model_of(newest)}
    assert h.p.publisher.of_type(EventType.MODEL_DELETED.value) == []
    stored = h.p.jobs.get(newest.id)
    assert stored.smoke_test.passed is False and "older models" in stored.cleanup.skipped
    assert h.p.event_counts(EventType.SMOKE_TEST_FAILED)[f"{newest.id}:smoke_test"] == 1


def test_the_newest_passing_model_survives_an_older_upload_that_passes_later():
    p = Pipeline(operation_polls=OPERATION_POLLS)
    faq = Lineage(p)
    old = [faq.passed("v1"), faq.passed("v2")]
    faq.set_config(cleanup_yaml(keep_last=1))
    slow = faq.submit("v3-uploaded-first")
    fast = faq.submit("v4-uploaded-second")
    fast = faq.finish(fast)  # v4 passes first and retires v1, v2
    slow = faq.finish(slow)  # v3 passes later: it must not retire v4, the newest passing model

    assert model_of(fast) in p.tuning.models and model_of(slow) in p.tuning.models
    assert all(model_of(r) not in p.tuning.models for r in old)
    assert p.jobs.get(slow.id).cleanup.run["kept"] == [fast.id, slow.id]
    assert p.tuning.calls["delete_model"] == 2


def test_keep_last_keeps_that_many_newest_passing_models_and_foreign_ones_count_but_survive():
    h = history()
    h.faq.set_config(cleanup_yaml(keep_last=3))

    newest = h.faq.passed("v7")

    # Newest passing models of the lineage: v7, v6, v4 (another deployment's): those three are kept;
    # of the older ones only ours (v1, v2) go; v3 lost our label and stays.
    models = h.p.tuning.models
    assert model_of(newest) in models and model_of(h.managed[2]) in models
    assert all(m in models for m in h.survivors())
    assert all(model_of(r) not in models for r in h.managed[:2])
    assert h.p.jobs.get(newest.id).cleanup.run["kept"] == [newest.id, h.managed[2].id, h.other_deployment.id]
    assert h.p.tuning.calls["delete_model"] == 2


# --- property: random lineage histories -----------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One older tuned model of the lineage (or of a neighbour lineage)."""

    smoke_passed: bool
    label: str | None
    """``managed-by`` on the live model: ours, another deployment's, or none."""
    lineage: str


versions = st.builds(
    Version,
    smoke_passed=st.booleans(),
    label=st.sampled_from([DEPLOYMENT, DEPLOYMENT, DEPLOYMENT, "sftpilot-other", None]),
    lineage=st.sampled_from(["faq", "faq", "faq", "support-bot"]),
)


def _seed_record(
    p: Pipeline, n: int, version: Version, config: dict, hours: float, *, tested: bool = True
) -> JobRecord:
    """A SUCCEEDED record created ``hours`` after T0 (its smoke test recorded when ``tested``)."""
    when = T0 + timedelta(hours=hours)
    ref = DatasetRef(BUCKET, f"datasets/{version.lineage}/v{n}.jsonl", 1_700_000_000_000_000 + n, version.lineage)
    record = new_record(ref, when)
    labels = {"sftpilot-key": record.id, "sftpilot-lineage": version.lineage, "managed-by": DEPLOYMENT}
    job = p.tuning.create_job(TuningJobSpec("gemini-2.5-flash", ref.gcs_uri, f"v{n}", labels=labels))
    ended = p.tuning.set_state(job.name, TuningState.SUCCEEDED)
    model = p.tuning.models[ended.tuned_model]
    model.labels.pop("managed-by")
    if version.label is not None:
        model.labels["managed-by"] = version.label
    record = record.transition(JobStatus.SUBMITTING, when).transition(JobStatus.PENDING, when, tuning_job=job.name)
    record = record.transition(JobStatus.SUCCEEDED, when, tuning=tuning_view(ended)).with_changes(when, config=config)
    if tested:
        smoke = {"event_id": f"{record.id}:SUCCEEDED", "passed": version.smoke_passed}
        record = record.with_changes(when, smoke_test=smoke)
    assert p.jobs.create(record)
    return record


def _job_succeeded(record: JobRecord) -> OutgoingEvent:
    return build_event(
        EventType.JOB_SUCCEEDED,
        job_id=record.id,
        lineage=record.lineage,
        state="SUCCEEDED",
        data=job_event_data(record),
    )


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(versions, max_size=8), st.integers(1, 3), st.booleans(), st.integers(0, 8))
def test_random_histories_never_lose_a_foreign_or_a_newest_passing_model(
    older: list[Version], keep_last: int, dry_run: bool, new_position: int
):
    p = Pipeline(quota=100, operation_polls=OPERATION_POLLS)
    config = TuningConfig.from_dict(
        {
            "smoke_test": {"prompts": [{"prompt": "hi", "contains": "Acme Support"}]},
            "cleanup": {"enabled": True, "keep_last": keep_last, "dry_run": dry_run},
        }
    ).to_dict()
    seeded = [_seed_record(p, n, v, config, hours=n) for n, v in enumerate(older)]
    # The job passing now may be older than part of the history (uploaded earlier, finished later).
    ours = Version(smoke_passed=True, label=DEPLOYMENT, lineage="faq")
    new = _seed_record(p, 100, ours, config, hours=new_position - 0.5, tested=False)
    models_before = set(p.tuning.models)

    p.complete_until_acked(to_message(_job_succeeded(new)))

    deleted = models_before - set(p.tuning.models)
    assert p.jobs.get(new.id).smoke_test.passed is True
    if dry_run:
        assert deleted == set()
    history = {model_of(r): (r, v) for r, v in zip(seeded, older, strict=True)}
    for model in deleted:
        _, version = history[model]
        assert (version.label, version.lineage, version.smoke_passed) == (DEPLOYMENT, "faq", True), version
    passing = [(r.created_at, model_of(r)) for r, v in history.values() if v.lineage == "faq" and v.smoke_passed]
    newest_first = [model for _, model in sorted([*passing, (new.created_at, model_of(new))], reverse=True)]
    assert model_of(new) not in deleted
    assert not set(newest_first[:keep_last]) & deleted, "one of the keep_last newest passing models was deleted"


def test_operations_that_outlast_a_pass_are_resumed_and_nothing_counts_as_deleted_before():
    h = history()
    h.faq.set_config(cleanup_yaml(keep_last=1))
    # One poll per pass: every operation outlasts the pass that started it.
    h.p.completion_options = replace(
        h.p.completion_options, operation_wait=OperationWait(polls=1, interval_seconds=0.0)
    )
    deployments = sum(len(h.p.tuning.models[model_of(r)].deployments) for r in h.managed)
    before = deletions(h.p)
    newest = h.faq.submit("v7")
    h.p.finish(newest)
    h.p.clock.advance(60)
    h.p.until_acked(h.p.poll)
    [succeeded] = [e for e in h.p.publisher.published if e.event_id == f"{newest.id}:SUCCEEDED"]
    message = to_message(succeeded)
    h.p.delivered = len(h.p.publisher.published)

    with pytest.raises(CleanupPendingError):
        h.p.complete(message)
    assert h.p.publisher.of_type(EventType.MODEL_DELETED.value) == []
    assert all(model_of(r) in h.p.tuning.models for r in h.managed)
    pending = [h.p.jobs.get(r.id).cleanup.retirement for r in h.managed]
    assert all(entry["status"] == "pending" and entry["steps"][-1]["operation"] for entry in pending)

    # Redeliveries poll the recorded operations and go on; no mutation is ever sent twice.
    for _ in range(20):
        h.p.clock.advance(h.p.settings.lease_seconds + 1)
        try:
            h.p.complete(message)
            break
        except CleanupPendingError:
            continue
    h.p.deliver_new_events()
    for retired in h.managed:
        assert model_of(retired) not in h.p.tuning.models
        assert h.p.jobs.get(retired.id).cleanup.retired_by == newest.id
    deleted = [e.data["model"] for e in h.p.publisher.of_type(EventType.MODEL_DELETED.value)]
    assert sorted(deleted) == sorted(model_of(r) for r in h.managed)
    after = deletions(h.p)
    assert after["delete_model"] - before["delete_model"] == len(h.managed)
    assert after["undeploy_model"] - before["undeploy_model"] == deployments
