"""The quality gate: its statistics on constructed score tables, its config section, and its
decisions inside ``handle_completion`` on the fakes (promotion, rejection, hold, live-model
protection and ``on_reject``)."""

from __future__ import annotations

import json
import random

import pytest
from test_completion import BUCKET, Pipeline

from shared.gate import (
    GateOptions,
    PromptComparison,
    PromptOutcome,
    Verdict,
    compare,
    find_live,
    metric_score,
    overall_verdict,
    paired_bootstrap_interval,
)
from shared.ports import GenerationRequest
from shared.tuning_config import TuningConfig, load_tuning_yaml

OPTIONS = GateOptions(enabled=True)


def rows(pairs: list[tuple[float, float]]) -> list[PromptComparison]:
    return [PromptComparison(i, f"prompt {i}", new, old) for i, (new, old) in enumerate(pairs)]


# --- statistics ----------------------------------------------------------------------------------


def test_a_clearly_better_model_is_promoted():
    table = rows([(0.9, 0.2), (0.8, 0.3), (0.95, 0.1), (0.7, 0.4), (0.85, 0.2), (0.9, 0.5)])
    result = compare("base", "gemini-2.5-flash", table, OPTIONS)
    assert result.verdict is Verdict.PROMOTED
    assert (result.count(PromptOutcome.WIN), result.count(PromptOutcome.LOSS)) == (6, 0)
    assert result.ci_low > 0


def test_a_clearly_worse_model_is_rejected():
    table = rows([(0.1, 0.9), (0.2, 0.8), (0.0, 0.7), (0.3, 0.6), (0.1, 0.9)])
    result = compare("live", "m", table, OPTIONS)
    assert result.verdict is Verdict.REJECTED
    assert result.ci_high < 0
    assert "worse than live" in result.reason


def test_a_noisy_equal_model_is_held_not_promoted_nor_rejected():
    rng = random.Random(7)
    # Same quality on average: each prompt moves up or down by noise, symmetric around zero.
    table = rows([(0.5 + d, 0.5) for d in (rng.choice([-1, 1]) * rng.uniform(0.05, 0.3) for _ in range(20))])
    deltas = [r.new_score - r.old_score for r in table]
    assert 0 < sum(1 for d in deltas if d > 0) < len(deltas)  # wins and losses both happen
    result = compare("live", "m", table, OPTIONS)
    assert result.verdict is Verdict.HELD
    assert result.ci_low <= 0 <= result.ci_high


def test_identical_answers_are_ties_and_held():
    result = compare("live", "m", rows([(0.6, 0.6)] * 5), OPTIONS)
    assert result.verdict is Verdict.HELD
    assert result.count(PromptOutcome.TIE) == 5


def test_the_margin_holds_back_a_small_but_certain_improvement():
    table = rows([(0.55, 0.5)] * 8)
    assert compare("live", "m", table, OPTIONS).verdict is Verdict.PROMOTED
    assert compare("live", "m", table, GateOptions(enabled=True, margin=0.1)).verdict is Verdict.HELD


def test_too_few_prompts_are_held_whatever_the_scores():
    result = compare("base", "m", rows([(1.0, 0.0), (1.0, 0.0)]), OPTIONS)
    assert result.verdict is Verdict.HELD
    assert "min_prompts" in result.reason


def test_the_bootstrap_is_deterministic_for_a_seed():
    deltas = [0.3, -0.1, 0.2, 0.05, -0.2, 0.4, 0.1]
    first = paired_bootstrap_interval(deltas, samples=1000, confidence=0.9, seed=3)
    assert first == paired_bootstrap_interval(deltas, samples=1000, confidence=0.9, seed=3)
    assert first[0] < sum(deltas) / len(deltas) < first[1]


def test_overall_rejected_wins_over_promoted_and_a_failed_smoke_test_rejects():
    better = compare("base", "b", rows([(1.0, 0.0)] * 5), OPTIONS)
    worse = compare("live", "l", rows([(0.0, 1.0)] * 5), OPTIONS)
    held = compare("live", "l", rows([(0.5, 0.5)] * 5), OPTIONS)
    assert overall_verdict(True, [better, worse])[0] is Verdict.REJECTED
    assert overall_verdict(True, [better, held])[0] is Verdict.HELD
    assert overall_verdict(True, [better])[0] is Verdict.PROMOTED
    assert overall_verdict(True, [])[0] is Verdict.PROMOTED  # the lineage's first model
    assert overall_verdict(False, [better]) == (Verdict.REJECTED, "the smoke test failed")


def test_metrics():
    assert metric_score("Reset it, please.", "reset it please", "exact_match") == 1.0
    assert metric_score("Reset it", "reset it please", "exact_match") == 0.0
    assert metric_score("a b c", "a b c", "rouge2") == 1.0


# --- config ----------------------------------------------------------------------------------------


def test_the_gate_section_defaults_to_off_and_round_trips():
    assert TuningConfig().gate.enabled is False
    cfg = load_tuning_yaml("gate:\n  enabled: true\n  against: [live]\n  metric: exact_match\n  on_reject: retire\n")
    assert (cfg.gate.against, cfg.gate.metric, cfg.gate.on_reject) == (("live",), "exact_match", "retire")
    assert TuningConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("gate: {against: [staging]}", "gate.against"),
        ("gate: {against: []}", "gate.against"),
        ("gate: {metric: bleu}", "gate.metric"),
        ("gate: {margin: 2}", "gate.margin"),
        ("gate: {on_reject: delete}", "gate.on_reject"),
        ("gate: {confidence: 1.0}", "gate.confidence"),
        ("gate: {enabeld: true}", "gate.enabeld"),
    ],
)
def test_a_bad_gate_section_names_the_key(yaml_text, path):
    from shared.errors import TuningConfigError

    with pytest.raises(TuningConfigError) as caught:
        load_tuning_yaml(yaml_text)
    assert f"{path}:" in str(caught.value)


