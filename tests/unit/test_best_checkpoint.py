"""Best checkpoint (``gate.best_checkpoint``): the choice, the tie rule, the default-checkpoint
update, the undeploy of the other checkpoint endpoints only with cleanup on, and redelivery."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_completion import BUCKET
from test_gate import GatePipeline, gate_config

from shared.best_checkpoint import CheckpointScore, pick_best
from shared.cleanup import OperationWait
from shared.errors import CleanupPendingError
from shared.gate import find_live, serving_endpoint
from shared.record_parts import part_dict
from shared.tuning_config import load_tuning_yaml

# --- the choice ----------------------------------------------------------------------------------


def score(checkpoint_id: str, value: float, scored: int = 4) -> CheckpointScore:
    n = int(checkpoint_id)
    return CheckpointScore(checkpoint_id, n, n * 10, f"e{checkpoint_id}", value, scored)


def test_the_highest_score_wins_whatever_its_position():
    best, reason = pick_best([score("1", 0.9), score("2", 0.4), score("3", 0.6)])
    assert best is not None and best.checkpoint_id == "1"
    assert "highest mean score 0.9000" in reason and "tied" not in reason


def test_a_tie_goes_to_the_later_checkpoint_and_says_why():
    best, reason = pick_best([score("3", 0.7), score("1", 0.7), score("2", 0.5)])
    assert best is not None and best.checkpoint_id == "3"
    assert "tied with 1" in reason and "later checkpoint" in reason


def test_fewer_than_two_scored_checkpoints_choose_nothing():
    best, reason = pick_best([score("1", 0.9), score("2", 0.0, scored=0)])
    assert best is None and "1 scored checkpoint" in reason


def test_the_key_is_validated_and_defaults_to_off():
    assert load_tuning_yaml("gate: {enabled: true}\n").gate.best_checkpoint is False
    assert load_tuning_yaml("gate: {best_checkpoint: true}\n").gate.best_checkpoint is True
    with pytest.raises(Exception, match=r"gate\.best_checkpoint.*must be true or false"):
        load_tuning_yaml("gate: {best_checkpoint: 'yes'}\n")


# --- inside handle_completion ----------------------------------------------------------------------


class CheckpointPipeline(GatePipeline):
    """Three checkpoints per job: ``<endpoint>-c1``, ``<endpoint>-c2`` and the tuned endpoint (3)."""

    def __init__(self) -> None:
        super().__init__()
        self.tuning.checkpoints_per_job = 3

    def run_checkpoints(self, n: int, qualities: tuple[str, str, str], cleanup: bool = True, **gate) -> str:
        cfg = gate_config(best_checkpoint=True, **gate)
        cfg["cleanup"]["enabled"] = cleanup
        rec, message = self.tuned(n, cfg)
        endpoint = str(part_dict((rec.tuning) or {})["endpoint"])
        for suffix, quality in zip(("-c1", "-c2", ""), qualities, strict=True):
            self.quality[endpoint + suffix] = quality
        self.complete(message)
        self.last_message = message
        return rec.id


@pytest.fixture
def cpipe() -> CheckpointPipeline:
    return CheckpointPipeline()


def deployed_endpoints(pipe: CheckpointPipeline, job_id: str) -> set[str]:
    return {d.endpoint for d in pipe.tuning.models[pipe.model(job_id)].deployments}


def test_the_best_checkpoint_becomes_the_default_and_the_others_are_undeployed(cpipe):
    v1 = cpipe.run_checkpoints(1, ("exact", "half", "wrong"))
    rec = cpipe.record(v1)
    endpoint = str(part_dict((rec.tuning) or {})["endpoint"])
    choice = (part_dict(rec.gate) or {})["checkpoints"]
    assert choice["best"]["checkpoint_id"] == "1" and choice["default_checkpoint_set"] is True
    assert [s["checkpoint_id"] for s in choice["scores"]] == ["1", "2", "3"]
    one, two, three = (s["score"] for s in choice["scores"])
    assert one == 1.0 and 0.0 < two < 1.0 and three == 0.0
    assert cpipe.tuning.calls["set_default_checkpoint"] == 1
    assert cpipe.tuning.models[cpipe.model(v1)].default_checkpoint_id == "1"
    # The gate judged the best checkpoint's answers (exact) against the base model (wrong).
    assert (part_dict(rec.gate) or {})["verdict"] == "PROMOTED"
    assert serving_endpoint(rec) == endpoint + "-c1"
    # Cleanup on: the other two checkpoint endpoints are undeployed and deleted, the best one stays.
    assert deployed_endpoints(cpipe, v1) == {endpoint + "-c1"}
    assert endpoint not in cpipe.tuning.endpoints and endpoint + "-c2" not in cpipe.tuning.endpoints
    assert (part_dict(rec.cleanup) or {})["checkpoints"]["endpoints"] == [endpoint, endpoint + "-c2"]
    report = json.loads(cpipe.blobs.read_bytes(BUCKET, (part_dict(rec.gate) or {})["report_uri"].split("/", 3)[3]))
    assert report["checkpoints"]["best"]["checkpoint_id"] == "1" and len(report["checkpoints"]["scores"]) == 3

    # A redelivery changes nothing: no prompt, no update, no undeploy runs again.
    calls = dict(cpipe.tuning.calls)
    cpipe.complete(cpipe.last_message)
    assert cpipe.tuning.calls["set_default_checkpoint"] == 1
    assert cpipe.tuning.calls["generate"] == calls["generate"]
    assert cpipe.tuning.calls["undeploy_model"] == calls["undeploy_model"]


def test_the_next_model_is_compared_with_the_live_models_best_checkpoint(cpipe):
    v1 = cpipe.run_checkpoints(1, ("exact", "half", "wrong"))
    live_endpoint = serving_endpoint(cpipe.record(v1))
    v2 = cpipe.run_checkpoints(2, ("half", "half", "half"))
    gate = part_dict(cpipe.record(v2).gate) or {}
    live = next(c for c in gate["comparisons"] if c["against"] == "live")
    assert live["old_mean"] == 1.0  # the live model's best checkpoint answered exactly
    assert gate["verdict"] == "REJECTED"
    assert any(endpoint == live_endpoint for endpoint, _ in cpipe.tuning.generations)
    live_now = find_live(cpipe.jobs.get(j) for j in (v2, v1))
    assert live_now is not None and live_now.id == v1


def test_without_cleanup_the_default_is_set_but_nothing_is_undeployed(cpipe):
    v1 = cpipe.run_checkpoints(1, ("half", "exact", "wrong"), cleanup=False)
    endpoint = str(part_dict((cpipe.record(v1).tuning) or {})["endpoint"])
    assert cpipe.tuning.models[cpipe.model(v1)].default_checkpoint_id == "2"
    assert cpipe.tuning.calls["set_default_checkpoint"] == 1
    assert cpipe.tuning.calls["undeploy_model"] == 0
    assert deployed_endpoints(cpipe, v1) == {endpoint, endpoint + "-c1", endpoint + "-c2"}
    assert "checkpoints" not in (part_dict(cpipe.record(v1).cleanup) or {})


def test_equal_checkpoints_keep_the_last_one_and_retire_the_intermediate_endpoints(cpipe):
    v1 = cpipe.run_checkpoints(1, ("exact", "exact", "exact"))
    rec = cpipe.record(v1)
    endpoint = str(part_dict((rec.tuning) or {})["endpoint"])
    choice = (part_dict(rec.gate) or {})["checkpoints"]
    assert choice["best"]["checkpoint_id"] == "3" and "later checkpoint" in choice["reason"]
    assert serving_endpoint(rec) == endpoint
    assert deployed_endpoints(cpipe, v1) == {endpoint}


def test_with_the_gate_off_the_choice_is_still_recorded(cpipe):
    cfg_gate = {"enabled": False}
    v1 = cpipe.run_checkpoints(1, ("wrong", "exact", "half"), **cfg_gate)
    gate = part_dict(cpipe.record(v1).gate) or {}
    assert "verdict" not in gate
    assert gate["checkpoints"]["best"]["checkpoint_id"] == "2" and gate["report_uri"]
    assert cpipe.tuning.models[cpipe.model(v1)].default_checkpoint_id == "2"


def test_answers_the_smoke_test_already_has_are_not_asked_again(cpipe):
    cfg = gate_config(best_checkpoint=True)
    cfg["smoke_test"]["checkpoints"] = True  # the smoke test prompts every checkpoint itself
    rec, message = cpipe.tuned(1, cfg)
    endpoint = str(part_dict((rec.tuning) or {})["endpoint"])
    cpipe.quality.update({endpoint + "-c1": "half", endpoint + "-c2": "exact", endpoint: "half"})
    cpipe.complete(message)
    asked = [e for e, _ in cpipe.tuning.generations]
    for checkpoint_endpoint in (endpoint, endpoint + "-c1", endpoint + "-c2"):
        assert asked.count(checkpoint_endpoint) == len(cfg["smoke_test"]["prompts"])
    assert (part_dict((cpipe.record(rec.id).gate) or {})["checkpoints"]["best"] or {})["checkpoint_id"] == "2"


def test_an_undeploy_still_running_is_recorded_and_the_redelivery_resumes_it(cpipe):
    cpipe.tuning.operation_polls = 3  # each undeploy/delete operation answers "running" 3 times
    cpipe.options = replace(cpipe.options, operation_wait=OperationWait(polls=2, interval_seconds=0.0))
    cfg = gate_config(best_checkpoint=True)
    rec, message = cpipe.tuned(1, cfg)
    endpoint = str(part_dict((rec.tuning) or {})["endpoint"])
    cpipe.quality.update({endpoint + "-c1": "exact", endpoint + "-c2": "half", endpoint: "wrong"})
    with pytest.raises(CleanupPendingError):
        cpipe.complete(message)
    steps = (part_dict(cpipe.record(rec.id).cleanup) or {})["checkpoints"]["steps"]
    assert steps[-1]["result"] == "pending" and steps[-1]["operation"]
    sent = cpipe.tuning.calls["undeploy_model"]

    for _ in range(5):  # redeliveries: the recorded operation is polled, not sent again
        try:
            cpipe.complete(message)
            break
        except CleanupPendingError:
            continue
    assert deployed_endpoints(cpipe, rec.id) == {endpoint + "-c1"}
    assert cpipe.tuning.calls["undeploy_model"] == 2  # one per undeployed endpoint, never repeated
    assert sent >= 1
    assert cpipe.tuning.calls["set_default_checkpoint"] == 1
    assert all(
        s["result"] != "pending" for s in (part_dict(cpipe.record(rec.id).cleanup) or {})["checkpoints"]["steps"]
    )
