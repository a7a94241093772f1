"""Retirement planning (pure) and execution (steps, NotFound = done, safety) on the fakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from helpers import T0

from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.cleanup import (
    Action,
    CleanupPolicy,
    OperationWait,
    StepResult,
    TargetStatus,
    iter_lineage_candidates,
    model_deleted_event_id,
    plan_own_model_cleanup,
    plan_retirement,
    recorded_endpoints,
    retire_model,
    run_cleanup,
    traffic_split_without,
)
from shared.errors import CleanupPendingError, InvalidArgumentError, PermissionDeniedError, TransientBackendError
from shared.ports import DeployedModelRef, TuningJobSpec
from shared.record_parts import CleanupRecord
from shared.records import DatasetRef, JobRecord
from shared.retry import RetryPolicy
from shared.states import JobStatus, TuningState
from shared.tuning_view import tuning_view

DEPLOYMENT = "sftpilot-test"
FAST = RetryPolicy(attempts=3, initial_backoff_seconds=0.0)


class Lineage:
    """A lineage of tuned jobs on the fakes: records in the store, models in the backend."""

    def __init__(self) -> None:
        self.jobs = FakeJobStore()
        self.tuning = FakeTuningBackend(quota=100)

    def job(
        self,
        n: int,
        *,
        lineage: str = "faq",
        passed: bool | None = True,
        labels: dict[str, str] | None = None,
        status: JobStatus = JobStatus.SUCCEEDED,
    ) -> JobRecord:
        spec = TuningJobSpec(
            "gemini-2.5-flash",
            f"gs://bkt/datasets/{lineage}/v{n}.jsonl",
            f"{lineage}-v{n}",
            labels={"managed-by": DEPLOYMENT, "sftpilot-lineage": lineage} if labels is None else labels,
        )
        job = self.tuning.create_job(spec)
        ended = self.tuning.set_state(
            job.name, TuningState.SUCCEEDED if status is JobStatus.SUCCEEDED else TuningState.FAILED
        )
        record = JobRecord(
            id=f"{lineage}-v{n}",
            dataset=DatasetRef("bkt", f"datasets/{lineage}/v{n}.jsonl", 1000 + n, lineage),
            status=status,
            created_at=T0 + timedelta(hours=n),
            updated_at=T0 + timedelta(hours=n),
            tuning_job=job.name,
            tuning=tuning_view(ended),
            smoke_test=None if passed is None else {"passed": passed},
        )
        assert self.jobs.create(record)
        return record

    def model(self, record: JobRecord) -> str:
        return str(record.tuning.tuned_model)

    def get(self, record: JobRecord) -> JobRecord:
        stored = self.jobs.get(record.id)
        assert stored is not None
        return stored


def _policy(keep_last: int = 1, dry_run: bool = False) -> CleanupPolicy:
    return CleanupPolicy(enabled=True, keep_last=keep_last, dry_run=dry_run)


# --- planning ------------------------------------------------------------------------------------


def test_policy_is_read_from_the_config_with_safe_defaults():
    assert CleanupPolicy.from_config(None) == CleanupPolicy(enabled=False, keep_last=1, dry_run=False, on_failure=False)
    assert CleanupPolicy.from_config({"cleanup": {"enabled": True, "keep_last": 0}}).keep_last == 1


def test_keep_last_keeps_the_newest_and_retires_the_rest_newest_first():
    lin = Lineage()
    v1, v2, v3, v4 = (lin.job(n) for n in (1, 2, 3, 4))
    plan = plan_retirement([v4, v3, v2, v1], v4, _policy(keep_last=2), DEPLOYMENT)
    assert plan.kept == (v4.id, v3.id)
    assert [t.job_id for t in plan.retire] == [v2.id, v1.id]
    assert plan.retire[0].model == lin.model(v2)
    assert plan.retire[0].endpoints == recorded_endpoints(v2)
    assert len(plan.retire[0].endpoints) == 2  # the job's endpoint and its checkpoint endpoint


def test_the_job_that_just_passed_is_kept_even_when_it_is_older():
    lin = Lineage()
    v1, v2, v3 = (lin.job(n) for n in (1, 2, 3))
    plan = plan_retirement([v3, v2, v1], v1, _policy(keep_last=1), DEPLOYMENT)
    assert plan.kept == (v3.id, v1.id)
    assert [t.job_id for t in plan.retire] == [v2.id]


def test_candidates_that_are_not_live_passing_models_are_skipped_with_reasons():
    lin = Lineage()
    new = lin.job(9)
    failing = lin.job(1, passed=False)
    untested = lin.job(2, passed=None)
    retired = replace(lin.job(3), cleanup={"retired_by": "faq-v5"})
    other = lin.job(4, lineage="billing")
    no_model = replace(lin.job(5), tuning={"tuned_model": None})
    same_model = replace(lin.job(6), tuning=new.tuning)
    failed_job = lin.job(7, status=JobStatus.FAILED)
    plan = plan_retirement(
        [new, failing, untested, retired, other, no_model, same_model, failed_job], new, _policy(), DEPLOYMENT
    )
    assert plan.retire == ()
    assert plan.kept == (new.id,)
    assert {s.job_id: s.reason for s in plan.skipped} == {
        failing.id: "smoke test did not pass (only passing models are retired)",
        untested.id: "smoke test did not pass (only passing models are retired)",
        retired.id: "already retired by faq-v5",
        other.id: "belongs to lineage 'billing'",
        no_model.id: "no tuned model recorded",
        same_model.id: "same model as the job that just passed",
        failed_job.id: "status FAILED",
    }


def test_lineage_candidates_are_read_page_by_page():
    lin = Lineage()
    for n in range(5):
        lin.job(n)
    lin.job(9, lineage="other")
    found = list(iter_lineage_candidates(lin.jobs, "faq", page_size=2))
    assert [r.id for r in found] == [f"faq-v{n}" for n in (4, 3, 2, 1, 0)]
    assert lin.jobs.queries == 3


def test_on_failure_plan_targets_the_jobs_own_model():
    lin = Lineage()
    rec = lin.job(1, passed=None)
    plan = plan_own_model_cleanup(rec, CleanupPolicy(on_failure=True), DEPLOYMENT)
    assert [t.model for t in plan.retire] == [lin.model(rec)]
    assert not plan.superseded and plan.kept == ()
    empty = plan_own_model_cleanup(replace(rec, tuning=None), CleanupPolicy(on_failure=True), DEPLOYMENT)
    assert empty.retire == () and empty.skipped[0].reason == "no tuned model recorded"


# --- execution -----------------------------------------------------------------------------------


def _target(lin: Lineage, record: JobRecord):
    newer = lin.job(100 + len(lin.jobs.all()))
    plan = plan_retirement([record], newer, _policy(), DEPLOYMENT)
    [target] = plan.retire
    return target


def test_retiring_undeploys_everywhere_deletes_our_endpoints_then_the_model():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    model = lin.model(v1)
    endpoint, checkpoint = target.endpoints
    outcome = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.RETIRED
    assert [(s.action, s.result) for s in outcome.steps] == [
        (Action.CHECK_LABELS, StepResult.DONE),
        (Action.UNDEPLOY, StepResult.DONE),
        (Action.UNDEPLOY, StepResult.DONE),
        (Action.DELETE_ENDPOINT, StepResult.DONE),
        (Action.DELETE_ENDPOINT, StepResult.DONE),
        (Action.DELETE_MODEL, StepResult.DONE),
    ]
    assert model not in lin.tuning.models
    assert endpoint not in lin.tuning.endpoints and checkpoint not in lin.tuning.endpoints
    assert outcome.endpoints == [endpoint, checkpoint]


def test_a_model_without_our_label_is_never_touched():
    lin = Lineage()
    foreign = lin.job(1, labels={"managed-by": "someone-else"})
    target = _target(lin, foreign)
    outcome = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.NOT_MANAGED
    assert [(s.action, s.result) for s in outcome.steps] == [(Action.CHECK_LABELS, StepResult.SKIPPED)]
    assert "someone-else" in outcome.steps[0].detail
    assert lin.model(foreign) in lin.tuning.models
    assert all(e in lin.tuning.endpoints for e in target.endpoints)
    for op in ("undeploy_model", "delete_endpoint", "delete_model"):
        assert lin.tuning.calls[op] == 0


def test_a_model_with_no_labels_at_all_is_never_touched():
    lin = Lineage()
    unlabelled = lin.job(1, labels={})
    outcome = retire_model(_target(lin, unlabelled), tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False)
    assert outcome.status is TargetStatus.NOT_MANAGED
    assert lin.model(unlabelled) in lin.tuning.models


def test_an_already_deleted_model_counts_as_done():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    first = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    again = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert first.status is TargetStatus.RETIRED
    assert again.status is TargetStatus.ALREADY_GONE
    assert [(s.action, s.result) for s in again.steps] == [
        (Action.CHECK_LABELS, StepResult.NOT_FOUND),
        (Action.DELETE_ENDPOINT, StepResult.NOT_FOUND),
        (Action.DELETE_ENDPOINT, StepResult.NOT_FOUND),
    ]


def test_dry_run_reads_but_changes_nothing():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    before_models, before_endpoints = set(lin.tuning.models), dict(lin.tuning.endpoints)
    outcome = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=True, retry=FAST)
    assert outcome.status is TargetStatus.WOULD_RETIRE
    assert [s.result for s in outcome.steps] == [StepResult.DONE] + [StepResult.DRY_RUN] * 5
    assert set(lin.tuning.models) == before_models and lin.tuning.endpoints == before_endpoints


def test_an_endpoint_still_serving_another_model_is_kept():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    shared_endpoint = target.endpoints[0]
    lin.tuning.endpoints[shared_endpoint].append("projects/p/locations/l/models/other@1")
    outcome = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.RETIRED
    kept = [s for s in outcome.steps if s.action is Action.DELETE_ENDPOINT and s.target == shared_endpoint]
    assert kept[0].result is StepResult.SKIPPED and kept[0].detail.startswith("kept:")
    assert shared_endpoint in lin.tuning.endpoints
    assert lin.model(v1) not in lin.tuning.models


def test_delete_model_refused_while_deployed_undeploys_again_and_retries():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    model = lin.model(v1)
    # A deployment that appears between our undeploys and the delete.
    late = DeployedModelRef(target.endpoints[0] + "-late", "late1")
    original_delete = lin.tuning.delete_model

    def delete_once_redeployed(name: str) -> None:
        if lin.tuning.calls["delete_model"] == 0:
            lin.tuning.endpoints[late.endpoint] = [name]
            lin.tuning.models[name].deployments.append(late)
        original_delete(name)

    lin.tuning.delete_model = delete_once_redeployed  # type: ignore[method-assign]
    slept: list[float] = []
    outcome = retire_model(
        target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=RetryPolicy(3, 0.25), sleep=slept.append
    )
    assert outcome.status is TargetStatus.RETIRED
    assert model not in lin.tuning.models
    assert (Action.UNDEPLOY, f"{late.endpoint}#late1") in [(s.action, s.target) for s in outcome.steps]
    assert slept == [0.25]


def test_transient_errors_are_retried_and_then_propagate():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    lin.tuning.failures.fail_next("undeploy_model", TransientBackendError("undeploy", 503, "busy"))
    outcome = retire_model(
        target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST, sleep=lambda s: None
    )
    assert outcome.status is TargetStatus.RETIRED

    v2 = lin.job(2)
    lin.tuning.failures.fail_next("delete_model", *[TransientBackendError("delete", 503, "busy")] * 3)
    with pytest.raises(TransientBackendError):
        retire_model(
            _target(lin, v2), tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST, sleep=lambda s: None
        )


def test_a_fatal_error_is_recorded_as_a_failed_step():
    lin = Lineage()
    v1 = lin.job(1)
    lin.tuning.failures.fail_next("delete_endpoint", PermissionDeniedError("delete_endpoint", 403, "denied"))
    outcome = retire_model(_target(lin, v1), tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.FAILED
    last = outcome.steps[-1]
    assert (last.action, last.result) == (Action.DELETE_ENDPOINT, StepResult.FAILED)
    assert last.detail.startswith("E_PERMISSION_DENIED")
    assert lin.model(v1) in lin.tuning.models


def test_a_non_precondition_invalid_argument_on_delete_fails_the_model():
    lin = Lineage()
    v1 = lin.job(1)
    lin.tuning.failures.fail_next(
        "delete_model", InvalidArgumentError("delete_model", 400, "bad name", "INVALID_ARGUMENT")
    )
    outcome = retire_model(_target(lin, v1), tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.FAILED
    assert outcome.steps[-1].action is Action.DELETE_MODEL


# --- recording -----------------------------------------------------------------------------------


def test_run_cleanup_records_steps_on_both_records_and_stages_one_event_per_model():
    lin = Lineage()
    v1, v2, v3 = (lin.job(n) for n in (1, 2, 3))
    plan = plan_retirement(list(iter_lineage_candidates(lin.jobs, "faq")), v3, _policy(), DEPLOYMENT)
    report = run_cleanup(plan, jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id=f"{v3.id}:SUCCEEDED")
    assert report.retired_models == [lin.model(v2), lin.model(v1)]

    old = lin.get(v1)
    assert old.cleanup is not None and old.cleanup.retired_by == v3.id
    assert old.cleanup.retirement["status"] == "retired"
    assert [s["action"] for s in old.cleanup.retirement["steps"]][-1] == "delete_model"

    new = lin.get(v3)
    assert new.cleanup is not None
    assert new.cleanup.run["kept"] == [v3.id]
    assert [t["job_id"] for t in new.cleanup.run["targets"]] == [v2.id, v1.id]
    assert [e.event_id for e in new.outbox] == [
        model_deleted_event_id(v3.id, lin.model(v2)),
        model_deleted_event_id(v3.id, lin.model(v1)),
    ]
    data = new.outbox[1].payload["data"]
    assert (data["model"], data["retired_job"], data["superseded_by"], data["dry_run"]) == (
        lin.model(v1),
        v1.id,
        v3.id,
        False,
    )
    assert data["endpoints"] == list(recorded_endpoints(v1))

    # Running the same cleanup again (a redelivery) adds nothing.
    writes = lin.jobs.writes
    run_cleanup(plan, jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id=f"{v3.id}:SUCCEEDED")
    assert len(lin.get(v3).outbox) == 2
    assert lin.jobs.writes == writes


def test_dry_run_is_recorded_without_marking_anything_retired():
    lin = Lineage()
    v1, v2 = lin.job(1), lin.job(2)
    plan = plan_retirement([v2, v1], v2, _policy(dry_run=True), DEPLOYMENT)
    run_cleanup(plan, jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id="e")
    old = lin.get(v1)
    assert old.cleanup is not None and old.cleanup.retired_by is None
    assert old.cleanup.dry_run_retirement["status"] == "would_retire"
    [entry] = lin.get(v2).outbox
    assert entry.payload["data"]["dry_run"] is True
    assert lin.model(v1) in lin.tuning.models
    # still a candidate for the next (real) cleanup
    assert [t.job_id for t in plan_retirement([v2, old], v2, _policy(), DEPLOYMENT).retire] == [v1.id]


def test_foreign_models_get_no_event_and_no_retired_mark():
    lin = Lineage()
    foreign = lin.job(1, labels={})
    new = lin.job(2)
    plan = plan_retirement([new, foreign], new, _policy(), DEPLOYMENT)
    run_cleanup(plan, jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id="e")
    assert lin.get(new).outbox == ()
    stored = lin.get(foreign)
    assert stored.cleanup is not None and stored.cleanup.retired_by is None
    assert stored.cleanup.retirement["status"] == "not_managed"


# --- long-running operations, one retry layer, shared endpoints --------------------------------


def _retire_waiting(lin: Lineage, target, polls: int):
    """Retire with no sleeping and ``polls`` polls per operation."""
    wait = OperationWait(polls=polls, interval_seconds=0.0)
    return retire_model(
        target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST, sleep=lambda s: None, wait=wait
    )


def _slow_lineage(polls: int) -> Lineage:
    lin = Lineage()
    lin.tuning.operation_polls = polls
    return lin


def test_operations_are_polled_until_done_and_the_mutation_is_sent_once():
    lin = _slow_lineage(polls=2)
    v1 = lin.job(1)
    target = _target(lin, v1)
    outcome = _retire_waiting(lin, target, polls=5)
    assert outcome.status is TargetStatus.RETIRED
    assert lin.model(v1) not in lin.tuning.models
    assert (lin.tuning.calls["undeploy_model"], lin.tuning.calls["delete_model"]) == (2, 1)
    assert lin.tuning.calls["get_operation"] == 5 * 3  # 2 undeploys + 2 endpoints + 1 model, 3 polls each


def test_a_failed_poll_polls_again_and_never_resends_the_mutation():
    lin = _slow_lineage(polls=1)
    v1 = lin.job(1)
    target = _target(lin, v1)
    lin.tuning.failures.fail_next("get_operation", TransientBackendError("get_operation", 503, "busy"))
    outcome = retire_model(
        target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST, sleep=lambda s: None
    )
    assert outcome.status is TargetStatus.RETIRED
    assert lin.tuning.calls["undeploy_model"] == 2  # once per deployment, the failed poll did not resend


def test_an_unfinished_operation_leaves_the_step_pending_and_the_next_pass_resumes_it():
    lin = _slow_lineage(polls=4)
    v1, v2 = lin.job(1), lin.job(2)
    quick = OperationWait(polls=2, interval_seconds=0.0)

    def plan():
        return plan_retirement(list(iter_lineage_candidates(lin.jobs, "faq")), lin.get(v2), _policy(), DEPLOYMENT)

    with pytest.raises(CleanupPendingError) as raised:
        run_cleanup(
            plan(), jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id="e1", sleep=lambda s: None, wait=quick
        )
    [operation] = raised.value.operations
    cleanup = lin.get(v1).cleanup
    assert cleanup is not None and cleanup.retirement is not None
    retirement = cleanup.retirement
    assert retirement["status"] == "pending"
    assert retirement["steps"][-1] == {
        "action": "undeploy",
        "target": retirement["steps"][-1]["target"],
        "result": "pending",
        "detail": "operation still running; the next pass polls it",
        "operation": operation,
    }
    assert cleanup.retired_by is None
    assert lin.get(v2).outbox == ()  # nothing announced as deleted
    assert lin.model(v1) in lin.tuning.models

    # The redelivery re-plans, polls the recorded operation instead of undeploying again.
    sends = lin.tuning.calls["undeploy_model"]
    patient = OperationWait(polls=5, interval_seconds=0.0)
    report = run_cleanup(
        plan(), jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id="e1", sleep=lambda s: None, wait=patient
    )
    assert lin.tuning.calls["undeploy_model"] == sends + 1  # only the checkpoint deployment not sent before
    assert report.retired_models == [lin.model(v1)]
    assert (lin.get(v1).cleanup or CleanupRecord()).retired_by == v2.id
    assert [e.event_id for e in lin.get(v2).outbox] == [model_deleted_event_id(v2.id, lin.model(v1))]


def test_a_model_is_not_recorded_deleted_while_its_operations_run():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    lin.tuning.operation_polls = 5
    outcome = _retire_waiting(lin, target, polls=1)
    assert outcome.status is TargetStatus.PENDING
    assert not outcome.status.announces_deletion
    assert outcome.steps[-1].result is StepResult.PENDING and outcome.steps[-1].operation
    assert lin.model(v1) in lin.tuning.models


def test_a_cleanup_step_that_always_fails_costs_exactly_the_retry_attempts():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    lin.tuning.failures.fail_next("get_model", *[TransientBackendError("get_model", 503, "down")] * 10)
    with pytest.raises(TransientBackendError):
        retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST, sleep=lambda s: None)
    assert lin.tuning.calls["get_model"] == FAST.attempts


def test_traffic_split_gives_the_share_to_the_remaining_models_pro_rata():
    assert traffic_split_without({"a": 50, "b": 30, "c": 20}, ["a", "b", "c"], "a") == {"b": 60, "c": 40}
    assert traffic_split_without({"a": 100}, ["a", "b", "c"], "a") == {"b": 50, "c": 50}
    assert traffic_split_without({"a": 34, "b": 33, "c": 33}, ["a", "b", "c"], "a") == {"b": 50, "c": 50}
    assert traffic_split_without({"a": 0, "b": 100}, ["a", "b"], "a") is None  # no traffic: nothing to move
    assert traffic_split_without({"a": 100}, ["a"], "a") is None  # last model: the split empties itself
    split = traffic_split_without({"a": 10, "b": 1, "c": 1, "d": 1}, ["a", "b", "c", "d"], "a")
    assert split is not None and sum(split.values()) == 100


def test_undeploying_a_model_with_traffic_on_a_shared_endpoint_sends_a_traffic_split():
    lin = Lineage()
    v1 = lin.job(1)
    target = _target(lin, v1)
    endpoint = target.endpoints[0]
    # Another model shares v1's endpoint; v1 carries all the traffic.
    other = "projects/local/locations/us-central1/models/other@1"
    lin.tuning.add_foreign_model(other, {"managed-by": "someone-else"})
    lin.tuning.models[other].deployments.append(DeployedModelRef(endpoint, "other1"))
    lin.tuning.endpoints[endpoint].append(other)
    outcome = retire_model(target, tuning=lin.tuning, managed_by=DEPLOYMENT, dry_run=False, retry=FAST)
    assert outcome.status is TargetStatus.RETIRED
    undeploy = next(s for s in outcome.steps if s.action is Action.UNDEPLOY and s.target.startswith(endpoint + "#"))
    assert undeploy.result is StepResult.DONE and "other1" in undeploy.detail
    assert lin.tuning.traffic[endpoint] == {"other1": 100}
    assert endpoint in lin.tuning.endpoints  # still serves the other model


def test_the_fake_refuses_an_undeploy_that_would_strand_traffic():
    lin = Lineage()
    v1 = lin.job(1)
    endpoint = recorded_endpoints(v1)[0]
    other = "projects/local/locations/us-central1/models/other@1"
    lin.tuning.add_foreign_model(other, {})
    lin.tuning.models[other].deployments.append(DeployedModelRef(endpoint, "other1"))
    lin.tuning.endpoints[endpoint].append(other)
    deployed = lin.tuning.get_endpoint(endpoint).deployed_model_ids[0]
    with pytest.raises(InvalidArgumentError, match="trafficSplit"):
        lin.tuning.undeploy_model(endpoint, deployed)


def test_past_the_pass_budget_running_operations_are_left_pending_at_once():
    lin = _slow_lineage(polls=3)
    v1, v2 = lin.job(1), lin.job(2)
    plan = plan_retirement(list(iter_lineage_candidates(lin.jobs, "faq")), lin.get(v2), _policy(), DEPLOYMENT)
    slept: list[float] = []
    spent = OperationWait(polls=10, pass_budget_seconds=0.0)
    with pytest.raises(CleanupPendingError):
        run_cleanup(
            plan, jobs=lin.jobs, tuning=lin.tuning, clock=lambda: T0, event_id="e1", sleep=slept.append, wait=spent
        )
    assert slept == [] and lin.tuning.calls["get_operation"] == 1  # one look, no waiting
    assert ((lin.get(v1).cleanup or CleanupRecord()).retirement or {})["status"] == "pending"