# --- the gate inside handle_completion -------------------------------------------------------------

REFERENCES = {
    "How do I reset my password?": "Click Forgot password on the sign-in page and follow the emailed link.",
    "Where is my invoice?": "Invoices are under Billing then History in your account settings.",
    "How do I cancel my plan?": "Open Billing, choose Plan, then Cancel plan and confirm by email.",
    "Can I change my username?": "Yes, go to Profile then Username and save the new name.",
}


def gate_config(**gate) -> dict:
    prompts = [{"prompt": q, "reference": a} for q, a in REFERENCES.items()]
    return TuningConfig.from_dict(
        {
            "smoke_test": {"prompts": prompts},
            "cleanup": {"enabled": True, "keep_last": 1},
            "gate": {"enabled": True, "against": ["live", "base"], **gate},
        }
    ).to_dict()


def half(answer: str) -> str:
    words = answer.split()
    return " ".join(words[: len(words) // 2])


class GatePipeline(Pipeline):
    """Answers depend on the endpoint: each job's endpoint answers with a chosen quality."""

    def __init__(self) -> None:
        super().__init__()
        self.quality: dict[str, str] = {}  # endpoint -> "exact" | "half" | "wrong"
        self.tuning.responder = self.answer

    def answer(self, endpoint: str, request: GenerationRequest) -> str:
        question = request.contents[-1]["parts"][0]["text"]
        quality = self.quality.get(endpoint, "wrong")  # the base model and unknown endpoints
        if quality == "exact":
            return REFERENCES[question]
        if quality == "half":
            return half(REFERENCES[question])
        return "Sorry, I am not sure."

    def run(self, n: int, quality: str, **gate) -> str:
        rec, message = self.tuned(n, gate_config(**gate))
        self.quality[str(rec.tuning.endpoint if rec.tuning else "")] = quality
        self.complete(message)
        return rec.id


def verdict(pipe: Pipeline, job_id: str) -> str:
    gate = pipe.record(job_id).gate
    return str(gate.verdict if gate else None)


def retired(pipe: Pipeline, job_id: str) -> bool:
    return pipe.model(job_id) not in pipe.tuning.models


@pytest.fixture
def gpipe() -> GatePipeline:
    return GatePipeline()


def test_first_model_is_promoted_against_base_then_a_worse_one_is_rejected_and_live_survives(gpipe):
    v1 = gpipe.run(1, "half")
    assert verdict(gpipe, v1) == "PROMOTED"
    gate = gpipe.record(v1).gate
    assert gate is not None
    assert [c["against"] for c in gate.comparisons] == ["base"]
    assert "no live model" in " ".join(gate.notes)

    v2 = gpipe.run(2, "wrong")
    assert verdict(gpipe, v2) == "REJECTED"
    gate2 = gpipe.record(v2).gate
    assert gate2 is not None
    live = next(c for c in gate2.comparisons if c["against"] == "live")
    assert (live["wins"], live["losses"], live["ties"]) == (0, 4, 0)
    assert gate2.live_before == v1
    assert not retired(gpipe, v1) and not retired(gpipe, v2)  # on_reject: keep
    live_now = find_live(gpipe.jobs.get(j) for j in (v2, v1))  # newest first, as the query returns them
    assert live_now is not None and live_now.id == v1
    assert [e.data["verdict"] for e in gpipe.events("model.rejected")] == ["REJECTED"]

    v3 = gpipe.run(3, "exact")
    assert verdict(gpipe, v3) == "PROMOTED"
    assert retired(gpipe, v1) and retired(gpipe, v2)  # predecessors retired after the promotion
    assert not retired(gpipe, v3)
    report = json.loads(gpipe.blobs.read_bytes(BUCKET, str(gpipe.record(v3).gate.report_uri).split("/", 3)[3]))
    assert report["verdict"] == "PROMOTED" and report["answers"]
    assert len(gpipe.events("model.promoted")) == 2


def test_an_equal_model_is_held_and_nothing_is_retired(gpipe):
    v1 = gpipe.run(1, "exact")
    v2 = gpipe.run(2, "exact")
    assert verdict(gpipe, v2) == "HELD"
    assert not retired(gpipe, v1) and not retired(gpipe, v2)
    assert [e.data["job_id"] for e in gpipe.events("model.held")] == [v2]


def test_on_reject_retire_retires_the_new_model_never_the_live_one(gpipe):
    v1 = gpipe.run(1, "exact", on_reject="retire")
    v2 = gpipe.run(2, "wrong", on_reject="retire")
    assert verdict(gpipe, v2) == "REJECTED"
    assert retired(gpipe, v2) and not retired(gpipe, v1)


def test_a_redelivered_event_does_not_run_the_gate_twice(gpipe):
    gpipe.run(1, "exact")
    rec, message = gpipe.tuned(2, gate_config())
    gpipe.quality[str(rec.tuning.endpoint if rec.tuning else "")] = "wrong"
    gpipe.complete(message)
    calls = len(gpipe.tuning.generations)
    gpipe.complete(message)
    assert len(gpipe.tuning.generations) == calls
    assert len(gpipe.events("model.rejected")) == 1
