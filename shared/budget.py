"""Budgets: stop a tuning job that costs too much *before* it is submitted.

``tuning.yaml`` (or the deployment defaults file, ``SFTPILOT_DEFAULTS_FILE``, which has the
same keys)::

    budget:
      max_billable_tokens: 5000000   # per job: dataset tokens x epochs
      max_cost_usd: 50               # per job, at the price table's rate (shared/pricing.yaml)
      monthly_lineage_usd: 200       # per lineage per calendar month (UTC), reserved atomically

Every key is optional (unset = no limit). **Over budget -> REJECTED**, with the numbers
(estimate, budget, spent so far this month) in ``record.validation.cost`` and a
``dataset.rejected`` event whose ``reason`` starts with ``budget:`` and whose ``budget`` field
carries the numbers. Why reject rather than hold for approval: a rejected upload changes
nothing (no state waits on a human, no quota slot is held, the poller's state machine is
unchanged), and the fix is explicit and audited in the bucket: raise the budget in
tuning.yaml and upload the dataset again (a new generation is a new job).

The monthly budget is counted in a ledger document per lineage-month
(``spending/<lineage>:<YYYY-MM>``): the job's estimate is *reserved* in one Firestore
transaction that reads the month's total and adds the job only if the total stays within the
limit, so two uploads at once cannot both slip under it (:func:`apply_reservation` is the rule;
the adapters run it atomically). Reservations are idempotent per job id. A rejected job
reserves nothing. After the job, its actual billable tokens (``tuningDataStats``) and cost are
stored next to the reservation (:func:`actual_cost`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.ports import JobStore, SpendLedger, SpendReservation
from shared.pricing import CostEstimate, cost_of_tokens
from shared.record_parts import CostRecord
from shared.records import JSON, JobRecord, to_rfc3339

BUDGET_KEYS: tuple[str, ...] = ("max_billable_tokens", "max_cost_usd", "monthly_lineage_usd")


@dataclass(frozen=True)
class BudgetOptions:
    """The ``budget`` section of the resolved tuning config (None = no limit)."""

    max_billable_tokens: int | None = None
    max_cost_usd: float | None = None
    monthly_lineage_usd: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> BudgetOptions:
        """Read ``config["budget"]`` (validated by :func:`check_budget_section`)."""
        section = (config or {}).get("budget") or {}
        tokens = section.get("max_billable_tokens")
        cost = section.get("max_cost_usd")
        monthly = section.get("monthly_lineage_usd")
        return cls(
            max_billable_tokens=None if tokens is None else int(tokens),
            max_cost_usd=None if cost is None else float(cost),
            monthly_lineage_usd=None if monthly is None else float(monthly),
        )

    @property
    def any(self) -> bool:
        """True when at least one limit is set."""
        return any(v is not None for v in (self.max_billable_tokens, self.max_cost_usd, self.monthly_lineage_usd))

    def to_dict(self) -> JSON:
        """JSON form (the ``record.config["budget"]`` form)."""
        return {
            "max_billable_tokens": self.max_billable_tokens,
            "max_cost_usd": self.max_cost_usd,
            "monthly_lineage_usd": self.monthly_lineage_usd,
        }


def check_budget_section(section: Mapping[str, Any]) -> tuple[JSON, list[tuple[str, str]]]:
    """Validate a ``budget:`` mapping of one tuning.yaml layer: (cleaned values, problems).

    >>> check_budget_section({"max_cost_usd": -1})[1]
    [('max_cost_usd', 'must be a number >= 0 (got -1)')]
    """
    out: JSON = {}
    problems: list[tuple[str, str]] = []
    for key, value in section.items():
        if key not in BUDGET_KEYS:
            problems.append((key, f"unknown key; known keys: {', '.join(BUDGET_KEYS)}"))
        elif value is None:
            out[key] = None
        elif key == "max_billable_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append((key, f"must be an integer >= 0 (got {value!r})"))
            else:
                out[key] = value
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.append((key, f"must be a number >= 0 (got {value!r})"))
        else:
            out[key] = float(value)
    return out, problems


def ledger_key(lineage: str, when: datetime) -> str:
    """``<lineage>:<YYYY-MM>`` of the calendar month (UTC) of ``when``.

    >>> from datetime import UTC
    >>> ledger_key("faq", datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    'faq:2026-03'
    """
    return f"{lineage}:{when.strftime('%Y-%m')}"


def apply_reservation(
    doc: Mapping[str, Any] | None, key: str, job_id: str, amount_usd: float, limit_usd: float | None
) -> tuple[JSON | None, SpendReservation]:
    """The reservation rule on one ledger document: (the document to write or None, the answer).

    >>> doc, answer = apply_reservation(None, "faq:2026-03", "j1", 150.0, 200.0)
    >>> answer.accepted, doc["reserved_usd"]
    (True, 150.0)
    >>> apply_reservation(doc, "faq:2026-03", "j2", 60.0, 200.0)[1]
    SpendReservation(accepted=False, spent_usd=150.0, amount_usd=0.0)
    """
    current = dict(doc or {"key": key, "reserved_usd": 0.0, "jobs": {}})
    jobs = dict(current.get("jobs") or {})
    if job_id in jobs:  # a redelivery: the first answer stands
        mine = float(jobs[job_id].get("estimate_usd") or 0.0)
        return None, SpendReservation(True, round(float(current["reserved_usd"]) - mine, 6), mine)
    spent = float(current.get("reserved_usd") or 0.0)
    if limit_usd is not None and spent + amount_usd > limit_usd + 1e-9:
        return None, SpendReservation(False, round(spent, 6), 0.0)
    jobs[job_id] = {"estimate_usd": amount_usd}
    current.update(jobs=jobs, reserved_usd=round(spent + amount_usd, 6))
    return current, SpendReservation(True, round(spent, 6), amount_usd)


@dataclass(frozen=True)
class BudgetDecision:
    """Whether a job may be submitted, and the numbers behind it."""

    allowed: bool
    reason: str
    estimate: CostEstimate
    budget: BudgetOptions
    ledger_key: str | None = None
    spent_before_usd: float | None = None

    def to_dict(self) -> JSON:
        """``record.validation.cost``: estimate, budget, month spent before, verdict."""
        return {
            "estimate": self.estimate.to_dict(),
            "budget": self.budget.to_dict(),
            "ledger_key": self.ledger_key,
            "spent_before_usd": self.spent_before_usd,
            "within_budget": self.allowed,
            "reason": self.reason,
        }


def decide_budget(
    estimate: CostEstimate,
    budget: BudgetOptions,
    *,
    ledger: SpendLedger | None,
    key: str,
    job_id: str,
) -> BudgetDecision:
    """Per-job limits first (no side effect), then the monthly reservation (atomic, idempotent).

    A job without a price cannot pass a USD budget (its cost is unknown): it is refused with
    that reason rather than let through unchecked.
    """

    def refuse(reason: str, spent: float | None = None) -> BudgetDecision:
        return BudgetDecision(False, f"budget: {reason}", estimate, budget, key, spent)

    tokens, cost = estimate.billable_tokens, estimate.cost_usd
    if budget.max_billable_tokens is not None and tokens > budget.max_billable_tokens:
        return refuse(f"estimated {tokens} billable tokens exceed max_billable_tokens {budget.max_billable_tokens}")
    needs_price = budget.max_cost_usd is not None or budget.monthly_lineage_usd is not None
    if needs_price and cost is None:
        return refuse(f"no price for base model {estimate.base_model!r} in the price table: cost unknown")
    if budget.max_cost_usd is not None and cost is not None and cost > budget.max_cost_usd:
        return refuse(f"estimated ${cost:.2f} exceeds max_cost_usd ${budget.max_cost_usd:.2f}")
    if ledger is None or cost is None:
        return BudgetDecision(True, "within budget", estimate, budget, None, None)
    answer = ledger.reserve(key, job_id, cost, budget.monthly_lineage_usd)
    if not answer.accepted:
        limit = budget.monthly_lineage_usd or 0.0
        return refuse(
            f"estimated ${cost:.2f} + ${answer.spent_usd:.2f} already reserved in {key} exceed "
            f"monthly_lineage_usd ${limit:.2f}",
            answer.spent_usd,
        )
    return BudgetDecision(True, "within budget", estimate, budget, key, answer.spent_usd)


def actual_cost(data_stats: Mapping[str, Any] | None, usd_per_million: float | None) -> JSON | None:
    """Actual billable tokens from a finished job's ``tuningDataStats`` and their cost.

    Vertex reports ``supervisedTuningDataStats.totalBillableTokenCount``
    (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#SupervisedTuningDataStats);
    both spellings are accepted.

    >>> actual_cost({"supervisedTuningDataStats": {"totalBillableTokenCount": "2000000"}}, 5.0)
    {'billable_tokens': 2000000, 'cost_usd': 10.0}
    """
    stats = data_stats or {}
    inner = stats.get("supervisedTuningDataStats") or stats.get("supervised_tuning_data_stats") or stats
    raw = inner.get("totalBillableTokenCount") or inner.get("total_billable_token_count")
    if raw is None:
        return None
    tokens = int(raw)
    return {"billable_tokens": tokens, "cost_usd": cost_of_tokens(tokens, usd_per_million)}


def record_actual_cost(record: JobRecord, *, jobs: JobStore, ledger: SpendLedger | None, at: datetime) -> JSON | None:
    """After a job: its actual billable tokens/cost onto ``record.cost`` and its ledger entry.

    Idempotent (a recorded actual is not written again). Returns the actual, or None when the
    backend reported no billable token count.
    """
    if record.cost and record.cost.actual:
        return None
    checked = _checked_cost(record)
    estimate = checked.get("estimate") or {}
    actual = actual_cost(record.tuning.data_stats if record.tuning else None, estimate.get("usd_per_million"))
    if actual is None:
        return None
    entry = {**actual, "recorded_at": to_rfc3339(at)}

    def mutate(current: JobRecord) -> JobRecord | None:
        if current.cost and current.cost.actual:
            return None
        return current.with_changes(at, cost=replace(current.cost or CostRecord(), actual=entry))

    jobs.update(record.id, mutate)
    key = checked.get("ledger_key")
    if ledger is not None and key:
        ledger.record_actual(str(key), record.id, entry)
    return entry


def _checked_cost(record: JobRecord) -> Mapping[str, Any]:
    """The intake's budget check, ``record.validation.cost`` (empty when there was none)."""
    return (record.validation.cost if record.validation else None) or {}


def job_cost_summary(record: JobRecord) -> JSON | None:
    """:func:`cost_summary` of a job record (the jobs API and the demo)."""
    return cost_summary(_checked_cost(record), record.cost.actual if record.cost else None)


def cost_summary(checked: Mapping[str, Any] | None, actual: Mapping[str, Any] | None) -> JSON | None:
    """Estimate vs actual of one job, from ``record.validation.cost`` and ``record.cost.actual``.

    >>> cost_summary({"estimate": {"billable_tokens": 10, "cost_usd": 1.0}, "within_budget": True},
    ...              {"billable_tokens": 9, "cost_usd": 0.9})["actual_cost_usd"]
    0.9
    """
    checked = checked or {}
    estimate = checked.get("estimate") or {}
    actual = actual or {}
    if not estimate and not actual:
        return None
    return {
        "estimated_billable_tokens": estimate.get("billable_tokens"),
        "estimated_cost_usd": estimate.get("cost_usd"),
        "epochs_assumed": estimate.get("epochs_assumed"),
        "price_as_of": estimate.get("price_as_of"),
        "within_budget": checked.get("within_budget"),
        "ledger_key": checked.get("ledger_key"),
        "actual_billable_tokens": actual.get("billable_tokens"),
        "actual_cost_usd": actual.get("cost_usd"),
    }


def _usd(value: Any) -> str:
    return "?" if value is None else f"${float(value):,.2f}"


def cost_line(summary: Mapping[str, Any]) -> str:
    """One human line: estimate, then actual when known.

    >>> cost_line({"estimated_billable_tokens": 1200, "estimated_cost_usd": 0.006, "price_as_of": "2025-10-01"})
    'estimate 1,200 billable tokens = $0.01 (prices of 2025-10-01); actual: not reported yet'
    """
    tokens = summary.get("estimated_billable_tokens")
    text = (
        f"estimate {tokens:,} billable tokens = {_usd(summary.get('estimated_cost_usd'))}" if tokens else "no estimate"
    )
    if summary.get("epochs_assumed"):
        text += " (epochs assumed)"
    if summary.get("price_as_of"):
        text += f" (prices of {summary['price_as_of']})"
    if summary.get("within_budget") is False:
        text += " OVER BUDGET"
    actual = summary.get("actual_billable_tokens")
    text += f"; actual {actual:,} = {_usd(summary.get('actual_cost_usd'))}" if actual else "; actual: not reported yet"
    return text
