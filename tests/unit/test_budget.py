"""Cost estimate and budget guard: the arithmetic, the per-job limits and the monthly lineage
budget through the real intake on the fakes (REJECTED with the numbers and a ``dataset.rejected``
whose reason says budget), concurrent uploads on the in-memory ledger, and the actual billable
tokens recorded after the job."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from test_completion import Pipeline
from test_intake import Harness, examples

from shared.adapters.fakes import FakeSpendLedger
from shared.budget import BudgetOptions, apply_reservation, decide_budget, ledger_key
from shared.errors import SettingsError
from shared.pricing import PriceTable, estimate_cost, load_price_table
from shared.record_parts import Validation
from shared.records import record_key
from shared.states import JobStatus

PRICES = PriceTable("test table", "2026-01-01", 3, {"gemini-2.5-flash": 5.0, "gemini-2.5-flash-lite": 1.5})


# --- arithmetic ------------------------------------------------------------------------------------


def test_billable_tokens_are_dataset_tokens_times_epochs_at_the_model_price():
    estimate = estimate_cost(200_000, 4, "gemini-2.5-flash", PRICES)
    assert (estimate.billable_tokens, estimate.cost_usd, estimate.epochs_assumed) == (800_000, 4.0, False)
    lite = estimate_cost(200_000, None, "publishers/google/models/gemini-2.5-flash-lite-001", PRICES)
    assert (lite.epochs, lite.epochs_assumed, lite.usd_per_million, lite.cost_usd) == (3, True, 1.5, 0.9)
    assert estimate_cost(1000, 1, "gemini-9-ultra", PRICES).cost_usd is None


def test_the_shipped_table_is_dated_and_sourced_and_a_file_overrides_prices(tmp_path):
    shipped = load_price_table()
    assert shipped.source.startswith("https://cloud.google.com/") and shipped.as_of
    assert shipped.price_per_million("gemini-2.5-flash") is not None
    override = tmp_path / "prices.yaml"
    override.write_text("as_of: '2026-06-01'\nmodels:\n  gemini-2.5-flash: 7.5\n")
    table = load_price_table(str(override))
    assert (table.price_per_million("gemini-2.5-flash"), table.as_of) == (7.5, "2026-06-01")
    assert table.price_per_million("gemini-2.5-pro") == shipped.price_per_million("gemini-2.5-pro")
    override.write_text("models:\n  gemini-2.5-flash: cheap\n")
    with pytest.raises(SettingsError, match="SFTPILOT_PRICING_FILE"):
        load_price_table(str(override))


def test_per_job_limits_refuse_with_the_numbers_and_reserve_nothing():
    estimate = estimate_cost(2_000_000, 3, "gemini-2.5-flash", PRICES)  # 6M tokens, $30
    ledger = FakeSpendLedger()
    by_tokens = decide_budget(
        estimate, BudgetOptions(max_billable_tokens=5_000_000), ledger=ledger, key="faq:2026-03", job_id="j"
    )
    assert not by_tokens.allowed
    assert by_tokens.reason == "budget: estimated 6000000 billable tokens exceed max_billable_tokens 5000000"
    by_cost = decide_budget(estimate, BudgetOptions(max_cost_usd=20), ledger=ledger, key="faq:2026-03", job_id="j")
    assert by_cost.reason == "budget: estimated $30.00 exceeds max_cost_usd $20.00"
    assert ledger.get("faq:2026-03") is None


def test_monthly_budget_counts_what_the_month_reserved_and_refuses_the_overflow():
    ledger = FakeSpendLedger()
    budget = BudgetOptions(monthly_lineage_usd=50)
    cost30 = estimate_cost(2_000_000, 3, "gemini-2.5-flash", PRICES)
    first = decide_budget(cost30, budget, ledger=ledger, key="faq:2026-03", job_id="a")
    second = decide_budget(cost30, budget, ledger=ledger, key="faq:2026-03", job_id="b")
    other_month = decide_budget(cost30, budget, ledger=ledger, key="faq:2026-04", job_id="c")
    assert (first.allowed, second.allowed, other_month.allowed) == (True, False, True)
    assert second.spent_before_usd == 30.0
    assert "$30.00 + $30.00 already reserved in faq:2026-03 exceed monthly_lineage_usd $50.00" in second.reason
    assert decide_budget(cost30, budget, ledger=ledger, key="faq:2026-03", job_id="a").allowed  # redelivery


def test_concurrent_reservations_on_the_in_memory_ledger_never_exceed_the_limit():
    ledger = FakeSpendLedger()
    barrier = threading.Barrier(8)

    def reserve(i: int) -> bool:
        barrier.wait()
        return ledger.reserve("faq:2026-03", f"job-{i}", 30.0, 100.0).accepted

    with ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(reserve, range(8)))
    assert accepted == 3
    assert ledger.get("faq:2026-03")["reserved_usd"] == 90.0


def test_reservation_rule_is_exact_at_the_limit():
    doc, answer = apply_reservation(None, "k", "a", 100.0, 100.0)
    assert answer.accepted and doc is not None
    assert not apply_reservation(doc, "k", "b", 0.01, 100.0)[1].accepted
    assert apply_reservation(doc, "k", "b", 0.0, 100.0)[1].accepted


def test_ledger_key_is_the_utc_calendar_month():
    from datetime import UTC, datetime

    assert ledger_key("faq", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == "faq:2026-12"


# --- through the intake ------------------------------------------------------------------------------


def deliver(h: Harness, ledger: FakeSpendLedger, name: str, data: bytes):
    event = h.upload(name, data)
    h.deliver(event, spend=ledger, prices=PRICES)
    record = h.jobs.get(record_key(event.bucket, event.name, event.generation))
    assert record is not None
    return record


def test_an_upload_over_budget_is_rejected_with_the_numbers_and_a_budget_event():
    h, ledger = Harness(), FakeSpendLedger()
    h.blobs.put("bkt", "datasets/faq/tuning.yaml", b"epochs: 2\nbudget:\n  max_billable_tokens: 100\n")
    record = deliver(h, ledger, "datasets/faq/v1.jsonl", examples(20))

    assert record.status is JobStatus.REJECTED and record.tuning_job is None
    cost = record.validation.cost
    assert cost["within_budget"] is False
    assert cost["estimate"]["billable_tokens"] > 100 and cost["budget"]["max_billable_tokens"] == 100
    [event] = h.publisher.of_type("dataset.rejected")
    assert event.data["reason"].startswith("budget: estimated ")
    assert event.data["budget"]["estimate"]["epochs"] == 2
    assert list(h.tuning.list_jobs()) == []  # nothing was submitted


def test_uploads_within_budget_are_submitted_with_their_estimate_and_the_month_is_counted():
    h, ledger = Harness(), FakeSpendLedger()
    h.blobs.put("bkt", "datasets/faq/tuning.yaml", b"epochs: 1\nbudget:\n  monthly_lineage_usd: 1.0\n")
    v1 = deliver(h, ledger, "datasets/faq/v1.jsonl", examples(20))
    assert v1.status is not JobStatus.REJECTED
    estimate = v1.validation.cost["estimate"]
    assert estimate["billable_tokens"] == v1.validation.stats["billing"]["dataset_tokens"]
    doc = ledger.get(ledger_key("faq", v1.created_at))
    assert doc is not None and v1.id in doc["jobs"]


def test_the_actual_billable_tokens_are_recorded_next_to_the_estimate_after_the_job():
    pipe, ledger = Pipeline(), FakeSpendLedger()
    rec, message = pipe.tuned(1)
    key = ledger_key(rec.lineage, rec.created_at)
    estimate = estimate_cost(1000, 3, "gemini-2.5-flash", PRICES)
    decide_budget(estimate, BudgetOptions(), ledger=ledger, key=key, job_id=rec.id)
    cost = {"estimate": estimate.to_dict(), "ledger_key": key}
    pipe.jobs.update(
        rec.id, lambda r: r.with_changes(r.updated_at, validation=replace(r.validation or Validation(), cost=cost))
    )
    from shared.completion import handle_completion

    for _ in range(2):  # a redelivery records nothing twice
        handle_completion(
            message,
            jobs=pipe.jobs,
            tuning=pipe.tuning,
            blobs=pipe.blobs,
            publisher=pipe.publisher,
            clock=pipe.clock,
            options=pipe.options,
            owner="fn",
            sleep=lambda s: None,
            spend=ledger,
        )
    actual = pipe.record(rec.id).cost.actual
    assert (actual["billable_tokens"], actual["cost_usd"]) == (4096, 0.02048)  # the fake's tuningDataStats
    assert ledger.get(key)["jobs"][rec.id]["actual"]["billable_tokens"] == 4096
