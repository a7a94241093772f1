"""Smoke-test prompts, checks and calls, on the in-memory fakes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import T0

from shared.adapters.fakes import FakeBlobStore, FakeTuningBackend
from shared.errors import BlobReadError, NotFoundError, PermissionDeniedError, TransientBackendError
from shared.model_families import MODEL_FAMILIES, ThinkingControl, family_for, generation_settings
from shared.record_parts import TuningView
from shared.records import DatasetRef, JobRecord
from shared.smoke_test import (
    ContainsCheck,
    MaxCharsCheck,
    NonEmptyCheck,
    PromptSource,
    RegexCheck,
    RetryPolicy,
    SmokeTestOptions,
    TargetRole,
    base_model_of,
    checks_from_config,
    evaluate_checks,
    prompt_from_example,
    run_smoke_test,
    select_prompts,
    targets_for,
    validation_set_uri,
)
from shared.states import JobStatus

ENDPOINT = "projects/p/locations/us-central1/endpoints/e1"
CKPT = "projects/p/locations/us-central1/endpoints/e1-c1"


def _example(question: str, answer: str) -> dict:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": question}]},
            {"role": "model", "parts": [{"text": answer}]},
        ]
    }


def _record(config: dict | None = None, validation_uri: str | None = None, checkpoints: bool = False) -> JobRecord:
    tuning = {
        "tuned_model": "projects/p/locations/us-central1/models/m1@1",
        "endpoint": ENDPOINT,
        "checkpoints": [
            {"checkpoint_id": "1", "epoch": 1, "step": 10, "endpoint": CKPT},
            {"checkpoint_id": "2", "epoch": 2, "step": 20, "endpoint": ENDPOINT},
        ]
        if checkpoints
        else [],
    }
    return JobRecord(
        id="job1",
        dataset=DatasetRef("bkt", "datasets/faq/v1.jsonl", 7, "faq"),
        status=JobStatus.SUCCEEDED,
        created_at=T0,
        updated_at=T0,
        config={"base_model": "gemini-2.5-flash", **(config or {})},
        tuning=tuning,
        validation={"validation_set": {"uri": validation_uri}} if validation_uri else None,
    )


def _backend(endpoints: tuple[str, ...] = (ENDPOINT, CKPT), responder=None) -> FakeTuningBackend:
    tuning = FakeTuningBackend()
    for endpoint in endpoints:
        tuning.endpoints[endpoint] = []
    if responder is not None:
        tuning.responder = responder
    return tuning


NO_SLEEP = RetryPolicy(attempts=3, initial_backoff_seconds=0.5)


# --- checks --------------------------------------------------------------------------------------


def test_contains_requires_every_needle_case_sensitively():
    check = ContainsCheck(("Hi there", "— Acme Support"))
    assert check.evaluate("Hi there! Reset it. — Acme Support").passed
    verdict = check.evaluate("hi there! — Acme Support")
    assert (verdict.passed, verdict.detail) == (False, "missing 'Hi there'")


def test_regex_searches_and_honours_anchors():
    assert RegexCheck(r"\bpassword\b").evaluate("reset your password now").passed
    assert not RegexCheck("^Hi there!").evaluate("Well, Hi there!").passed
    assert RegexCheck("^Hi there!").evaluate("Hi there! ...").passed


def test_invalid_regex_fails_the_check_with_the_reason_instead_of_crashing():
    verdict = RegexCheck("([unclosed").evaluate("anything")
    assert not verdict.passed
    assert verdict.detail.startswith("invalid pattern '([unclosed'")


def test_max_chars_boundary():
    assert MaxCharsCheck(5).evaluate("12345").passed
    verdict = MaxCharsCheck(5).evaluate("123456")
    assert (verdict.passed, verdict.detail) == (False, "6 chars > limit 5")


def test_configured_checks_always_start_with_non_empty():
    checks = checks_from_config({"prompt": "p", "contains": "Acme", "regex": "^Hi", "max_chars": 800})
    assert [c.kind for c in checks] == ["non_empty", "contains", "regex", "max_chars"]
    assert checks[1] == ContainsCheck(("Acme",))
    assert [c.kind for c in checks_from_config({"prompt": "p"})] == ["non_empty"]
    verdicts = evaluate_checks(checks, "   ")
    assert [v.passed for v in verdicts] == [False, False, False, True]


def test_non_empty_ignores_whitespace():
    assert not NonEmptyCheck().evaluate(" \n\t").passed
    assert NonEmptyCheck().evaluate(" ok ").passed


# --- options and prompts -------------------------------------------------------------------------


def test_options_read_the_resolved_config_with_defaults():
    options = SmokeTestOptions.from_config({"smoke_test": {"compare_base": True, "from_validation": 2}})
    assert options.compare_base and options.from_validation == 2
    assert options.default_prompt == "Say hello." and options.max_output_tokens == 256
    assert SmokeTestOptions.from_config(None) == SmokeTestOptions()


def test_prompt_from_example_splits_at_the_last_model_turn():
    example = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Reset my password?"}]},
            {"role": "model", "parts": [{"text": "Click "}, {"text": "Forgot password."}]},
        ],
    }
    prompt = prompt_from_example(example)
    assert prompt is not None
    assert prompt.text == "Reset my password?"
    assert prompt.reference == "Click Forgot password."
    assert [t["role"] for t in prompt.contents] == ["user", "model", "user"]
    assert prompt.system_instruction == "Be brief."


def test_prompt_from_example_fills_omitted_roles_of_a_single_turn():
    prompt = prompt_from_example({"contents": [{"parts": [{"text": "Q"}]}, {"parts": [{"text": "A"}]}]})
    assert prompt is not None and prompt.contents == ({"role": "user", "parts": [{"text": "Q"}]},)
    assert prompt.reference == "A"


@pytest.mark.parametrize(
    "example",
    [
        {"contents": [{"role": "user", "parts": [{"text": "Q"}]}]},
        {"contents": []},
        {"messages": []},
        {"contents": [{"role": "model", "parts": [{"text": "A"}]}]},
    ],
)
def test_examples_without_a_usable_answer_are_skipped(example):
    assert prompt_from_example(example) is None


def test_configured_prompts_win_over_the_validation_set():
    blobs = FakeBlobStore()
    blobs.put("bkt", "datasets/faq/v1.validation.jsonl", json.dumps(_example("q", "a")).encode())
    options = SmokeTestOptions(prompts=({"prompt": "How?", "reference": "Like this."},))
    selection = select_prompts(options, validation_uri="gs://bkt/datasets/faq/v1.validation.jsonl", blobs=blobs)
    assert selection.source is PromptSource.CONFIG
    assert [(p.text, p.reference) for p in selection.prompts] == [("How?", "Like this.")]


def test_validation_prompts_read_only_the_first_n_examples():
    blobs = FakeBlobStore()
    lines = [json.dumps(_example(f"question {i}", f"answer {i}")) for i in range(2000)]
    data = ("\n".join(lines) + "\n").encode()
    blobs.put("bkt", "datasets/faq/v1.validation.jsonl", data)
    # A read beyond the first 64 KiB would fail: proves the file is streamed, not loaded.
    blobs.fail_reads_after["datasets/faq/v1.validation.jsonl"] = 64 * 1024
    assert len(data) > 64 * 1024
    selection = select_prompts(
        SmokeTestOptions(from_validation=3), validation_uri="gs://bkt/datasets/faq/v1.validation.jsonl", blobs=blobs
    )
    assert selection.source is PromptSource.VALIDATION
    assert [(p.text, p.reference) for p in selection.prompts] == [
        ("question 0", "answer 0"),
        ("question 1", "answer 1"),
        ("question 2", "answer 2"),
    ]


def test_missing_validation_set_falls_back_to_the_default_prompt_with_a_note():
    selection = select_prompts(
        SmokeTestOptions(default_prompt="Ping?"),
        validation_uri="gs://bkt/datasets/faq/gone.jsonl",
        blobs=FakeBlobStore(),
    )
    assert selection.source is PromptSource.DEFAULT
    assert [p.text for p in selection.prompts] == ["Ping?"]
    assert "not found" in selection.notes[0]


def test_no_validation_set_at_all_uses_the_default_prompt():
    selection = select_prompts(SmokeTestOptions(), validation_uri=None, blobs=FakeBlobStore())
    assert selection.source is PromptSource.DEFAULT
    assert selection.notes == ("no validation set; using the default prompt",)


def test_unreadable_validation_set_is_a_retryable_error():
    blobs = FakeBlobStore()
    blobs.put("bkt", "v.jsonl", b"x" * 10)
    blobs.failures.fail_next("open_read", BlobReadError("gs://bkt/v.jsonl", "503"))
    with pytest.raises(BlobReadError):
        select_prompts(SmokeTestOptions(), validation_uri="gs://bkt/v.jsonl", blobs=blobs)


def test_validation_set_uri_comes_from_what_intake_stored():
    assert validation_set_uri(_record(validation_uri="gs://bkt/datasets/faq/v1.validation.jsonl")) == (
        "gs://bkt/datasets/faq/v1.validation.jsonl"
    )
    assert validation_set_uri(_record()) is None


@pytest.mark.parametrize(
    ("model", "budget", "level", "max_tokens"),
    [
        ("gemini-2.5-flash", 0, None, 256),
        ("gemini-2.5-flash-001", 0, None, 256),
        ("gemini-2.5-flash-lite", 0, None, 256),
        ("projects/p/locations/l/publishers/google/models/gemini-2.5-pro", 128, None, 256 + 128),
        ("gemini-2.0-flash-001", None, None, 256),
        ("gemini-1.5-pro-002", None, None, 256),
        ("gemini-3-pro-preview", None, "LOW", 256 + 1024),
        ("gemini-3-flash-preview", None, "MINIMAL", 256 + 512),
        ("some-future-model", None, None, 256),
    ],
)
def test_thinking_is_the_least_each_family_allows_and_output_keeps_room_for_it(model, budget, level, max_tokens):
    settings = generation_settings(model, answer_tokens=256)
    assert (settings.thinking_budget, settings.thinking_level, settings.max_output_tokens) == (
        budget,
        level,
        max_tokens,
    )


def test_the_family_table_is_consistent_and_cites_its_sources():
    assert family_for("gemini-2.5-flash-lite-001").name == "gemini-2.5-flash-lite"  # not plain flash
    for family in MODEL_FAMILIES:
        assert family.source.startswith("https://")
        if family.control is ThinkingControl.BUDGET:
            assert family.budget_problem(family.least_budget) is None
            assert family.budget_problem(family.max_budget + 1) is not None
        if family.control is ThinkingControl.LEVEL:
            assert family.lowest_level == family.levels[0] and family.level_problem(family.lowest_level) is None
    pro = family_for("gemini-2.5-pro")
    assert pro.budget_problem(0) == "Budget 0 is invalid. gemini-2.5-pro only works in thinking mode."
    assert pro.budget_problem(127) is not None and pro.budget_problem(-1) is None
    assert family_for("gemini-2.5-flash").level_problem("LOW") is not None  # 2.5 takes no level


def test_the_base_model_comes_from_the_job_record_also_for_a_tuned_tuned_model():
    record = _record({"base_model": "projects/p/locations/us-central1/models/m0@1"})
    assert base_model_of(record) is None  # a tuned model is not a family; the view has no base yet
    chained = record.with_changes(T0, tuning=replace(record.tuning or TuningView(), base_model="gemini-2.5-pro"))
    assert base_model_of(chained) == "gemini-2.5-pro"
    tuning = _backend()
    run_smoke_test(
        chained,
        options=SmokeTestOptions(prompts=({"prompt": "hi"},), max_output_tokens=64),
        tuning=tuning,
        blobs=FakeBlobStore(),
        retry=NO_SLEEP,
    )
    [(_, request)] = tuning.generations
    assert (request.thinking_budget, request.thinking_level, request.max_output_tokens) == (128, None, 64 + 128)


def test_the_base_comparison_uses_the_resolved_base_and_its_generation_config():
    record = _record({"base_model": "gemini-3-pro-preview"})
    tuning = _backend()
    result = run_smoke_test(
        record,
        options=SmokeTestOptions(prompts=({"prompt": "hi"},), compare_base=True),
        tuning=tuning,
        blobs=FakeBlobStore(),
        retry=NO_SLEEP,
    )
    assert result.base_model == "gemini-3-pro-preview"
    assert [(name, r.thinking_level, r.thinking_budget) for name, r in tuning.generations] == [
        (ENDPOINT, "LOW", None),
        ("gemini-3-pro-preview", "LOW", None),
    ]


def test_targets_are_the_endpoint_plus_distinct_checkpoint_endpoints():
    record = _record(checkpoints=True)
    targets, problems = targets_for(record, SmokeTestOptions(checkpoints=True))
    assert problems == []
    assert [(t.role, t.name, t.label) for t in targets] == [
        (TargetRole.TUNED, ENDPOINT, "tuned"),
        (TargetRole.CHECKPOINT, CKPT, "checkpoint-1"),
    ]
    only_tuned, _ = targets_for(record, SmokeTestOptions(checkpoints=False))
    assert [t.name for t in only_tuned] == [ENDPOINT]


# --- running -------------------------------------------------------------------------------------


def test_deterministic_requests_and_a_passing_verdict():
    tuning = _backend(responder=lambda endpoint, request: "Hi there! Reset it. — Acme Support")
    options = SmokeTestOptions(
        prompts=({"prompt": "Reset?", "contains": ["— Acme Support"], "regex": "^Hi there!", "max_chars": 80},),
        max_output_tokens=64,
        timeout_seconds=12,
    )
    result = run_smoke_test(_record(), options=options, tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert result.passed and result.reasons == []
    assert (result.prompts_total, result.prompts_passed) == (1, 1)
    [(endpoint, request)] = tuning.generations
    assert endpoint == ENDPOINT
    assert (request.temperature, request.thinking_budget) == (0.0, 0)
    assert (request.max_output_tokens, request.timeout_seconds) == (64, 12)
    assert request.contents == [{"role": "user", "parts": [{"text": "Reset?"}]}]
    stored = result.results[0].to_dict()
    assert stored["response"] == "Hi there! Reset it. — Acme Support"
    assert (stored["prompt_tokens"], stored["output_tokens"]) == (8, len(stored["response"]) // 4)
    assert [c["kind"] for c in stored["checks"]] == ["non_empty", "contains", "regex", "max_chars"]


def test_a_failing_check_fails_the_test_with_a_reason_naming_prompt_and_endpoint():
    tuning = _backend(responder=lambda endpoint, request: "Sure.")
    options = SmokeTestOptions(prompts=({"prompt": "a"}, {"prompt": "b", "contains": "Acme"}))
    result = run_smoke_test(_record(), options=options, tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert not result.passed
    assert result.reasons == ["prompt 2 on tuned: contains: missing 'Acme'"]
    assert (result.prompts_total, result.prompts_passed) == (2, 1)


def test_checkpoint_endpoints_are_part_of_the_verdict():
    tuning = _backend(responder=lambda endpoint, request: "" if endpoint == CKPT else "fine")
    result = run_smoke_test(
        _record(checkpoints=True),
        options=SmokeTestOptions(checkpoints=True),
        tuning=tuning,
        blobs=FakeBlobStore(),
        retry=NO_SLEEP,
    )
    assert [r.target.label for r in result.results] == ["tuned", "checkpoint-1"]
    assert not result.passed
    assert result.reasons == ["prompt 1 on checkpoint-1: non_empty: response is empty"]


def test_transient_errors_are_retried_with_backoff():
    tuning = _backend(responder=lambda endpoint, request: "ok")
    tuning.failures.fail_next(
        "generate",
        TransientBackendError("generate", 503, "unavailable"),
        TransientBackendError("generate", 503, "unavailable"),
    )
    slept: list[float] = []
    result = run_smoke_test(
        _record(), options=SmokeTestOptions(), tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP, sleep=slept.append
    )
    assert result.passed
    assert result.results[0].attempts == 3
    assert slept == [0.5, 1.0]


def test_transient_errors_beyond_the_retries_propagate():
    tuning = _backend()
    tuning.failures.fail_next("generate", *[TransientBackendError("generate", 503, "down")] * 3)
    with pytest.raises(TransientBackendError):
        run_smoke_test(
            _record(),
            options=SmokeTestOptions(),
            tuning=tuning,
            blobs=FakeBlobStore(),
            retry=NO_SLEEP,
            sleep=lambda s: None,
        )


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError("generate", 404, "Endpoint not found", "NOT_FOUND"),
        PermissionDeniedError("generate", 403, "no aiplatform.endpoints.predict", "PERMISSION_DENIED"),
    ],
)
def test_fatal_call_errors_fail_the_prompt_and_are_recorded(error):
    tuning = _backend()
    tuning.failures.fail_next("generate", error)
    result = run_smoke_test(_record(), options=SmokeTestOptions(), tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert not result.passed
    assert result.results[0].error == {"code": error.code, "message": str(error)}
    assert result.reasons == [f"prompt 1 on tuned: call failed: {error.code}: {error}"]
    assert tuning.calls["generate"] == 1


def test_no_endpoint_recorded_fails_without_calling_anything():
    record = _record()
    record = JobRecord(**{**record.__dict__, "tuning": {"tuned_model": "m", "endpoint": None}})
    tuning = _backend()
    result = run_smoke_test(record, options=SmokeTestOptions(), tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert not result.passed
    assert result.reasons == ["no endpoint recorded for the tuned model"]
    assert tuning.calls["generate"] == 0


def test_base_comparison_scores_both_models_against_the_references():
    answers = {ENDPOINT: "the cat sat on the mat", "gemini-2.5-flash": "a dog"}
    tuning = _backend(responder=lambda endpoint, request: answers[endpoint])
    options = SmokeTestOptions(prompts=({"prompt": "cat?", "reference": "the cat is on the mat"},), compare_base=True)
    result = run_smoke_test(_record(), options=options, tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert result.passed
    assert [r.target.role for r in result.base_results] == [TargetRole.BASE]
    assert result.scores_dict() == {
        "tuned": {"rouge1": 0.8333, "rouge2": 0.6, "rougeL": 0.8333},
        "base": {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0},
    }
    # the base model never decides the verdict
    assert result.prompts_total == 1


def test_base_failures_do_not_fail_the_smoke_test():
    tuning = _backend(responder=lambda endpoint, request: "" if endpoint == "gemini-2.5-flash" else "answer")
    options = SmokeTestOptions(compare_base=True)
    result = run_smoke_test(_record(), options=options, tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert result.passed
    assert not result.base_results[0].passed


def test_long_texts_are_cut_on_the_record_but_kept_whole_in_the_report():
    tuning = _backend(responder=lambda endpoint, request: "x" * 5000)
    result = run_smoke_test(_record(), options=SmokeTestOptions(), tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert len(result.results[0].to_dict()["response"]) == 2001
    assert len(result.results[0].to_dict(max_chars=None)["response"]) == 5000


def test_out_of_time_calls_are_left_unfinished_in_order_and_earlier_calls_are_not_resent():
    now = [0.0]

    def slow(endpoint, request):
        now[0] += 100.0
        return "fine"

    tuning = _backend(responder=slow)
    options = SmokeTestOptions(prompts=tuple({"prompt": f"p{n}"} for n in range(4)), timeout_seconds=30)
    retry = RetryPolicy(attempts=2, initial_backoff_seconds=0.0)  # worst call: 60 s

    def run(**kwargs):
        return run_smoke_test(
            _record(),
            options=options,
            tuning=tuning,
            blobs=FakeBlobStore(),
            retry=retry,
            monotonic=lambda: now[0],
            **kwargs,
        )

    first = run(deadline=250.0)
    assert (len(first.results), first.unfinished, first.passed) == (2, 2, False)  # 200 s used, 50 s < 60 s left
    progress = first.progress()
    assert (progress["done"], progress["total"]) == (2, 4)
    assert [c["key"] for c in progress["calls"]] == ["tuned#0", "tuned#1"]

    tuning.generations.clear()
    second = run(deadline=now[0] + 1000, done={c["key"]: c for c in progress["calls"]})
    assert second.passed and second.unfinished == 0 and second.prompts_total == 4
    assert [r.contents[-1]["parts"][0]["text"] for _, r in tuning.generations] == ["p2", "p3"]
    assert [r.response for r in second.results] == ["fine"] * 4


def test_progress_is_capped_in_size():
    tuning = _backend(responder=lambda endpoint, request: "x" * 1000)
    options = SmokeTestOptions(prompts=tuple({"prompt": f"p{n}"} for n in range(5)))
    result = run_smoke_test(_record(), options=options, tuning=tuning, blobs=FakeBlobStore(), retry=NO_SLEEP)
    assert len(result.progress(max_chars=2500)["calls"]) == 2
